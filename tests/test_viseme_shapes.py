"""Mouth shapes from the sounds (phoneme timings): measured by the face mesh re-detected on
the rendered frames, on both portraits.

- "ee" (spread) widens the mouth, "oo" (rounded) narrows it, at the same loudness
- "m"/"b"/"p" close the lips; "f"/"v" show the upper teeth on the lower lip
- the mouth interior has depth (shaded, not one flat colour)
- after speech with timings the face returns to the photo bit for bit
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar_agent.face.analyzer import MOUTH_CORNERS, FaceLandmarks
from avatar_agent.lipsync.mouth import VISEMES, _shape
from avatar_agent.lipsync.viseme import VisemeEngine
from avatar_agent.lipsync.warp import FaceWarp
from avatar_agent.types import PhonemeTiming
from tests.test_viseme import SR, Measure, _cfg


def _held(sym: str, level: float = 0.8) -> tuple[float, float, float, float]:
    """The engine's mouth for ``sym`` held at ``level`` loudness: open, round, wide, bite."""
    opened, (rounding, wide, bite) = _shape(level, 0.5, (PhonemeTiming(sym, 0.0, 1.0),))
    return float(opened), float(rounding), float(wide), float(bite)


@pytest.fixture(scope="module", params=["astronaut", "hopper"])
def portrait(request, store, face_bgr, hopper_bgr):
    image = face_bgr if request.param == "astronaut" else hopper_bgr
    measure = Measure(store, image)
    return image, measure, FaceWarp(image, measure.rest)


def _width(measure: Measure, frame: np.ndarray) -> float:
    pts, _ = measure.analyzer.landmarks(frame, measure.roi)
    face = FaceLandmarks(pts, measure.rest.box, 1.0)
    a, b = pts[list(MOUTH_CORNERS), :2]
    return float(np.linalg.norm(a - b) / face.inter_ocular)


def _draw(warp: FaceWarp, image: np.ndarray, sym: str) -> np.ndarray:
    frame = image.copy()
    o, r, w, b = _held(sym)
    return warp.mouth(frame, o, r, True, w, b)


def test_spread_and_rounded_lips_change_the_width(portrait):
    image, measure, warp = portrait
    rest = _width(measure, image)
    wide, round_, open_ = (_width(measure, _draw(warp, image, s)) for s in ("i", "u", "a"))
    # mouth-corner distance / inter-ocular, as the mesh sees it. Measured astronaut/hopper,
    # face mesh in f32 (face.precision, the default since issue 18), AMD EPYC: "ee" +0.037/
    # +0.059 over rest, +0.050/+0.006 over "ah", +0.116/+0.101 over "oo"; "oo" -0.079/-0.042
    # under rest, -0.065/-0.095 under "ah" (BF16 mesh: within 0.02 of these). On hopper's
    # smiling mouth the mesh puts the corners of an open "ah" as far out as spread lips
    # (the picture shows "ee" wider), so "ee" vs "ah" is held only to the mesh's noise
    # (±0.01 × inter-ocular, REFERENCE.md) and the spread is measured against "oo".
    assert wide > rest + 0.02 and wide > open_ - 0.01 and wide > round_ + 0.06, (wide, open_, round_, rest)
    assert round_ < rest - 0.025 and round_ < open_ - 0.03, (round_, open_, rest)


def test_lip_closures_and_lip_teeth(portrait):
    image, _, warp = portrait
    assert _held("m")[0] == 0.0 and _held("b")[0] == 0.0  # the lips meet
    assert np.array_equal(_draw(warp, image, "p"), image)
    # "f"/"v": the same small opening, but the upper teeth fill the gap (bright, not dark)
    assert _held("f")[3] == 1.0
    bite = warp.mouth(image.copy(), 0.3, 0.0, True, 0.0, 1.0).astype(np.float32)
    plain = warp.mouth(image.copy(), 0.3, 0.0, True, 0.0, 0.0).astype(np.float32)
    differ = np.abs(bite - plain).max(axis=2) > 30
    assert differ.sum() > 20
    assert bite[differ].mean() > plain[differ].mean() + 40


def test_the_mouth_interior_has_depth(portrait):
    image, _, warp = portrait
    frame = _draw(warp, image, "a")
    changed = np.abs(frame.astype(np.int16) - image).max(axis=2) > 60
    inside = frame[changed].astype(np.float32).mean(axis=1)
    assert changed.sum() > 100
    # not one flat colour: dark depth, shaded walls, teeth
    assert inside.std() > 25 and np.percentile(inside, 90) - np.percentile(inside, 10) > 60


def test_rest_after_speech_with_timings_is_the_photo(store, speak, hopper_bgr):
    pcm = speak("Who would move a movie to Friday?")
    dur = len(pcm) / SR
    syms = "huwʊdmuvəmuvitəfɹaɪdeɪ"
    step = dur / len(syms)
    phonemes = tuple(PhonemeTiming(s, i * step, (i + 1) * step) for i, s in enumerate(syms))
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(hopper_bgr)
    frames = engine.render(state, pcm, SR, phonemes)
    params = state.mouth
    assert len(frames) == round(len(pcm) * 25 / SR)
    silent = engine.render(state, np.zeros(SR // 2, np.float32), SR)
    assert all(np.array_equal(f, hopper_bgr) for f in silent[5:])
    assert params.shape == (0.0, 0.0, 0.0)


def test_every_viseme_class_is_drawn(portrait):
    image, _, warp = portrait
    drawn = {name: _draw(warp, image, sym) if sym else image for name, sym in VISEMES.items()}
    for name in ("F V", "O U W", "E I", "A"):
        assert not np.array_equal(drawn[name], image), name
    for a in ("F V", "O U W", "E I", "A"):
        for b in ("F V", "O U W", "E I", "A"):
            if a < b:
                assert np.abs(drawn[a].astype(np.int16) - drawn[b]).mean() > 0.1, (a, b)

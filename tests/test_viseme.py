"""The viseme engine, measured as the issue asks: the same face mesh re-detects the mouth on
the rendered frames of a spoken paragraph (real Piper speech, two real portraits).

Aperture = inner-lip gap (mesh points 13-14) / inter-ocular distance. Quality runs with
blinks and head motion off (the issue's setting for these tests) so that every pixel change
comes from the mouth; idle life is tested on its own below.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from avatar_agent.config import Config
from avatar_agent.face.analyzer import FaceAnalyzer, FaceLandmarks
from avatar_agent.face.mesh import roi_from_landmarks
from avatar_agent.lipsync.viseme import BLINK_S, VisemeEngine
from avatar_agent.types import PhonemeTiming

SR = 16000
FPS = 25
SENTENCES = (
    "The quick brown fox jumps over the lazy dog, and then it runs away.",
    "Speech is made of syllables. Each one opens the mouth a little, then closes it again.",
)
MAX_JUMP = 0.13  # largest frame-to-frame change of the mesh aperture; closed→wide in one frame is ~0.2


def _cfg(**lipsync) -> Config:
    return Config(lipsync={"blink": False, "head_motion": False, **lipsync}, face={"cache": False})


def _envelope(pcm: np.ndarray, n: int) -> np.ndarray:
    """Per-frame RMS of ``pcm`` over [k/fps, (k+1)/fps)."""
    hop = SR // FPS
    return np.array([np.sqrt(np.mean(pcm[k * hop:(k + 1) * hop] ** 2)) if k * hop < len(pcm) else 0.0
                     for k in range(n)])


class Measure:
    """Inner-lip aperture of frames as the face mesh sees them, tracked from the photo's ROI."""

    def __init__(self, store, image: np.ndarray) -> None:
        self.analyzer = FaceAnalyzer(cfg=Config(face={"cache": False}), store=store)
        self.rest = self.analyzer.analyze(image)
        self.roi = roi_from_landmarks(self.rest.points)
        self.photo = self(image)

    def __call__(self, frame: np.ndarray) -> float:
        pts, _ = self.analyzer.landmarks(frame, self.roi)
        return FaceLandmarks(pts, self.rest.box, 1.0).mouth_aperture()


@pytest.fixture(scope="module", params=["astronaut", "hopper"])
def talk(request, store, speak, face_bgr, hopper_bgr):
    """A two-sentence paragraph rendered as two chunks (as the pipeline sends them)."""
    image = face_bgr if request.param == "astronaut" else hopper_bgr
    pause = np.zeros(int(0.5 * SR), np.float32)
    chunks = [np.concatenate([pause, speak(SENTENCES[0])]),
              np.concatenate([pause, speak(SENTENCES[1]), pause])]
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(image)
    frames = np.concatenate([engine.render(state, c, SR) for c in chunks])
    pcm = np.concatenate(chunks)
    measure = Measure(store, image)
    aperture = np.array([measure(f) for f in frames])
    return image, engine, state, pcm, frames, aperture, measure


def test_frame_count_has_no_drift(talk):
    _, _, _, pcm, frames, _, _ = talk
    assert len(frames) == round(len(pcm) * FPS / SR)


def test_aperture_follows_the_speech_envelope(talk):
    _, _, _, pcm, frames, aperture, _ = talk
    env = _envelope(pcm, len(frames))
    rs = {}
    for lag in range(-4, 5):  # aperture[k + lag] against env[k]
        a = aperture[max(lag, 0):len(aperture) + min(lag, 0)]
        e = env[max(-lag, 0):len(env) + min(-lag, 0)]
        rs[lag] = float(np.corrcoef(a, e)[0, 1])
    best = max(rs, key=rs.get)
    # on time: the mouth follows the sound at lag 0 (look-ahead; was +1 frame, r 0.56-0.59
    # at lag 0), on either portrait. No phoneme timings here, so the audio viseme model
    # shapes the lips (rounded/spread lips change the inner-lip gap the mesh sees): r at lag
    # 0 >= 0.72 as with Piper's timings (test_real_phoneme_timings_keep_the_sync); measured
    # astronaut 0.846, hopper 0.865 (power-law loudness map; was 0.645 with the dB map)
    assert best == 0 and rs[0] >= 0.72 and rs[0] >= max(rs[-1], rs[1]) + 0.03, rs


def test_silent_frames_are_at_the_photos_closed_level(talk):
    _, _, _, pcm, frames, aperture, measure = talk
    env = _envelope(pcm, len(frames))
    quiet = env < 10 ** (-50 / 20)
    # silence that has lasted 3 frames (release) and is not 1 frame before an onset
    padded = np.concatenate([[True] * 3, quiet, [True]])
    silent = np.all([padded[i:i + len(quiet)] for i in range(5)], axis=0)
    assert silent.sum() >= 10
    # mesh noise on a still photo is about ±0.01 of the inter-ocular distance (measured)
    assert np.abs(aperture[silent] - measure.photo).max() <= 0.025, (aperture[silent], measure.photo)
    loud = env > np.percentile(env, 75)
    assert aperture[loud].mean() > measure.photo + 0.05


def test_no_flicker(talk):
    _, _, _, _, _, aperture, _ = talk
    d = np.diff(aperture)
    assert np.abs(d).max() <= MAX_JUMP
    # no open-shut-open flutter: big swings undone at the very next frame are rare (syllables
    # take ~5 frames; measured 0-1 per paragraph, mesh noise included)
    flips = (np.sign(d[1:]) != np.sign(d[:-1])) & (np.minimum(abs(d[1:]), abs(d[:-1])) > 0.09)
    assert flips.sum() <= 2, np.round(d, 3)


def test_pixels_outside_the_lower_face_are_unchanged(talk):
    image, _, state, _, frames, _, _ = talk
    x1, y1, x2, y2 = state.face.lower_face_box()
    outside = np.ones(image.shape[:2], bool)
    outside[max(y1, 0):y2, max(x1, 0):x2] = False
    changed = frames.astype(np.int16) - image.astype(np.int16)
    assert np.abs(changed).max() > 40  # the mouth did move
    worst = np.inf
    for diff in changed:  # the worst single frame
        mse = float(np.mean(diff[outside].astype(np.float64) ** 2))
        worst = min(worst, 10 * np.log10(255.0**2 / mse) if mse > 0 else np.inf)
    assert worst >= 45.0, worst
    # and the region allowed to change is the lower face, not the picture
    assert (x2 - x1) * (y2 - y1) < 0.25 * image.shape[0] * image.shape[1]


def test_rest_frames_equal_the_input(talk):
    image, engine, state, _, frames, _, _ = talk
    assert np.array_equal(frames[0], image)  # before the first word
    silent = engine.render(state, np.zeros(SR, np.float32), SR)
    assert len(silent) == FPS
    # the mouth closes within the release time, then every frame is the photo itself
    assert all(np.array_equal(f, image) for f in silent[5:])
    assert np.array_equal(engine.idle(state, 1.0), image)


def test_colours_stay_bgr(talk):
    image, _, state, _, frames, aperture, _ = talk
    k = int(np.argmax(aperture))
    x1, y1, x2, y2 = state.face.lower_face_box()
    before = image[y1:y2, x1:x2].reshape(-1, 3).mean(0)
    after = frames[k][y1:y2, x1:x2].reshape(-1, 3).mean(0)
    # skin is red-dominant in BGR order (index 2); a swapped channel order would flip it
    assert before[2] > before[0] + 20 and after[2] > after[0] + 20
    assert np.abs(after - before).max() < 30


def _differing_frames(a: np.ndarray, b: np.ndarray) -> set[int]:
    return set(np.nonzero(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=(1, 2, 3)) > 2)[0].tolist())


def test_streaming_equals_one_shot(store, speak, hopper_bgr):
    """Streaming in chunks gives the one-shot frames, except that the last frame or two of
    a chunk look ahead (``LOOKAHEAD_S``) past the audio known so far: they are drawn as if
    the level went on (provisional), and the next chunk continues from the one-shot state,
    so no other frame, and never the frame count, depends on the chunking. At the TTS's
    cuts (sentences, ending in a pause) a frame differs only where the next sentence starts
    speaking within the look-ahead (here: one, where Piper's second sentence has no
    leading silence); cuts inside words change at most the two frames before each cut."""
    pause = np.zeros(SR // 3, np.float32)
    sentences = [speak(SENTENCES[0]), pause, speak(SENTENCES[1]), pause]
    pcm = np.concatenate(sentences)
    whole_engine = VisemeEngine(cfg=_cfg(), store=store)
    whole = whole_engine.render(whole_engine.prepare(hopper_bgr), pcm, SR)
    for chunks, most in ((sentences, 1), (np.split(pcm, np.sort(np.random.default_rng(3).integers(
            1, len(pcm) - 1, 12))), 24)):
        engine = VisemeEngine(cfg=_cfg(), store=store)
        state = engine.prepare(hopper_bgr)
        streamed = np.concatenate([engine.render(state, p, SR) for p in chunks])
        assert len(streamed) == len(whole) == round(len(pcm) * FPS / SR)
        ends = np.cumsum([len(c) for c in chunks])[:-1]
        last_of_chunk = {int(round(e * FPS / SR)) - j for e in ends for j in (1, 2)}
        differ = _differing_frames(streamed, whole)
        assert differ <= last_of_chunk and len(differ) <= most, (sorted(differ), sorted(last_of_chunk))


def test_other_sample_rates_keep_the_frame_count(store, speak, hopper_bgr):
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(hopper_bgr)
    pcm22 = speak(SENTENCES[0], sr=22050)
    frames = engine.render(state, pcm22, 22050)
    assert len(frames) == round(len(pcm22) * FPS / 22050)


def test_reset_closes_the_mouth_at_once(store, speak, hopper_bgr):
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(hopper_bgr)
    engine.render(state, speak(SENTENCES[0])[: SR // 2], SR)
    engine.reset(state)
    frames = engine.render(state, np.zeros(SR // 5, np.float32), SR)
    assert all(np.array_equal(f, hopper_bgr) for f in frames)


def test_bilabial_phoneme_closes_the_lips(store, speak, hopper_bgr):
    pcm = speak("Ahhh")
    dur = len(pcm) / SR
    engine = VisemeEngine(cfg=_cfg(), store=store)
    vowel = engine.render(engine.prepare(hopper_bgr), pcm, SR, (PhonemeTiming("a", 0.0, dur),))
    lips = engine.render(engine.prepare(hopper_bgr), pcm, SR, (PhonemeTiming("m", 0.0, dur),))
    a = np.abs(vowel.astype(np.int16) - hopper_bgr).mean()
    m = np.abs(lips.astype(np.int16) - hopper_bgr).mean()
    assert m < 0.5 * a


def test_real_phoneme_timings_keep_the_sync(store, hopper_bgr):
    """Piper's own per-phoneme timings (as the TTS stage sends them) shape the mouth in sync."""
    pytest.importorskip("onnx")  # Piper needs it to expose the alignments
    from piper import PiperVoice

    from avatar_agent.audio.io import resample
    from avatar_agent.tts.piper import _timings

    voice = PiperVoice.load(str(store.path("piper-joe-medium")), include_alignments=True)
    chunks = list(voice.synthesize(" ".join(SENTENCES) + " Maybe my mom will bake bread.",
                                   include_alignments=True))
    assert all(_timings(c) for c in chunks)
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(hopper_bgr)
    frames = np.concatenate([engine.render(state, c.audio_float_array, c.sample_rate, _timings(c))
                             for c in chunks])
    pcm = np.concatenate([resample(c.audio_float_array, c.sample_rate, SR) for c in chunks])
    measure = Measure(store, hopper_bgr)
    aperture = np.array([measure(f) for f in frames])
    env = _envelope(pcm, len(frames))
    rs = {lag: float(np.corrcoef(aperture[max(lag, 0):len(aperture) + min(lag, 0)],
                                 env[max(-lag, 0):len(env) + min(-lag, 0)])[0, 1]) for lag in range(-3, 4)}
    best = max(rs, key=rs.get)
    # measured: r(0) 0.838 (0.718 with the former linear-in-dB loudness map)
    assert best == 0 and rs[0] >= 0.72, rs
    assert np.abs(np.diff(aperture)).max() <= MAX_JUMP


def test_reply_head_split_renders_as_the_whole(store, hopper_bgr):
    """The live reply draws its first chunk as a 0.3 s head and the rest (the speaker starts
    sooner): Piper's real chunk with its phoneme timings, split that way and the head drawn
    knowing the rest (``ahead``), gives exactly the whole chunk's frames."""
    pytest.importorskip("onnx")  # Piper needs it to expose the alignments
    from piper import PiperVoice

    from avatar_agent.pipeline import split_head
    from avatar_agent.tts.piper import _timings
    from avatar_agent.types import SpeechChunk

    voice = PiperVoice.load(str(store.path("piper-joe-medium")), include_alignments=True)
    c = next(iter(voice.synthesize(SENTENCES[0], include_alignments=True)))
    chunk = SpeechChunk(c.audio_float_array, c.sample_rate, text=SENTENCES[0], phonemes=_timings(c))
    head, rest = split_head(chunk, FPS, 0.3)
    n = round(0.3 * FPS)  # whole frames
    assert len(head.pcm) == n * c.sample_rate // FPS and head.text == SENTENCES[0] and rest.text == ""
    assert len(head.pcm) + len(rest.pcm) == len(chunk.pcm)
    joined = head.phonemes + tuple(replace(p, start=p.start + n / FPS, end=p.end + n / FPS) for p in rest.phonemes)
    assert [p.phoneme for p in joined] == [p.phoneme for p in chunk.phonemes]  # none cut in two
    assert np.allclose([(p.start, p.end) for p in joined], [(p.start, p.end) for p in chunk.phonemes])
    engine = VisemeEngine(cfg=_cfg(), store=store)
    whole = engine.render(engine.prepare(hopper_bgr), chunk.pcm, chunk.sample_rate, chunk.phonemes)
    engine = VisemeEngine(cfg=_cfg(), store=store)
    state = engine.prepare(hopper_bgr)
    split = np.concatenate([
        engine.render_chunk(state, head.pcm, head.sample_rate, head.text, head.phonemes, (rest.pcm, rest.phonemes)).frames,
        engine.render_chunk(state, rest.pcm, rest.sample_rate, rest.text, rest.phonemes).frames])
    assert len(split) == len(whole)
    assert not _differing_frames(split, whole)  # the head read the rest ahead: no provisional frame
    short = replace(chunk, pcm=chunk.pcm[: int(0.5 * c.sample_rate)])
    assert split_head(short, FPS, 0.3) == (short,)


@pytest.mark.parametrize("height", [256, 1080])
def test_small_and_large_portraits(store, speak, hopper_bgr, height):
    width = round(hopper_bgr.shape[1] * height / hopper_bgr.shape[0])
    image = cv2.resize(hopper_bgr, (width, height),
                       interpolation=cv2.INTER_AREA if height < 600 else cv2.INTER_CUBIC)
    engine = VisemeEngine(cfg=_cfg(), store=store)
    pcm = speak(SENTENCES[0])
    frames = engine.render(engine.prepare(image), pcm, SR)
    assert frames.shape == (round(len(pcm) * FPS / SR), *image.shape) and frames.dtype == np.uint8
    measure = Measure(store, image)
    loud = np.nonzero(_envelope(pcm, len(frames)) > np.percentile(_envelope(pcm, len(frames)), 80))[0]
    assert np.mean([measure(frames[k]) for k in loud]) > measure.photo + 0.05


def test_idle_blinks_at_natural_intervals(store, hopper_bgr):
    engine = VisemeEngine(cfg=_cfg(blink=True), store=store)
    state = engine.prepare(hopper_bgr)
    times = np.arange(0, 40, 1 / FPS)
    diffs = np.array([np.abs(engine.idle(state, t).astype(np.int16) - hopper_bgr).max() for t in times])
    closing = times[diffs > 30]
    starts = closing[np.concatenate([[True], np.diff(closing) > 0.5])]
    assert 5 <= len(starts) <= 20, starts  # one blink every 2–7 s
    gaps = np.diff(starts)
    assert gaps.min() > 1.5 and gaps.max() < 8
    assert (diffs > 0).mean() < 0.15  # a blink is short: most of the time the eyes are open
    # the eyelids move, not the mouth: changes stay above the nose
    frame = engine.idle(state, float(starts[0] + 0.4 * BLINK_S))
    ys = np.nonzero(np.abs(frame.astype(np.int16) - hopper_bgr).max(axis=2) > 10)[0]
    assert len(ys) > 20 and ys.max() < state.face.points[2, 1]


def test_head_motion_is_a_setting(store, hopper_bgr):
    still = VisemeEngine(cfg=_cfg(head_motion=False), store=store)
    moving = VisemeEngine(cfg=_cfg(head_motion=True), store=store)
    s_state, m_state = still.prepare(hopper_bgr), moving.prepare(hopper_bgr)
    assert all(np.array_equal(still.idle(s_state, t), hopper_bgr) for t in (0.7, 1.9, 3.3))
    moved = [np.abs(moving.idle(m_state, t).astype(np.int16) - hopper_bgr).mean() for t in (0.7, 1.9, 3.3)]
    assert min(moved) > 0.5  # the whole head sways a little
    assert max(moved) < 15  # but only a little

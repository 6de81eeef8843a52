"""The project's own audio -> viseme model (``train-visemes``, docs/viseme_model.md): the
committed file, its accuracy on a voice it never heard (espeak-ng, with espeak's own phoneme
timings) against the best loudness-only predictor, what it does to the mouth in the engine,
and the training command itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_agent import cli
from avatar_agent.config import Config
from avatar_agent.lipsync.audio_visemes import MODEL_PATH, N_CTX, N_MELS, VisemeModel, default_model
from avatar_agent.lipsync.mouth import VISEME_CLASSES, MouthTracker
from avatar_agent.lipsync.viseme import VisemeEngine
from avatar_agent.train.espeak import espeak_speech
from avatar_agent.train.visemes import dataset, espeak_set, loudness_baseline

SR = 16000
OO = "Who knew you two would move through the blue moon room? Do choose the new shoes."
EE = "We see three green trees. Each of these sheep eats cheese in the east field."


def _espeak16(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    from avatar_agent.audio.io import resample

    pcm, rate, _ = espeak_speech(text, voice, speed)
    return resample(pcm, rate, SR)


def test_committed_model_loads_with_openvino_and_is_small():
    assert MODEL_PATH.is_file()
    size = MODEL_PATH.stat().st_size
    assert 50_000 < size <= 5_000_000, size  # a few hundred kB
    model = VisemeModel(MODEL_PATH)
    probs = model.probs(np.full((3, N_CTX, N_MELS), -40.0, np.float32))
    assert probs.shape == (3, len(VISEME_CLASSES))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


@pytest.mark.parametrize("voice,speed", [("en-us+f3", 175), ("en-gb-x-rp", 140)])
def test_beats_the_best_loudness_predictor_on_a_voice_it_never_heard(voice, speed):
    # held-out sentences, espeak-ng voices (training used only Piper): labels are espeak's
    # own phoneme events mapped by the engine's viseme_class; the baseline is the best any
    # loudness-only predictor can do on these very frames (each 1 dB bin -> its majority class)
    x, y, levels = dataset(espeak_set(voice, speed))
    assert len(y) > 300
    model = float(np.mean(default_model().probs(x).argmax(1) == y))
    baseline = float(np.mean(loudness_baseline(levels, y) == y))
    # measured: model 0.76 / 0.83, loudness baseline 0.49 / 0.50 (docs/viseme_model.md)
    assert model >= baseline + 0.05, (model, baseline)


def _tracker(audio_model: bool) -> MouthTracker:
    engine_cfg = Config(lipsync={"viseme": {"audio_model": audio_model}})
    vc = engine_cfg.lipsync.viseme
    return MouthTracker(fps=25.0, gain=vc.gain, max_open=vc.max_open, attack_s=vc.attack_ms / 1000,
                        release_s=vc.release_ms / 1000, model=default_model() if audio_model else None)


def test_rounded_and_spread_lips_from_the_sound_alone():
    oo, ee = _espeak16(OO), _espeak16(EE)
    on = {name: _tracker(True).step(pcm, SR) for name, pcm in (("oo", oo), ("ee", ee))}
    off = {name: _tracker(False).step(pcm, SR) for name, pcm in (("oo", oo), ("ee", ee))}
    # loudness only: no lip shape at all, and the same opening with the model on, but for
    # lip closures and lip-bites (which only ever close it further)
    for name in ("oo", "ee"):
        assert not off[name].round.any() and not off[name].wide.any()
        assert np.all(on[name].open <= off[name].open + 0.05)

    def mean(params, what):
        voiced = params.open > 0.2
        return float(getattr(params, what)[voiced].mean())

    # measured (committed model): "oo" round 0.50, wide 0.02; "ee" round 0.07, wide 0.42
    assert mean(on["oo"], "round") > mean(on["ee"], "round") + 0.1
    assert mean(on["ee"], "wide") > mean(on["oo"], "wide") + 0.1


def test_engine_switch(store, hopper_bgr):
    pcm = _espeak16("Who moves the blue boots?")
    frames = {}
    for flag in (True, False):
        cfg = Config(lipsync={"blink": False, "head_motion": False, "viseme": {"audio_model": flag}},
                     face={"cache": False})
        engine = VisemeEngine(cfg=cfg, store=store)
        state = engine.prepare(hopper_bgr)
        assert (state.mouth.model is not None) == flag
        frames[flag] = engine.render(state, pcm, SR)
    assert frames[True].shape == frames[False].shape
    changed = [not np.array_equal(a, b) for a, b in zip(frames[True], frames[False], strict=True)]
    assert sum(changed) > len(changed) // 4


def test_silence_stays_closed():
    tracker = _tracker(True)
    quiet = tracker.step(np.zeros(SR, np.float32), SR)
    assert not quiet.open.any() and not quiet.round.any() and not quiet.wide.any() and not quiet.bite.any()
    tracker.step(_espeak16(OO), SR)
    after = tracker.step(np.zeros(SR, np.float32), SR)
    for what in ("open", "round", "wide", "bite"):
        assert not getattr(after, what)[8:].any(), what
    assert tracker.shape == (0.0, 0.0, 0.0)


def test_chunked_equals_one_shot():
    pcm = np.concatenate([np.zeros(SR // 3, np.float32), _espeak16(OO), _espeak16(EE, "en-us+f3")])
    one = _tracker(True).step(pcm, SR)
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.integers(1, len(pcm) - 1, 12))
    tracker = _tracker(True)
    parts = [tracker.step(c, SR) for c in np.split(pcm, cuts)]
    ends = {int(round(e * 25 / SR)) - j for e in cuts for j in (1, 2)}  # provisional frames
    for what in ("open", "round", "wide", "bite"):
        a, b = getattr(one, what), np.concatenate([getattr(p, what) for p in parts])
        assert len(a) == len(b)
        differ = set(np.flatnonzero(a != b).tolist())
        assert differ <= ends, (what, sorted(differ - ends))


def test_a_new_sample_rate_mid_stream():
    tracker = _tracker(True)
    first = tracker.step(_espeak16(OO)[: SR // 2], SR)
    from avatar_agent.audio.io import resample

    more = resample(_espeak16(EE), SR, 24000)
    second = tracker.step(more, 24000)
    # no drift: the frame count is that of the whole stream at the new rate
    assert len(first.open) + len(second.open) == round((SR // 2 * 24000 // SR + len(more)) * 25 / 24000)
    assert second.wide.max() > 0.2  # still shaped after the switch


def test_train_visemes_end_to_end(tmp_path, capsys):
    """The training command, on a tiny budget: data, training, ONNX, loadable; the same seed
    gives the same file bit for bit."""
    outs = []
    for i in range(2):
        out = tmp_path / f"m{i}.onnx"
        rc = cli.main(["train-visemes", "--out", str(out), "--minutes", "0.1", "--epochs", "2",
                       "--no-eval", "--report", str(tmp_path / f"r{i}.json")])
        assert rc == 0
        outs.append(out.read_bytes())
    report = json.loads((tmp_path / "r0.json").read_text())
    assert report["train_frames"] > 100 and len(report["curve"]) == 2
    assert report["onnx_vs_torch_max_diff"] < 1e-4
    probs = VisemeModel(tmp_path / "m0.onnx").probs(np.zeros((2, N_CTX, N_MELS), np.float32) - 60)
    assert probs.shape == (2, len(VISEME_CLASSES))
    assert outs[0] == outs[1]
    assert '"sha256"' in capsys.readouterr().out


def test_train_visemes_without_torch_is_one_line(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    rc = cli.main(["train-visemes", "--out", "/nonexistent/x.onnx", "--minutes", "0.1"])
    err = capsys.readouterr().err.strip()
    assert rc == 6 and "\n" not in err
    assert err.startswith("error:") and "pip install 'avatar-agent[convert]'" in err

"""The end-of-turn model (Smart Turn v3.2, ``audio.vad.turn_model: smart_turn``): real
model from the store, real speech, and the config switch.

What the model does on speech, measured (benchmarks/RESULTS.md, "Smart Turn"): on the
project's Piper voice it scores complete questions above the same questions cut
mid-sentence (AUC 0.78); on espeak-ng voices it cannot tell them apart (AUC 0.43-0.46),
which is why ``turn_model`` defaults to ``none``. The discrimination test below runs on
Piper (deterministic: noise off), where the measurement says it holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_agent.audio.turn_end import MODEL_NAME, SmartTurn, features
from avatar_agent.config import Config, load_config
from avatar_agent.errors import ConfigError, ModelError
from avatar_agent.models import ModelStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_questions import TABLE, espeak  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def smart_turn(store) -> SmartTurn:
    store.pull(MODEL_NAME)  # not a default model: `make test` pulls it (TEST_MODELS)
    model = SmartTurn.from_store(store, threads=1)
    model.load()
    return model


def _padded(pcm: np.ndarray, tail_s: float = 0.2) -> np.ndarray:
    """Pre-roll and the silence a 200 ms pause hands the model (as the VAD does)."""
    return np.concatenate([np.zeros(int(0.3 * SR), np.float32), pcm,
                           np.zeros(int(tail_s * SR), np.float32)])


def test_features_are_whisper_log_mel_of_the_last_8_s():
    # faster-whisper's own numpy Whisper front end on the same 8 s window (zero-padded at
    # the start, normalised to zero mean / unit variance) is an independent reference
    from faster_whisper.feature_extractor import FeatureExtractor

    pcm = espeak("What is the capital of Italy?", "en-us", 150)
    window = np.pad(pcm, (8 * SR - len(pcm), 0))
    window = ((window - window.mean()) / np.sqrt(window.var() + 1e-7)).astype(np.float32)
    ref = FeatureExtractor(chunk_length=8)(window, padding=0)
    ours = features(pcm)
    assert ours.shape == ref.shape == (80, 800) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-4
    # only the last 8 s count: speech 20 s earlier changes nothing
    longer = np.concatenate([np.tile(pcm, 8), np.zeros(8 * SR, np.float32), pcm])
    assert np.array_equal(features(longer), features(longer[-8 * SR:]))


def test_complete_questions_score_above_the_same_questions_cut(smart_turn, speak):
    # Piper voice (noise off: the same samples every run), the fixture set's 20 questions
    # vs their first 40-70 % of words; a broken front end (wrong padding, no
    # normalisation, time reversed) scores both alike
    rng = np.random.default_rng(9)
    complete, cut = [], []
    for text, *_ in TABLE:
        words = text.split()
        k = int(np.clip(round(rng.uniform(0.4, 0.7) * len(words)), 1, len(words) - 1))
        complete.append(smart_turn.predict(_padded(speak(text))))
        cut.append(smart_turn.predict(_padded(speak(" ".join(words[:k])))))
    complete_arr, cut_arr = np.array(complete), np.array(cut)
    auc = float(np.mean(complete_arr[:, None] > cut_arr[None, :]))
    assert all(0.0 <= p <= 1.0 for p in complete + cut)
    assert auc >= 0.65, f"AUC {auc:.2f}"  # measured 0.78
    assert np.median(complete_arr) > np.median(cut_arr)


def test_other_rates_are_resampled_and_empty_audio_is_one_line(smart_turn):
    import soxr

    pcm = _padded(espeak("How far away is the moon?", "en-us+f3", 130))
    p16 = smart_turn.predict(pcm)
    p48 = smart_turn.predict(soxr.resample(pcm, SR, 48000).astype(np.float32), 48000)
    assert abs(p16 - p48) < 0.1
    with pytest.raises(Exception, match="no audio") as err:
        smart_turn.predict(np.zeros(0, np.float32))
    assert "\n" not in str(err.value)


def test_missing_model_names_the_pull_command(tmp_path: Path):
    with pytest.raises(ModelError, match=f"avatar-agent models pull {MODEL_NAME}") as err:
        SmartTurn.from_store(ModelStore(tmp_path, progress=False))
    assert "\n" not in str(err.value)


def test_config_switch_default_none_and_choices():
    assert Config().audio.vad.turn_model == "none"  # measured: does not pay (RESULTS.md)
    cfg = load_config(None, ["audio.vad.turn_model=smart_turn", "audio.vad.turn_threshold=0.7",
                             "audio.vad.turn_threads=2"])
    assert (cfg.audio.vad.turn_model, cfg.audio.vad.turn_threshold, cfg.audio.vad.turn_threads) == (
        "smart_turn", 0.7, 2)
    with pytest.raises(ConfigError, match="audio.vad.turn_model") as err:
        load_config(None, ["audio.vad.turn_model=pipecat"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="audio.vad.turn_threshold"):
        load_config(None, ["audio.vad.turn_threshold=1.5"])

"""VAD segmentation on real Piper speech with real silence and noise around it."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_agent.audio.vad import SpeechDrop, SpeechStart, VadSegmenter
from avatar_agent.types import Utterance

SR = 16000


def _feed(seg: VadSegmenter, pcm: np.ndarray, block: int = 320, t0: float = 100.0):
    """Push ``pcm`` in capture-sized blocks; returns [(event, sample index of the block)]."""
    out = []
    for i in range(0, len(pcm), block):
        for ev in seg.push(pcm[i:i + block], t0 + i / SR):
            out.append((ev, i))
    return out


def _noise(seconds: float, level: float = 0.002, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * level).astype(np.float32)


def _room(*parts: np.ndarray | float, level: float = 0.002) -> np.ndarray:
    """Speech parts and pauses (seconds) in a row, with one steady room noise over all of it."""
    pcm = np.concatenate([np.zeros(int(p * SR), np.float32) if isinstance(p, float) else p
                          for p in parts])
    return pcm + _noise(len(pcm) / SR, level, seed=len(pcm))


@pytest.fixture(scope="module")
def question(speak) -> np.ndarray:
    return speak("What is the capital of France?")


def test_one_utterance_with_preroll_and_times(question):
    seg = VadSegmenter(sample_rate=SR, preroll_ms=300, hangover_ms=600, onset_ms=60)
    lead, tail = 1.0, 1.5
    pcm = _room(lead, question, tail)
    events = _feed(seg, pcm)
    kinds = [type(e).__name__ for e, _ in events]
    assert kinds == ["SpeechStart", "Utterance"], kinds
    start, utt = events[0][0], events[1][0]
    assert isinstance(start, SpeechStart) and isinstance(utt, Utterance)
    onset = 100.0 + lead + np.argmax(np.abs(question) > 0.02) / SR
    # onset found within 150 ms of the first loud sample (barge-in depends on it)
    assert abs(start.t - onset) < 0.15, (start.t, onset)
    # the utterance holds the pre-roll before the onset and all of the speech
    assert utt.t_start == pytest.approx(start.t)
    assert len(utt.pcm) / SR >= len(question) / SR - 0.1
    speech_end = 100.0 + lead + len(question) / SR
    assert abs(utt.t_end - speech_end) < 0.35
    # the question's loud part is inside the utterance, unclipped at the front
    first_loud = np.argmax(np.abs(utt.pcm) > 0.02) / SR
    assert first_loud >= 0.2, "pre-roll missing: speech starts at the first sample"


def test_hangover_joins_short_pauses_and_splits_long_ones(speak):
    a, b = speak("Hello there."), speak("How are you today?")
    seg = VadSegmenter(sample_rate=SR, hangover_ms=600)
    joined = _room(0.5, a, 0.3, b, 1.0)
    utts = [e for e, _ in _feed(seg, joined) if isinstance(e, Utterance)]
    assert len(utts) == 1
    seg.reset()
    split = _room(0.5, a, 1.2, b, 1.0)
    utts = [e for e, _ in _feed(seg, split) if isinstance(e, Utterance)]
    assert len(utts) == 2


def test_min_and_max_length(speak, question):
    seg = VadSegmenter(sample_rate=SR, min_utterance_ms=300)
    click = _room(0.5, question[8000:8000 + 2400], 1.0)  # 150 ms of voice
    events = [e for e, _ in _feed(seg, click)]
    assert not any(isinstance(e, Utterance) for e in events)
    assert any(isinstance(e, SpeechDrop) for e in events)
    seg = VadSegmenter(sample_rate=SR, max_utterance_s=1.0, hangover_ms=600)
    long = _room(0.3, question, question, 1.0)
    utts = [e for e, _ in _feed(seg, long) if isinstance(e, Utterance)]
    assert len(utts) >= 2
    assert all(u.duration_s <= 1.0 + 0.3 + 0.25 for u in utts)  # max + pre-roll + kept tail


def test_silence_and_noise_never_trigger():
    seg = VadSegmenter(sample_rate=SR, aggressiveness=3)
    assert _feed(seg, np.zeros(SR * 3, np.float32)) == []
    seg = VadSegmenter(sample_rate=SR, aggressiveness=2)
    assert [e for e, _ in _feed(seg, _noise(3.0, level=0.003))] == []
    # noise switched on after digital silence (a mic unmuted) is never an utterance
    events = [e for e, _ in _feed(seg, np.concatenate([np.zeros(SR, np.float32), _noise(3.0, 0.01)]))]
    assert not any(isinstance(e, Utterance) for e in events)


def test_gate_suppresses_and_odd_block_sizes(question):
    seg = VadSegmenter(sample_rate=SR)
    pcm = _room(0.5, question, 1.0)
    gated = [ev for i in range(0, len(pcm), 320) for ev in seg.push(pcm[i:i + 320], i / SR, gate=True)]
    assert gated == []
    seg.reset()
    events = _feed(seg, pcm, block=137)  # blocks that do not match the VAD frame
    assert [type(e).__name__ for e, _ in events] == ["SpeechStart", "Utterance"]


def test_early_pause_then_resume_then_final(speak):
    a, b = speak("Tell me something."), speak("About the moon.")
    seg = VadSegmenter(sample_rate=SR, hangover_ms=600, early_ms=200)
    events = [e for e, _ in _feed(seg, _room(0.5, a, 0.05, b, 1.2))]  # Piper adds ~0.3 s of its own
    kinds = [type(e).__name__ for e in events]
    # pause after "something", resume on "about", pause again, then the one final utterance
    assert kinds == ["SpeechStart", "SpeechPause", "SpeechResume", "SpeechPause", "Utterance"], kinds
    first_pause, final = events[1].utterance, events[-1]
    assert first_pause.duration_s < final.duration_s
    assert events[3].utterance.t_end == pytest.approx(final.t_end, abs=0.03)
    assert abs(first_pause.t_end - (100.0 + 0.5 + len(a) / SR)) < 0.35

"""Playback queue and clock, driving the real callback by hand (no sound device needed).

``FakeStatus`` stands in for PortAudio's ``CallbackFlags``. The clock test uses real
monotonic time between callbacks, as the audio thread would.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from avatar_agent.audio.playback import Playback

RATE = 16000
BLOCK = 320


class FakeStatus:
    output_underflow = False


def _pb() -> Playback:
    pb = Playback(sample_rate=RATE, block_ms=20)
    pb._latency = 0.04
    return pb


def _pull(pb: Playback, blocks: int) -> np.ndarray:
    out = []
    for _ in range(blocks):
        buf = np.full((BLOCK, 1), 9.0, np.float32)  # garbage: the callback must overwrite all
        pb._callback(buf, BLOCK, None, FakeStatus())
        out.append(buf[:, 0].copy())
    return np.concatenate(out)


def test_queue_order_positions_and_silence(speak):
    pb = _pb()
    a, b = speak("One."), speak("Two.")
    sa = pb.enqueue(a, RATE)
    sb = pb.enqueue(b, RATE)
    assert (sa.start, sb.start) == (0, len(a))
    out = _pull(pb, (len(a) + len(b)) // BLOCK + 5)
    np.testing.assert_array_equal(out[:len(a)], a)
    np.testing.assert_array_equal(out[len(a):len(a) + len(b)], b)
    assert not out[len(a) + len(b):].any()  # silence after, never garbage
    # audio queued after a gap starts at the next block handed out, not in the past
    sc = pb.enqueue(a, RATE)
    assert sc.start == pb._pos


def test_resamples_other_rates(speak):
    pb = _pb()
    pcm22 = speak("Hello there.", sr=22050)
    s = pb.enqueue(pcm22, 22050)
    assert s.rate == RATE and abs(s.length - len(pcm22) * RATE / 22050) <= 1
    # the device gets the same speech at its own rate (not 22 kHz samples played at 16 kHz)
    out = _pull(pb, s.length // BLOCK + 2)
    want = speak("Hello there.", sr=RATE)
    assert s.length == len(want)
    np.testing.assert_allclose(out[:s.length], want, atol=1e-6)
    assert not out[s.length:].any()


def test_flush_stops_within_one_block_and_reports_heard(speak):
    pb = _pb()
    pcm = speak("This reply is long enough to be interrupted in the middle of it.")
    s = pb.enqueue(pcm, RATE)
    _pull(pb, 50)  # 1 s handed to the device
    time.sleep(0.05)
    heard = pb.flush()
    after = _pull(pb, 3)
    fade = int(RATE * 0.004)
    assert np.abs(after[:fade]).max() <= np.abs(pcm).max()
    assert not after[fade:].any(), "audio still handed out after the flush block"
    # heard: what was handed minus the device latency, plus the time since the callback
    got = pb.heard_samples(s, heard)
    assert 0.9 * RATE < got <= 50 * BLOCK
    assert pb.queued_s() < 0.01


def test_clock_advances_smoothly_between_callbacks():
    pb = _pb()
    pb.enqueue(np.zeros(RATE * 2, np.float32), RATE)
    _pull(pb, 10)  # 200 ms handed, last block at pos 2880
    t_cb = pb._cb_time
    assert pb.heard_position(t_cb) == pytest.approx(9 * BLOCK - 0.04 * RATE, abs=1)
    assert pb.heard_position(t_cb + 0.01) == pytest.approx(9 * BLOCK - 0.03 * RATE, abs=1)
    # a stalled device: the clock never passes what was handed
    assert pb.heard_position(t_cb + 5.0) == 10 * BLOCK


def test_duck_silences_at_once_keeps_the_clock_and_flush_reports_the_duck(speak):
    pb = _pb()
    pcm = speak("A reply that someone may talk over at any moment now.")
    s = pb.enqueue(pcm, RATE)
    _pull(pb, 25)
    pb.duck(True)
    ducked = _pull(pb, 5)
    assert not ducked.any(), "audio handed out while ducked"
    pb.duck(False)  # a false alarm: the reply resumes where the clock is, not where it stopped
    resumed = _pull(pb, 5)
    np.testing.assert_array_equal(resumed, pcm[30 * BLOCK:35 * BLOCK])
    _pull(pb, 5)
    pb.duck(True)
    at_duck = pb.heard_position()
    _pull(pb, 3)
    heard = pb.flush()
    assert not pb.ducked and heard <= at_duck + 1
    assert pb.heard_samples(s, heard) < 40 * BLOCK

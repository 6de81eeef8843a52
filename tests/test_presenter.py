"""Presenter pacing against an audio clock, without a window (``window=False``).

``FakeClock`` stands in for :class:`Playback` (interface-true: ``position_of``): a
timeline that runs at real time, can start late and can stall then jump, which is what a
loaded audio device does. Frames carry their index in pixel (0, 0).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from avatar_agent.audio.playback import Scheduled
from avatar_agent.render.window import Presenter
from avatar_agent.types import FrameChunk

FPS = 25.0
RATE = 16000
IDLE = 255


class FakeClock:
    """Timeline seconds = monotonic time since ``t0``, frozen during ``stall`` (s, s)."""

    def __init__(self, stall: tuple[float, float] | None = None) -> None:
        self.t0 = time.monotonic()
        self.stall = stall

    def seconds(self, now: float) -> float:
        t = now - self.t0
        if self.stall and self.stall[0] <= t < self.stall[1]:
            return self.stall[0]
        return t

    def position_of(self, at: Scheduled, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return self.seconds(now) - at.start / at.rate


def _chunk(n_frames: int) -> FrameChunk:
    frames = np.zeros((n_frames, 8, 8, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n_frames)
    audio = np.zeros(int(n_frames / FPS * RATE), np.float32)
    return FrameChunk(frames=frames, fps=FPS, audio=audio, sample_rate=RATE)


def _run(clock: FakeClock, chunk: FrameChunk, at: Scheduled, seconds: float):
    """Play ``chunk``; ``shown``: (frame index or IDLE, audio position, monotonic time) per frame."""
    shown: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def on_frame(frame: np.ndarray, t: float) -> None:
        with lock:
            shown.append((int(frame[0, 0, 0]), clock.position_of(at, t), t))

    p = Presenter(clock=clock, idle_fn=lambda t: np.full((8, 8, 3), IDLE, np.uint8), fps=FPS,
                  window=False)
    p.on_frame = on_frame
    p.start()
    show = p.play(chunk, at)
    assert show.done.wait(seconds), "chunk never finished"
    time.sleep(0.1)
    p.stop()
    return p, show, shown


def test_frames_follow_the_audio_clock_and_never_run_ahead():
    clock = FakeClock()
    chunk = _chunk(40)  # 1.6 s
    at = Scheduled(start=int(0.5 * RATE), length=len(chunk.audio), rate=RATE)  # heard from 0.5 s
    p, show, shown = _run(clock, chunk, at, 5.0)
    reply = [(k, pos) for k, pos, _ in shown if k != IDLE]
    idle_before = [pos for k, pos, _ in shown if k == IDLE and pos < 0]
    assert len(idle_before) >= 8, "idle face not shown while the reply audio was not heard yet"
    ks = [k for k, _ in reply]
    assert ks == sorted(ks) and len(set(ks)) == len(ks)
    seq = [k for k, _, _ in shown]
    first, last = seq.index(ks[0]), len(seq) - 1 - seq[::-1].index(ks[-1])
    assert IDLE not in seq[first:last + 1], "idle face flashed between reply frames"
    for k, pos in reply:
        assert pos >= k / FPS - 1e-6, f"frame {k} shown {k / FPS - pos:.3f} s ahead of its audio"
    # a frame goes up while its own 40 ms slot is heard (past it, the next frame replaces
    # it), so it is < 40 ms late however loaded the machine; a presenter one slot behind
    # the clock is >= 40 ms late (the median: a single show call may itself be slow)
    assert np.median([pos - k / FPS for k, pos in reply]) < 1.0 / FPS
    assert show.shown + show.dropped == chunk.frames.shape[0]
    assert show.shown >= 30
    # the A/V offsets the presenter reports (what talk logs) are the true ones: the
    # audio position when each frame went up minus the frame's own time
    true_ms = [(pos - k / FPS) * 1000 for k, pos in reply]
    assert show.offsets_ms == pytest.approx(true_ms, abs=1e-6)
    first_k, first_pos, first_t = next(f for f in shown if f[0] != IDLE)
    assert show.first_shown_t == first_t
    assert show.start_offset_ms == pytest.approx((first_pos - first_k / FPS) * 1000, abs=1e-6)


def test_late_frames_are_dropped_not_replayed():
    clock = FakeClock(stall=(0.6, 1.0))  # the audio clock freezes 0.4 s, then jumps on
    chunk = _chunk(40)
    at = Scheduled(start=0, length=len(chunk.audio), rate=RATE)
    p, show, shown = _run(clock, chunk, at, 5.0)
    ks = [k for k, _, _ in shown if k != IDLE]
    assert show.dropped >= 6, show.dropped  # ~0.4 s * 25 fps skipped after the jump
    assert p.frames_dropped == show.dropped
    assert ks == sorted(ks)
    assert show.shown + show.dropped == 40


def test_clear_returns_to_idle_at_once():
    clock = FakeClock()
    chunk = _chunk(100)  # 4 s
    at = Scheduled(start=0, length=len(chunk.audio), rate=RATE)
    seen: list[int] = []
    p = Presenter(clock=clock, idle_fn=lambda t: np.full((8, 8, 3), IDLE, np.uint8), fps=FPS,
                  window=False)
    p.on_frame = lambda f, t: seen.append(int(f[0, 0, 0]))
    p.start()
    show = p.play(chunk, at)
    time.sleep(0.5)
    p.clear()
    n = len(seen)
    time.sleep(0.3)
    p.stop()
    assert show.done.is_set()
    assert any(k != IDLE for k in seen[:n])
    assert seen[n:] and all(k == IDLE for k in seen[n:])

"""A/V sync of the presenter window against the real speaker, over a long reply.

Chunks of 2 s are queued back to back on the real :class:`Playback` (virtual speaker)
and shown by the real :class:`Presenter` (cv2 window on Xvfb). Each chunk has a 1 kHz
burst starting exactly at frame 12. Two independent checks:

* internal: the audio clock at the moment each frame is on screen minus the frame's
  scheduled time (the figure ``talk`` logs per chunk);
* external: the times frame 12 went on screen, chunk after chunk, against the burst
  onsets in a recording of the speaker: same spacing means no drift and no jitter
  between picture and sound.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from avatar_agent.audio.playback import Playback
from avatar_agent.render.window import Presenter
from avatar_agent.types import FrameChunk

from .conftest import Recorder

pytestmark = pytest.mark.e2e

FPS = 25.0
SR = 22050
CHUNK_S = 2.0
BURST_FRAME = 12


def _chunk(i: int) -> FrameChunk:
    n = int(CHUNK_S * FPS)
    frames = np.full((n, 120, 160, 3), 40, np.uint8)
    frames[:, :, :, 1] = np.arange(n, dtype=np.uint8)[:, None, None]  # frame index in green
    frames[:, :, :, 2] = i
    audio = np.zeros(int(CHUNK_S * SR), np.float32)
    start = int(BURST_FRAME / FPS * SR)
    t = np.arange(int(0.1 * SR)) / SR
    audio[start:start + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return FrameChunk(frames=frames, fps=FPS, audio=audio, sample_rate=SR)


def _onsets(x: np.ndarray, rate: int, thr: float = 0.1) -> list[float]:
    loud = np.abs(x) > thr
    idx = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    out: list[int] = []
    for i in idx:
        if not out or i - out[-1] > 0.5 * rate:
            out.append(int(i))
    return [i / rate for i in out]


def test_window_follows_the_speaker_over_a_long_reply(avdevices, tmp_path):
    seconds = 20.0
    n_chunks = int(seconds / CHUNK_S)
    pb = Playback(block_ms=20)
    pb.start()
    idle = np.full((120, 160, 3), 200, np.uint8)
    burst_shown: dict[int, float] = {}

    def on_frame(frame: np.ndarray, t: float) -> None:
        if frame[0, 0, 1] == BURST_FRAME and frame[0, 0, 0] == 40:
            burst_shown.setdefault(int(frame[0, 0, 2]), t)

    presenter = Presenter(clock=pb, idle_fn=lambda t: idle, fps=FPS, title="avatar_av_sync")
    presenter.on_frame = on_frame
    rec = Recorder(tmp_path / "mix.wav")
    shows = []
    try:
        presenter.start()
        time.sleep(0.5)
        for i in range(n_chunks):  # queued as the orchestrator does: as soon as they exist
            chunk = _chunk(i)
            shows.append(presenter.play(chunk, pb.enqueue(chunk.audio, chunk.sample_rate)))
        assert shows[-1].done.wait(seconds + 10), "the reply never finished on screen"
        time.sleep(0.3)
    finally:
        _, spk = rec.stop()
        presenter.stop()
        pb.close()
    offsets = np.array([o for s in shows for o in s.offsets_ms])
    dropped = sum(s.dropped for s in shows)
    n_frames = sum(len(s.chunk.frames) for s in shows)
    print(f"A/V offset over {seconds:.0f} s: median {np.median(offsets):.1f} ms, "
          f"p95 {np.percentile(np.abs(offsets), 95):.1f} ms, max {np.abs(offsets).max():.1f} ms, "
          f"dropped {dropped}/{n_frames}, underflows {pb.underflows}")
    # README / benchmarks/RESULTS.md: A/V within +-20 ms (measured median 1.7-2.7 ms, p95
    # 3.1-11.7 ms, max 14.8-15.8 ms). Bounds: the median inside the stated +-20 ms, p95 at
    # 2x it, so a shared 2-core box passes and a frame late by a whole 40 ms slot fails
    assert np.median(np.abs(offsets)) < 20
    assert np.percentile(np.abs(offsets), 95) < 40
    assert dropped <= 0.05 * n_frames
    # external: frame 12 on screen vs the burst at the speaker, chunk after chunk
    onsets = _onsets(spk, rec.rate)
    assert len(onsets) == n_chunks, f"{len(onsets)} bursts recorded, {n_chunks} played"
    assert sorted(burst_shown) == list(range(n_chunks)), sorted(burst_shown)
    shown = np.array([burst_shown[i] for i in range(n_chunks)])
    drift_ms = ((shown - shown[0]) - (np.array(onsets) - onsets[0])) * 1000
    print(f"screen vs speaker spacing error: max {np.abs(drift_ms).max():.1f} ms")
    assert np.abs(drift_ms).max() < 40, drift_ms.round(1)

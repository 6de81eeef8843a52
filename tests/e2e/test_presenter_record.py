"""Recording a live session (``window.record``): the mp4 keeps picture and sound in step."""

from __future__ import annotations

import time

import numpy as np
import pytest

from avatar_agent.audio.playback import Playback
from avatar_agent.render.mp4 import probe
from avatar_agent.render.session import SessionRecorder
from avatar_agent.render.window import Presenter
from avatar_agent.types import FrameChunk

pytestmark = pytest.mark.e2e
FPS = 25.0
SR = 22050


def _chunk() -> FrameChunk:
    """2 s: dark frames with a white flash at frame 12, a 1 kHz burst at 12/25 s."""
    frames = np.full((50, 96, 128, 3), 30, np.uint8)
    frames[12] = 255
    audio = np.zeros(int(2.0 * SR), np.float32)
    t = np.arange(int(0.04 * SR)) / SR
    start = int(12 / FPS * SR)
    audio[start:start + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return FrameChunk(frames=frames, fps=FPS, audio=audio, sample_rate=SR)


def test_session_mp4_is_in_sync(avdevices, tmp_path):
    pb = Playback(block_ms=20)
    pb.start()
    # no window: Qt allows one GUI thread per process and test_av_sync owns it; the
    # recorder takes the frames the presenter shows, window or not
    presenter = Presenter(clock=pb, idle_fn=lambda t: np.full((96, 128, 3), 90, np.uint8),
                          fps=FPS, title="avatar_record", window=False)
    presenter.start()
    out = tmp_path / "session.mp4"
    rec = SessionRecorder(out, fps=FPS, playback=pb, presenter=presenter)
    try:
        time.sleep(0.7)
        shows = [presenter.play(c, pb.enqueue(c.audio, SR)) for c in (_chunk(), _chunk(), _chunk())]
        assert shows[-1].done.wait(15)
        time.sleep(0.5)
    finally:
        presenter.stop()
        rec.close()
        pb.close()
    import av  # only now: PyAV loaded before cv2's first window makes namedWindow hang

    info = probe(out)
    assert abs(info["video_s"] - info["audio_s"]) < 0.1, info
    with av.open(str(out)) as c:
        flashes = [i for i, f in enumerate(c.decode(video=0)) if f.to_ndarray(format="gray").mean() > 200]
    with av.open(str(out)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
    loud = np.abs(audio) > 0.1
    bursts = []
    for i in np.flatnonzero(loud[1:] & ~loud[:-1]) + 1:
        if not bursts or i - bursts[-1] > rate * 0.5:
            bursts.append(int(i))
    flash_starts = [f for k, f in enumerate(flashes) if k == 0 or f - flashes[k - 1] > 5]
    assert len(bursts) == 3 and len(flash_starts) == 3, (bursts, flashes)
    offsets_ms = [(f / FPS - b / rate) * 1000 for f, b in zip(flash_starts, bursts, strict=True)]
    print(f"recorded A/V offsets (frame grid 40 ms): {np.round(offsets_ms, 1)} ms")
    assert all(abs(o) <= 1500 / FPS for o in offsets_ms), offsets_ms  # within 1.5 frames

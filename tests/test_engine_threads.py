"""One avatar state, two threads (issue 18): the window thread draws idle frames while the
lip-sync worker renders. Through the locked entry points (``idle_frame``,
``render_chunk``) every frame equals what one thread alone draws for it; ``talk``'s window
used the unlocked ``idle``, which moves a video avatar's loop position mid-render."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from avatar_agent.lipsync.viseme import VisemeEngine
from tests.test_viseme import SENTENCES, SR, _cfg

LOOP = 8  # frames of the looped video avatar
STEP = 20  # grey level per loop index in the marker block


def _video(photo: np.ndarray) -> np.ndarray:
    """A video avatar: the photo LOOP times, each frame's index written in its top-left
    corner (far from the face, so it survives the warp and tells which frame was drawn)."""
    frames = np.repeat(photo[None], LOOP, axis=0)
    for k in range(LOOP):
        frames[k, :8, :8] = STEP * (k + 1)
    return frames


def _index(frame: np.ndarray) -> int:
    return int(round(float(frame[:8, :8].mean()) / STEP)) - 1


@pytest.mark.parametrize("kind", ["photo", "video"])
def test_idle_and_render_from_two_threads_match_one_thread(store, speak, hopper_bgr, kind):
    engine = VisemeEngine(cfg=_cfg(blink=True), store=store)
    media = hopper_bgr if kind == "photo" else _video(hopper_bgr)
    speech = np.concatenate([speak(text) for text in (*SENTENCES, "Then the window goes on blinking.")])
    chunks = np.array_split(speech, len(speech) // (SR // 2))  # half-second chunks, as TTS streams
    state = engine.prepare(media)
    stop = threading.Event()
    idles: list[tuple[float, np.ndarray]] = []

    def window() -> None:  # the window thread's loop, as fast as it can go
        t = 0.0
        while not stop.is_set():
            t += 0.013
            idles.append((t, engine.idle_frame(state, t)))

    thread = threading.Thread(target=window, daemon=True)
    thread.start()
    try:
        renders = []
        for pcm in chunks:
            renders.append(engine.render_chunk(state, pcm, SR).frames)
            time.sleep(0.01)  # the worker's gap between chunks: the window gets the lock

    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(idles) > 20, len(idles)  # the two really ran at the same time

    # one thread, a fresh state, the same chunks: each render starts from the loop frame
    # the two-thread render started from (idle frames in between move the loop on)
    ref = engine.prepare(media)
    for frames, pcm in zip(renders, chunks, strict=True):
        if kind == "video":
            start = _index(frames[0])
            assert [_index(f) for f in frames] == [(start + i) % LOOP for i in range(len(frames))]
            ref.video_pos = start - 1
        assert np.array_equal(engine.render(ref, pcm, SR), frames)
    # idle frames: the same face as one thread draws at that time from that loop frame
    lone = engine.prepare(media)
    for t, frame in idles[::7]:
        if kind == "video":
            lone.idle_offset = _index(frame) - int(round(t * engine.fps))
        assert np.array_equal(engine.idle(lone, t), frame), t

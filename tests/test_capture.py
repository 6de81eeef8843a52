"""Capture callback path without a device: block hand-off, resampling, overflow counting.

The callback is called by hand on another thread, as PortAudio would; ``FakeStatus``
stands in for PortAudio's ``CallbackFlags``.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from avatar_agent.audio.capture import MicCapture


class FakeStatus:
    def __init__(self, overflow: bool = False) -> None:
        self.input_overflow = overflow


async def _collect(mic: MicCapture, n: int) -> list:
    out = []
    while len(out) < n:
        out.append(await asyncio.wait_for(mic._queue.get(), 2.0))
    return out


async def test_device_rate_is_resampled_to_16k(speak):
    mic = MicCapture(sample_rate=16000, block_ms=20)
    mic._loop = asyncio.get_running_loop()
    mic.device_rate = 48000
    pcm48 = speak("Can you hear me?", sr=48000)
    block = 960
    n = len(pcm48) // block

    def feed() -> None:
        for i in range(n):
            mic._callback(pcm48[i * block:(i + 1) * block, None], block, None, FakeStatus(i == 3))

    thread = threading.Thread(target=feed)
    thread.start()
    blocks = await _collect(mic, n)
    thread.join()
    assert all(len(b.pcm) == 320 and b.sample_rate == 16000 for b in blocks)
    assert all(b2.t >= b1.t for b1, b2 in zip(blocks, blocks[1:], strict=False))
    got = np.concatenate([b.pcm for b in blocks])
    ref = speak("Can you hear me?", sr=16000)[:len(got)]
    corr = float(np.corrcoef(got[400:], ref[400:len(got)])[0, 1])
    assert corr > 0.97, corr
    assert mic.overflows == 1


async def test_slow_loop_drops_oldest_and_counts():
    mic = MicCapture(sample_rate=16000, block_ms=20, queue_blocks=5)
    mic._loop = asyncio.get_running_loop()
    for i in range(8):
        mic._callback(np.full((320, 1), i, np.float32), 320, None, FakeStatus())
    await asyncio.sleep(0.05)
    blocks = await _collect(mic, 5)
    assert mic.dropped_blocks == 3
    assert [int(b.pcm[0]) for b in blocks] == [3, 4, 5, 6, 7]  # the newest audio kept

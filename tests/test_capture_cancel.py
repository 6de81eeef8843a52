"""Quitting ``talk`` cancels the mic listener; a block arriving at that very moment must
not swallow the cancellation (it did with ``asyncio.wait_for`` on Python 3.11, and Ctrl-C
then hung ``talk`` about one time in ten)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_agent.audio.capture import MicCapture


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_cancel_wins_over_a_block_arriving_in_the_same_step(steps):
    mic = MicCapture(sample_rate=16000, block_ms=10)
    got = []

    async def listen() -> None:
        async for block in mic.blocks():
            got.append(block)

    for _ in range(20):
        task = asyncio.create_task(listen())
        await asyncio.sleep(0)  # the listener now waits for the next block
        mic._deliver(np.zeros(160, np.float32), 0.0)  # the device callback hands one over
        for _ in range(steps):  # ... and the loop runs a little before the quit lands
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        assert task in done, "the listener ignored its cancellation"
        assert task.cancelled()

"""Microphone capture: a sounddevice InputStream handing fixed blocks to the event loop.

The PortAudio callback only copies the block and hands it to the loop with
``call_soon_threadsafe`` (no allocation-heavy work, no locks the loop holds). Blocks are
fixed size (``blocksize=`` is always passed: with 0, PortAudio's ALSA-pulse path delivers
irregular sizes; tests/harness/README.md, pitfall 7). A full queue drops the oldest block and counts it;
PortAudio ``input overflow`` flags are counted too; neither ever raises.

When the device cannot run at the pipeline rate (16 kHz), the stream opens at the
device's own rate and each block is resampled (with a little left context so block
edges do not click).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from ..errors import DeviceError
from ..types import AudioBlock
from .devices import _sd, close_stream, find_device
from .io import resample

log = logging.getLogger(__name__)

_CONTEXT = 48  # input samples of left context kept for per-block resampling


class MicCapture:
    """A running input stream; iterate :meth:`blocks` on the loop for :class:`AudioBlock` s.

    ``sample_rate``: rate of the delivered blocks (16 kHz); ``block_ms``: block length;
    ``device``: config spec (index, name substring, ``None`` = default);
    ``stall_s``: no callback for this long while running = device lost.
    """

    def __init__(self, *, device: str | int | None = None, sample_rate: int = 16000,
                 block_ms: int = 20, latency: str = "low", queue_blocks: int = 250,
                 stall_s: float = 2.0) -> None:
        self.device_spec = device
        self.sample_rate = sample_rate
        self.block_ms = block_ms
        self.latency = latency
        self.stall_s = stall_s
        self.overflows = 0        # PortAudio input-overflow flags seen
        self.dropped_blocks = 0   # blocks dropped because the loop fell behind
        self.device_rate = sample_rate
        self._queue: asyncio.Queue[AudioBlock] = asyncio.Queue(queue_blocks)
        self._stream = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_cb = 0.0
        self._tail = np.zeros(0, np.float32)
        self._failed: str | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Open and start the stream (call on the loop thread). Raises :class:`DeviceError`."""
        sd = _sd()
        self._loop = asyncio.get_running_loop()
        dev = find_device(self.device_spec, "input")
        self.device_rate = self.sample_rate
        try:
            sd.check_input_settings(device=dev["index"], channels=1, dtype="float32",
                                    samplerate=self.sample_rate)
        except Exception:  # the device only runs at its own rate: resample per block
            self.device_rate = int(dev["default_samplerate"])
        blocksize = self.device_rate * self.block_ms // 1000
        try:
            self._stream = sd.InputStream(device=dev["index"], channels=1, dtype="float32",
                                          samplerate=self.device_rate, blocksize=blocksize,
                                          latency=self.latency, callback=self._callback)
            self._stream.start()
        except Exception as exc:
            self._stream = None
            raise DeviceError(f"cannot open audio input '{dev['name']}': {exc}",
                              hint="check audio.input_device (avatar-agent devices)") from None
        self._last_cb = time.monotonic()
        self._failed = None
        log.info("mic open", extra={"device": dev["name"], "rate": self.device_rate,
                                    "latency_s": round(self.input_latency, 4)})

    @property
    def input_latency(self) -> float:
        """PortAudio's reported input latency in seconds (0 when closed)."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    def close(self) -> None:
        """Stop and close the stream; safe to call twice."""
        stream, self._stream = self._stream, None
        close_stream(stream, "mic")

    # ---------------------------------------------------------------- callback thread
    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        now = time.monotonic()
        self._last_cb = now
        if status.input_overflow:
            self.overflows += 1
        # capture time of the block's first sample: now minus the block's length
        block = indata[:, 0].copy()
        t = now - frames / self.device_rate
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, block, t)

    # ---------------------------------------------------------------- loop thread
    def _deliver(self, block: np.ndarray, t: float) -> None:
        if self.device_rate != self.sample_rate:
            block = self._resample(block)
        item = AudioBlock(pcm=block, sample_rate=self.sample_rate, t=t)
        if self._queue.full():  # the loop fell behind: keep the newest audio
            self._queue.get_nowait()
            self.dropped_blocks += 1
        self._queue.put_nowait(item)

    def _resample(self, block: np.ndarray) -> np.ndarray:
        ctx = self._tail
        out = resample(np.concatenate([ctx, block]), self.device_rate, self.sample_rate)
        self._tail = block[-_CONTEXT:]
        n_out = round(len(block) * self.sample_rate / self.device_rate)
        return out[-n_out:]

    def drain(self) -> int:
        """Drop queued blocks (stale audio) and reset the drop counter; returns how many."""
        n = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            n += 1
        self.dropped_blocks = 0
        return n

    async def blocks(self) -> AsyncIterator[AudioBlock]:
        """Captured blocks in order. Raises :class:`DeviceError` if the device stops."""
        while True:
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a
            # cancellation that arrives in the same loop step as its result (a block comes
            # every 10-20 ms), so cancelling the listener at quit was lost about 1 time in
            # 10 and Ctrl-C hung `talk` (py-spy: loop idle, listener still consuming blocks)
            try:
                async with asyncio.timeout(self.stall_s):
                    block = await self._queue.get()
            except TimeoutError:
                pass
            else:
                yield block
                continue
            if self._stream is None:
                return
            if not self._stream.active or time.monotonic() - self._last_cb > self.stall_s:
                raise DeviceError("the audio input stopped delivering sound (device lost?)",
                                  hint="reconnect the microphone or check audio.input_device")

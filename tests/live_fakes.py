"""Fake devices for the live conversation: a real-time mic and a PortAudio-like speaker.

Named fakes (no sound card is needed): ``FakeMic`` (interface-true :class:`MicCapture`:
``blocks``/``drain``/``close``/``start``) produces 20 ms blocks of faint room noise in real
time and speaks real speech when told; it can lose the device once. ``FakeOutputStream``
drives the real :class:`Playback` callback every 20 ms from a thread, like PortAudio, and
keeps what was "played"; ``abort`` is a lost speaker. Everything else is real.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from avatar_agent.audio.playback import Playback
from avatar_agent.config import Config
from avatar_agent.errors import DeviceError
from avatar_agent.live import Conversation
from avatar_agent.models import ModelStore
from avatar_agent.pipeline import Pipeline
from avatar_agent.render.window import Presenter
from avatar_agent.types import AudioBlock

SR = 16000
BLOCK = 320


class FakeMic:
    """Real-time 16 kHz blocks: room noise, plus speech queued with :meth:`say`."""

    sample_rate = SR

    def __init__(self) -> None:
        self._speech = np.zeros(0, np.float32)
        self._rng = np.random.default_rng(0)
        self.overflows = self.dropped_blocks = 0
        self.echo: FakeOutputStream | None = None  # the room: the speaker leaks into the mic
        self.echo_gain = 0.0
        self.starts = 0
        self._lost = False

    def say(self, pcm: np.ndarray) -> float:
        """Start speaking ``pcm`` now; returns its duration in seconds."""
        self._speech = np.concatenate([self._speech, pcm.astype(np.float32)])
        return len(pcm) / SR

    def drain(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def start(self) -> None:
        self.starts += 1

    def lose(self) -> None:
        """The device goes away: the current :meth:`blocks` raises DeviceError (once)."""
        self._lost = True

    async def blocks(self):
        t_next = time.monotonic()
        while True:
            if self._lost:
                self._lost = False
                raise DeviceError("microphone lost (fake)")
            block = (self._rng.standard_normal(BLOCK) * 0.001).astype(np.float32)
            n = min(BLOCK, len(self._speech))
            block[:n] += self._speech[:n]
            self._speech = self._speech[n:]
            if self.echo is not None and self.echo.played:
                block += self.echo.played[-1][1] * self.echo_gain
            yield AudioBlock(pcm=block, sample_rate=SR, t=t_next)
            t_next += BLOCK / SR
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))


class FakeOutputStream:
    """Calls ``Playback._callback`` every 20 ms on a thread; keeps every handed block."""

    latency = 0.02

    def __init__(self, pb: Playback) -> None:
        self.pb, self.active = pb, True
        self.played: list[tuple[float, np.ndarray]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        class Status:
            output_underflow = False

        t_next = time.monotonic()
        while self.active:
            out = np.zeros((BLOCK, 1), np.float32)
            self.pb._callback(out, BLOCK, None, Status())
            self.played.append((time.monotonic(), out[:, 0].copy()))
            t_next += BLOCK / SR
            time.sleep(max(0.0, t_next - time.monotonic()))

    def abort(self) -> None:
        self.active = False

    close = abort

    def loud_times(self, thr: float = 0.01) -> list[float]:
        return [t for t, b in self.played if np.abs(b).max() > thr]



async def session(cfg: Config, store: ModelStore, face: np.ndarray, pipeline: Pipeline | None = None,
                  warm: bool = False):
    """A running :class:`Conversation` on a :class:`FakeMic` and a :class:`FakeOutputStream`;
    returns (conv, mic, stream, task, presenter). ``warm``: run the pipeline's warm-up
    (as ``talk`` does: the apologies are prepared there)."""
    pipeline = pipeline or Pipeline.from_config(cfg, store)
    await asyncio.to_thread(pipeline.load)
    state = await pipeline.prepare_avatar(face)
    if warm:
        await pipeline.warm_up(state)
    pb = Playback(sample_rate=SR, block_ms=20)
    stream = attach_speaker(pb)
    presenter = Presenter(clock=pb, idle_fn=lambda t: pipeline.engine.idle_frame(state, t),
                          fps=pipeline.engine.fps, window=False)
    presenter.start()
    mic = FakeMic()
    conv = Conversation(cfg=cfg, pipeline=pipeline, mic=mic, playback=pb, presenter=presenter,
                        avatar_state=state)
    task = asyncio.create_task(conv.run())
    return conv, mic, stream, task, presenter


async def _until(pred, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def attach_speaker(pb: Playback) -> FakeOutputStream:
    """Open ``pb`` on a new :class:`FakeOutputStream` (what ``Playback.start`` does on a device)."""
    stream = FakeOutputStream(pb)
    pb._stream, pb._latency = stream, stream.latency
    return stream


async def until(pred, limit_s: float, what: str) -> None:
    """Wait for ``pred()`` (polled every 20 ms); fails naming ``what`` after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)

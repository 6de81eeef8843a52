"""The WebRTC side of the transport interface (:mod:`avatar_agent.transport`).

* :class:`RtcMic` reads the browser's microphone track (Opus decoded by aiortc, 48 kHz),
  resamples it to the pipeline rate and cuts it into fixed blocks with receive times:
  a :class:`~avatar_agent.audio.capture.MicCapture` fed by the network.
* :class:`RtcSpeaker` is :class:`~avatar_agent.audio.playback.Playback` whose "device"
  is the outgoing audio track: each 20 ms frame the track sends is pulled through the
  same queue/duck/flush code (``Playback._callback``), so the count of samples sent is
  the session's master clock, exactly as the sound card's count is in ``talk``.
* :class:`RtcVideoTrack` sends what the stock :class:`~avatar_agent.render.window.Presenter`
  (``window=False``) puts "on screen": reply frame k when the audio track has sent k/fps
  seconds of its chunk, idle frames while listening. A frame's timestamp is the time it
  was shown, on the same clock as the audio sent, so the RTCP sender reports map both
  tracks onto one timeline and the browser plays them in sync.

aiortc and PyAV are imported here only (extra ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import AsyncIterator

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..audio.playback import Playback
from ..types import AudioBlock

log = logging.getLogger(__name__)

_MAX_BEHIND_S = 0.25  # the audio track may lag real time this much before it drops audio
_VIDEO_CLOCK = 90000
_VIDEO_TB = fractions.Fraction(1, _VIDEO_CLOCK)


class _NoStatus:
    output_underflow = False


# -------------------------------------------------------------------- mic (browser -> us)
class RtcMic:
    """The browser's microphone as a MicCapture: fixed blocks at ``sample_rate``.

    :meth:`attach` starts reading a remote audio track; :meth:`blocks` ends when the
    track ends or :meth:`close` is called. ``received_s`` counts audio that arrived.
    """

    def __init__(self, *, sample_rate: int = 16000, block_ms: int = 20,
                 queue_blocks: int = 250) -> None:
        self.sample_rate = sample_rate
        self.block_ms = block_ms
        self.block = sample_rate * block_ms // 1000
        self.dropped_blocks = 0
        self.received_s = 0.0
        self.first_audio_t: float | None = None  # monotonic time of the first frame received
        self.last_audio_t: float | None = None   # ... and of the latest
        self._queue: asyncio.Queue[AudioBlock | None] = asyncio.Queue(queue_blocks)
        self._buf = np.zeros(0, np.float32)
        self._reader: asyncio.Task | None = None
        self._closed = False

    def attach(self, track: MediaStreamTrack) -> None:
        """Start reading ``track`` (an aiortc remote audio track) on the running loop."""
        self._reader = asyncio.create_task(self._read(track), name="rtc-mic")

    def start(self) -> None:
        """Nothing to open: the track arrives with the peer connection."""

    def close(self) -> None:
        """Stop reading; :meth:`blocks` ends. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
        self._put(None)

    def drain(self) -> int:
        """Drop queued blocks; returns how many."""
        n = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is None:  # keep the end marker
                self._queue.put_nowait(None)
                break
            n += 1
        self.dropped_blocks = 0
        return n

    def _put(self, item: AudioBlock | None) -> None:
        if self._queue.full():  # the loop fell behind: keep the newest audio
            self._queue.get_nowait()
            self.dropped_blocks += 1
        self._queue.put_nowait(item)

    async def _read(self, track: MediaStreamTrack) -> None:
        # channels kept and averaged here: swresample's stereo->mono downmix adds 3 dB
        # to the identical channels aiortc's Opus decoder hands out
        resampler = av.AudioResampler(format="fltp", rate=self.sample_rate)
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    break
                now = time.monotonic()
                if self.first_audio_t is None:
                    self.first_audio_t = now
                self.last_audio_t = now
                self.received_s += frame.samples / float(frame.sample_rate or 48000)
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().mean(axis=0, dtype=np.float32)
                    self._buf = np.concatenate([self._buf, pcm])
                # the last sample arrived now: block k starts this long before
                n_blocks = len(self._buf) // self.block
                for k in range(n_blocks):
                    pcm = self._buf[k * self.block:(k + 1) * self.block].copy()
                    behind = (len(self._buf) - k * self.block) / self.sample_rate
                    self._put(AudioBlock(pcm=pcm, sample_rate=self.sample_rate, t=now - behind))
                self._buf = self._buf[n_blocks * self.block:]
        finally:
            if not self._closed:
                self._closed = True
                self._put(None)

    async def blocks(self) -> AsyncIterator[AudioBlock]:
        """Received blocks in order; ends when the track ends or on :meth:`close`."""
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # every later reader ends too
                return
            yield item


# -------------------------------------------------------------------- audio (us -> browser)
class RtcSpeaker(Playback):
    """:class:`Playback` whose device is an outgoing WebRTC audio track (:attr:`track`).

    The track asks for a 20 ms frame every 20 ms (real time); each one is taken from
    the queue by the same code that feeds the sound card, and the samples sent are the
    timeline. ``latency`` (s) is what the browser adds before the ear (jitter buffer,
    output device), for the heard position; the video goes through the same delay.
    """

    def __init__(self, *, sample_rate: int = 48000, block_ms: int = 20,
                 latency: float = 0.0) -> None:
        super().__init__(sample_rate=sample_rate, block_ms=block_ms)
        self._latency = latency
        self._running = False
        self.frames_sent = 0
        self.skipped_s = 0.0  # audio dropped because the sender fell behind real time
        self.track = _SpeakerTrack(self)

    def start(self) -> None:
        """Begin handing out audio (the track paces itself once the peer pulls it)."""
        self._running = True

    def close(self) -> None:
        """Stop: the track ends; safe to call twice."""
        self._running = False
        self.track.stop()

    @property
    def active(self) -> bool:
        """True while the track sends (``talk`` would call the device lost otherwise)."""
        return self._running

    def _next_block(self) -> np.ndarray:
        frames = self.sample_rate * self.block_ms // 1000
        out = np.zeros((frames, 1), np.float32)
        self._callback(out, frames, None, _NoStatus)
        self.frames_sent += 1
        return out[:, 0]

    def _skip(self, samples: int) -> None:
        """Consume ``samples`` of the timeline without sending them (too late)."""
        if samples > 0:
            self._callback(np.zeros((samples, 1), np.float32), samples, None, _NoStatus)
            self.skipped_s += samples / self.sample_rate


class _SpeakerTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, speaker: RtcSpeaker) -> None:
        super().__init__()
        self._speaker = speaker
        self._start: float | None = None
        self._sent = 0
        self._block = np.zeros(speaker.sample_rate * speaker.block_ms // 1000, np.float32)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        sp = self._speaker
        rate = sp.sample_rate
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._sent / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -_MAX_BEHIND_S:
                # behind real time (a starved machine): like a sound card, drop the audio
                # that is too late instead of falling behind, so the clock and the
                # conversation keep wall-clock pace; the browser conceals the gap
                skip = int(-wait * rate) // len(self._block) * len(self._block)
                sp._skip(skip)
                self._sent += skip
        pcm = sp._next_block()
        s16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(s16, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, rate)
        self._sent += len(pcm)
        return frame


# -------------------------------------------------------------------- video (us -> browser)
class RtcVideoTrack(MediaStreamTrack):
    """Outgoing video: each frame the Presenter shows, stamped with the time it was shown.

    Hook it up with ``presenter.on_frame = track.push`` (called on the presenter thread).
    Only the newest frame waits: a slow encoder drops frames, it never delays them.
    """

    kind = "video"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._pending: tuple[np.ndarray, float] | None = None
        self._ready = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_sent = 0
        self.frames_skipped = 0

    def push(self, frame: np.ndarray, shown_t: float) -> None:
        """A frame went on "screen" at monotonic ``shown_t`` (any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
            self._loop.call_soon_threadsafe(self._set, frame, shown_t)

    def _set(self, frame: np.ndarray, shown_t: float) -> None:
        if self._pending is not None:
            self.frames_skipped += 1
        self._pending = (frame, shown_t)
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._pending is not None:
                break
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._ready.wait()
        image, shown_t = self._pending
        self._pending = None
        if self._t0 is None:
            self._t0 = shown_t
        pts = max(int(round((shown_t - self._t0) * _VIDEO_CLOCK)), self._last_pts + 1)
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = _VIDEO_TB
        self.frames_sent += 1
        return frame

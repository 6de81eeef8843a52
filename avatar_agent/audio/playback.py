"""Speaker playback and the master clock of the live session.

:class:`Playback` runs one sounddevice OutputStream for the whole session. The callback
hands out queued speech (silence when there is none) and counts every sample it hands to
the device; the sample timeline never stops, so a chunk's start is a fixed position on
it. The clock (design: ``now_audio = played / sr - output_latency``) is refined between
callbacks with the monotonic time of the last callback, so it advances smoothly instead
of in 20 ms steps.

:meth:`Playback.flush` drops everything not yet handed to the device (the next callback
is silence, so playback stops within one block plus the device latency) and reports how
far the listener actually got, for cutting the history to what was heard.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DeviceError
from .devices import _sd, close_stream, find_device
from .io import resample, rms_db

log = logging.getLogger(__name__)

_FADE_S = 0.004  # ramp after a flush: a hard cut clicks


@dataclass(frozen=True)
class Scheduled:
    """Where a queued piece of audio sits on the playback timeline (samples at ``rate``)."""

    start: int
    length: int
    rate: int

    @property
    def end(self) -> int:
        """First sample after the piece."""
        return self.start + self.length


class Playback:
    """One OutputStream fed from a queue; counts samples handed to the device.

    ``sample_rate``: stream rate (``None`` = the device's default rate); audio of any
    rate given to :meth:`enqueue` is resampled to it. ``tap`` (optional callable) gets a
    copy of every handed block (session recording), called on the audio thread.
    """

    def __init__(self, *, device: str | int | None = None, sample_rate: int | None = None,
                 block_ms: int = 20, latency: str = "low") -> None:
        self.device_spec = device
        self.sample_rate = sample_rate or 0
        self.block_ms = block_ms
        self.latency_hint = latency
        self.underflows = 0
        self.tap = None
        self._lock = threading.Lock()
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._pos = 0          # samples handed to the device so far (the timeline)
        self._tail = 0         # timeline position where the queued audio ends
        self._cb_pos = 0       # timeline position at the start of the last callback's block
        self._cb_time = 0.0    # monotonic time of the last callback
        self._latency = 0.0
        self._stream = None
        self._levels: collections.deque[tuple[int, float]] = collections.deque(maxlen=200)
        self._duck_pos: int | None = None  # heard position when ducking began

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Open and start the stream. Raises :class:`DeviceError`."""
        sd = _sd()
        dev = find_device(self.device_spec, "output")
        if not self.sample_rate:
            self.sample_rate = int(dev["default_samplerate"])
        blocksize = self.sample_rate * self.block_ms // 1000
        try:
            self._stream = sd.OutputStream(device=dev["index"], channels=1, dtype="float32",
                                           samplerate=self.sample_rate, blocksize=blocksize,
                                           latency=self.latency_hint, callback=self._callback)
            self._latency = float(self._stream.latency)
            self._stream.start()
        except Exception as exc:
            self._stream = None
            raise DeviceError(f"cannot open audio output '{dev['name']}': {exc}",
                              hint="check audio.output_device (avatar-agent devices)") from None
        log.info("speaker open", extra={"device": dev["name"], "rate": self.sample_rate,
                                        "latency_s": round(self._latency, 4)})

    def close(self) -> None:
        """Stop and close the stream; safe to call twice."""
        stream, self._stream = self._stream, None
        close_stream(stream, "speaker")

    @property
    def active(self) -> bool:
        """True while the stream runs."""
        return self._stream is not None and bool(self._stream.active)

    @property
    def output_latency(self) -> float:
        """Seconds from handing a sample to the device until it is heard."""
        return self._latency

    # ---------------------------------------------------------------- audio thread
    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        if status.output_underflow:
            self.underflows += 1
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            while filled < frames and self._queue:
                head = self._queue[0]
                take = min(frames - filled, len(head))
                out[filled:filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
            out[filled:] = 0.0
            if self._duck_pos is not None:  # possible barge-in: silent, the clock runs on
                out[:filled] = 0.0
                filled = 0
            self._levels.append((self._pos, rms_db(out[:filled]) if filled else -120.0))
            self._cb_pos = self._pos
            self._cb_time = time.monotonic()
            self._pos += frames
        tap = self.tap
        if tap is not None:
            tap(out.copy())

    # ---------------------------------------------------------------- any thread
    def enqueue(self, pcm: np.ndarray, sample_rate: int) -> Scheduled:
        """Queue (N,) float32 mono ``pcm`` after what is already queued.

        Returns where it will play on the timeline (at the stream rate).
        """
        if not self.sample_rate:
            raise DeviceError("audio output is not open")
        pcm = resample(np.asarray(pcm, np.float32), sample_rate, self.sample_rate)
        with self._lock:
            # what the next callback hands out is ``_pos``: nothing can start earlier
            start = max(self._pos, self._tail)
            self._queue.append(pcm)
            self._tail = start + len(pcm)
        return Scheduled(start=start, length=len(pcm), rate=self.sample_rate)

    def duck(self, on: bool) -> None:
        """Silence the output at once (``on``) without dropping the queue, or undo it.

        Used on a possible barge-in, before the VAD has confirmed speech: the queue is
        still consumed, so the clock and the picture run on; undoing resumes the reply.
        """
        if on and self._duck_pos is None:
            self._duck_pos = self.heard_position()
        elif not on:
            self._duck_pos = None

    @property
    def ducked(self) -> bool:
        """True while :meth:`duck` silences the output."""
        return self._duck_pos is not None

    def flush(self) -> int:
        """Drop all queued audio not yet handed to the device; returns the heard position.

        The next callback (within one block) hands out a 4 ms fade, then silence. When
        ducked, the heard position is where ducking began, and ducking ends.
        """
        with self._lock:
            ducked_at = self._duck_pos
            fade = int(self.sample_rate * _FADE_S) if ducked_at is None else 0
            head = self._queue[0][:fade].copy() if self._queue else np.zeros(0, np.float32)
            self._queue.clear()
            self._duck_pos = None
            if len(head):
                head *= np.linspace(1.0, 0.0, len(head), dtype=np.float32)
                self._queue.append(head)
            self._tail = self._pos + len(head)
        heard = self.heard_position()
        return heard if ducked_at is None else min(heard, ducked_at)

    def queued_s(self) -> float:
        """Seconds of audio queued and not yet handed to the device."""
        with self._lock:
            return max(0, self._tail - self._pos) / float(self.sample_rate or 1)

    def heard_position(self, now: float | None = None) -> int:
        """Timeline sample being heard at monotonic time ``now`` (default: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            cb_pos, cb_time, pos = self._cb_pos, self._cb_time, self._pos
        if cb_time == 0.0:
            return 0
        # the first sample of the last block reaches the ear ``latency`` after the callback;
        # never past what was handed (a stalled device stays put)
        heard = cb_pos + (now - cb_time - self._latency) * self.sample_rate
        return int(min(max(heard, 0.0), pos))

    def level_db(self, t0: float, t1: float) -> float:
        """Loudest block level (dBFS) of what was heard between monotonic ``t0`` and ``t1``.

        The echo gate compares the mic with it: the speaker's own voice reaches the mic
        at about this level minus the room's echo loss.
        """
        p0, p1 = self.heard_position(t0), self.heard_position(t1)
        block = self.sample_rate * self.block_ms // 1000
        with self._lock:
            levels = [db for pos, db in self._levels if pos + block > p0 and pos <= p1]
        return max(levels, default=-120.0)

    def clock(self, now: float | None = None) -> float:
        """The audio clock in seconds: timeline position heard at ``now``."""
        return self.heard_position(now) / float(self.sample_rate or 1)

    def position_of(self, piece: Scheduled, now: float | None = None) -> float:
        """Seconds into ``piece`` being heard now (negative before it starts)."""
        return (self.heard_position(now) - piece.start) / float(piece.rate)

    def heard_samples(self, piece: Scheduled, heard_pos: int | None = None) -> int:
        """How many samples of ``piece`` were heard (0..length) up to ``heard_pos``."""
        pos = self.heard_position() if heard_pos is None else heard_pos
        return int(min(max(pos - piece.start, 0), piece.length))

    def done_playing(self) -> bool:
        """True when everything queued has been heard."""
        with self._lock:
            tail = self._tail
        return self.heard_position() >= tail

"""The transport interface: what the live conversation needs from its mic, speaker and screen.

:class:`avatar_agent.live.Conversation` runs the turn logic (VAD, turns, barge-in, echo,
history) and never asks where audio comes from or where the avatar goes. It talks to
three objects:

* a :class:`MicSource` — 16 kHz :class:`AudioBlock` s of fixed length with capture times;
* a :class:`SpeakerClock` — a queue of reply audio whose sample counter is the master
  clock (what was handed out so far, i.e. heard or sent);
* a :class:`Screen` — shows each reply chunk's frames in step with that clock, the idle
  face otherwise, and the status.

Local devices satisfy them (``talk``: :class:`~avatar_agent.audio.capture.MicCapture`,
:class:`~avatar_agent.audio.playback.Playback`, :class:`~avatar_agent.render.window.Presenter`),
and so do the WebRTC tracks of ``serve`` (:mod:`avatar_agent.web.rtc`: the browser's
microphone track, the outgoing audio track's sample counter, the outgoing video track).
A further transport (a LiveKit room, a SIP call) is three such classes; see
``docs/scaling.md``. ``tests/test_transport.py`` checks the classes against these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import AudioBlock, FrameChunk


@runtime_checkable
class Scheduled(Protocol):
    """Where a queued piece of audio sits on the speaker timeline (samples at ``rate``)."""

    start: int
    length: int
    rate: int

    @property
    def end(self) -> int: ...


@runtime_checkable
class MicSource(Protocol):
    """Fixed-size mono blocks at ``sample_rate`` with monotonic capture times."""

    sample_rate: int

    def start(self) -> None:
        """(Re)open the source; raises DeviceError when it cannot."""

    def close(self) -> None:
        """Stop delivering; :meth:`blocks` then ends. Safe to call twice."""

    def drain(self) -> int:
        """Drop queued (stale) blocks; returns how many."""

    def blocks(self) -> AsyncIterator[AudioBlock]:
        """Blocks in order; ends when the source closes, DeviceError when it is lost."""


@runtime_checkable
class SpeakerClock(Protocol):
    """Reply audio out; its count of samples handed out is the session's master clock."""

    sample_rate: int

    def start(self) -> None:
        """(Re)open the output (the timeline continues); raises DeviceError when it cannot."""

    def close(self) -> None:
        """Stop handing out audio. Safe to call twice."""

    @property
    def active(self) -> bool:
        """True while audio is being handed out."""

    @property
    def ducked(self) -> bool:
        """True while :meth:`duck` silences the output."""

    def enqueue(self, pcm: np.ndarray, sample_rate: int) -> Any:
        """Queue mono float32 ``pcm`` after what is queued; returns its :class:`Scheduled`."""

    def duck(self, on: bool) -> None:
        """Silence at once without dropping the queue (possible barge-in), or undo."""

    def flush(self) -> int:
        """Drop everything not handed out yet; returns the heard position."""

    def queued_s(self) -> float:
        """Seconds queued and not handed out yet."""

    def heard_position(self, now: float | None = None) -> int:
        """Timeline sample being heard at monotonic ``now``."""

    def position_of(self, piece: Any, now: float | None = None) -> float:
        """Seconds into ``piece`` being heard now (negative before it starts)."""

    def level_db(self, t0: float, t1: float) -> float:
        """Loudest level (dBFS) of what was heard between monotonic ``t0`` and ``t1``."""


@runtime_checkable
class Screen(Protocol):
    """Shows the avatar: reply frames paced by the speaker clock, idle frames otherwise."""

    def set_state(self, state: str) -> None:
        """``listening``, ``thinking`` or ``speaking``."""

    def play(self, chunk: FrameChunk, at: Any) -> Any:
        """Show ``chunk`` in step with its audio at ``at``; returns its ChunkShow."""

    def clear(self) -> None:
        """Forget every registered chunk (barge-in): back to the idle face."""


__all__ = ["MicSource", "Scheduled", "Screen", "SpeakerClock"]

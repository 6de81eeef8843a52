"""Lip-sync engines: a portrait and speech audio in, BGR frames at ``fps`` out.

``prepare(image)`` runs once per avatar (face detection, landmarks, caches) and returns
an engine state. ``render(state, pcm, sr)`` turns one speech chunk into frames; the
state carries the mouth and the audio/frame counters across chunks, so consecutive
sentences join without a seam and the total frame count stays
``round(total_samples * fps / sr)`` (no drift). ``idle(state, t)`` is the face while
listening at time ``t`` seconds (blinks, optional head motion, mouth closed).

Threads: renders run on the pipeline's lip-sync worker, idle frames on the window (or
WebRTC) thread, resets on the event loop after a cancelled turn whose render may still be
running. Callers therefore use the locked entry points :meth:`render_chunk`,
:meth:`idle_frame` and :meth:`restart`: one lock per avatar state, so a state is never
touched by two threads at once (sessions with their own states do not wait on each other).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..types import FrameChunk, PhonemeTiming

_LOCKS_GUARD = threading.Lock()


def state_lock(state: Any) -> threading.RLock:
    """The lock that serialises every use of one engine state (made on first use)."""
    lock = getattr(state, "_avatar_lock", None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(state, "_avatar_lock", None)
            if lock is None:
                lock = threading.RLock()
                state._avatar_lock = lock
    return lock


class LipSyncEngine(ABC):
    """Base of every lip-sync engine."""

    name = "lipsync"
    fps: float = 25.0
    reads_ahead = False  # render() takes ``ahead`` (see render_chunk)

    @abstractmethod
    def prepare(self, image_bgr: np.ndarray) -> Any:
        """Analyse the avatar (H, W, 3) uint8 BGR once; returns the engine state."""

    @abstractmethod
    def render(self, state: Any, pcm: np.ndarray, sample_rate: int,
               phonemes: tuple[PhonemeTiming, ...] | None = None) -> np.ndarray:
        """(N,) float32 speech -> (F, H, W, 3) uint8 BGR frames at ``fps``."""

    @abstractmethod
    def idle(self, state: Any, t: float) -> np.ndarray:
        """The idle face at time ``t`` (s): (H, W, 3) uint8 BGR."""

    def reset(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Forget the mouth state / counters (a turn was interrupted)."""

    def render_chunk(self, state: Any, pcm: np.ndarray, sample_rate: int, text: str = "",
                     phonemes: tuple[PhonemeTiming, ...] | None = None,
                     ahead: tuple[np.ndarray, tuple[PhonemeTiming, ...] | None] | None = None) -> FrameChunk:
        """:meth:`render` wrapped as a :class:`FrameChunk` carrying its audio (state locked).

        ``ahead``: the next chunk's audio and timings, already known; an engine that
        ``reads_ahead`` uses it to draw this chunk's last frames as the whole would."""
        with state_lock(state):
            if ahead is not None and self.reads_ahead:
                frames = self.render(state, pcm, sample_rate, phonemes, ahead=ahead)
            else:
                frames = self.render(state, pcm, sample_rate, phonemes)
        return FrameChunk(frames=frames, fps=self.fps, audio=pcm, sample_rate=sample_rate, text=text)

    def idle_frame(self, state: Any, t: float) -> np.ndarray:
        """:meth:`idle` with the state locked (the window thread's entry point)."""
        with state_lock(state):
            return self.idle(state, t)

    def restart(self, state: Any) -> None:
        """:meth:`reset` with the state locked: waits for a render still running."""
        with state_lock(state):
            self.reset(state)

"""Speech-to-text: one transcript per utterance, optionally streamed while the user speaks.

Providers implement ``_transcribe_impl``; the public :meth:`STT.transcribe` owns
resampling to the provider's rate, timing and error wrapping.

Streaming (``talk``): :meth:`STT.open_stream` gives an :class:`STTStream` that is fed the
utterance's audio while it is spoken and hands its transcript over when the turn needs
it. A provider with a real streaming decoder (``streaming = True``, e.g. Moonshine)
overrides :meth:`STTStream._push` / :meth:`STTStream._decode`; for every other provider
the stream just buffers the audio and transcribes it one-shot when asked, so callers
never need to know which kind they hold. :meth:`STTStream.prefetch` starts decoding
what was fed so far (the caller does it early in the user's pause); a later
:meth:`STTStream.result` with the same key reuses that work instead of starting over.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import replace

import numpy as np

from ..audio.io import PIPELINE_RATE, resample
from ..errors import AvatarError, ProviderError
from ..types import Transcript, Utterance


class STT(ABC):
    """Base of every STT provider. ``load()`` is a blocking warm-up, safe to call twice."""

    name = "stt"
    sample_rate = PIPELINE_RATE
    streaming = False  # True: open_stream() decodes incrementally while audio is fed

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights now instead of on the first call (blocking)."""

    async def transcribe(self, utt: Utterance) -> Transcript:
        """Transcribe one utterance; ``proc_s`` is filled with the wall time taken."""
        pcm = resample(utt.pcm, utt.sample_rate, self.sample_rate)
        t0 = time.perf_counter()
        try:
            result = await self._transcribe_impl(pcm)
        except AvatarError:
            raise
        except Exception as exc:
            raise ProviderError(f"stt '{self.name}' failed: {type(exc).__name__}: {exc}") from exc
        return replace(result, text=result.text.strip(), audio_s=len(pcm) / self.sample_rate,
                       proc_s=time.perf_counter() - t0, done_t=time.monotonic())

    @abstractmethod
    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        """(N,) float32 mono at ``self.sample_rate`` -> Transcript."""

    def open_stream(self, sample_rate: int = PIPELINE_RATE) -> STTStream:
        """A stream for one utterance fed at ``sample_rate`` (loop thread).

        Providers without a streaming decoder get a buffering stream that transcribes
        one-shot when asked (same text as :meth:`transcribe`).
        """
        return STTStream(self, sample_rate)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class STTStream:
    """One utterance's audio, fed while it is spoken; its transcript on demand.

    Use from the event loop thread only. :meth:`feed` never blocks (providers queue the
    work on their worker); :meth:`result` may be called more than once (a pause, then
    more speech, then the end) and does not close the stream; :meth:`aclose` does.
    This base class buffers and transcribes one-shot (the fallback for every provider).
    """

    def __init__(self, stt: STT, sample_rate: int) -> None:
        self.stt = stt
        self.sample_rate = sample_rate
        self.fed = 0  # samples fed, at ``sample_rate``
        self._parts: list[np.ndarray] = []
        self._prefetch: tuple[Hashable, asyncio.Future] | None = None
        self._want: Hashable | None = None  # key of the latest prefetch asked for
        self._closed = False

    # ---------------------------------------------------------------- public
    def feed(self, pcm: np.ndarray) -> None:
        """Append (N,) float32 mono audio of the utterance (non-blocking)."""
        if self._closed or len(pcm) == 0:
            return
        pcm = np.asarray(pcm, np.float32)
        self.fed += len(pcm)
        self._push(resample(pcm, self.sample_rate, self.stt.sample_rate))

    def prefetch(self, key: Hashable) -> None:
        """Start transcribing everything fed so far; :meth:`result` with the same ``key``
        reuses it. The caller picks a key that changes whenever new speech was fed (the
        VAD's voiced-frame count), so trailing silence does not invalidate the work.
        One decode at a time: while an earlier prefetch runs, this one starts when it
        ends (decodes never queue up behind each other)."""
        if self._closed:
            return
        self._want = key
        if self._prefetch is None or self._prefetch[1].done():
            self._start_prefetch()

    async def result(self, key: Hashable | None = None) -> Transcript:
        """The transcript of everything fed so far (the stream stays open)."""
        if key is not None and self._prefetch is not None:
            if self._prefetch[0] != key and self._want == key and not self._prefetch[1].done():
                await asyncio.wait([self._prefetch[1]])  # the one for ``key`` starts then
            if self._prefetch[0] == key:
                return await asyncio.shield(self._prefetch[1])
        return await self._timed()

    def _start_prefetch(self) -> None:
        key = self._want
        if self._closed or key is None or (self._prefetch is not None and self._prefetch[0] == key):
            return
        task = asyncio.ensure_future(self._timed())
        task.add_done_callback(self._prefetched)
        self._prefetch = (key, task)

    def _prefetched(self, task: asyncio.Future) -> None:
        _retrieve(task)
        self._start_prefetch()  # a newer key was asked for meanwhile

    async def aclose(self) -> None:
        """Release the stream (a pending :meth:`result` still completes)."""
        if self._closed:
            return
        self._closed = True
        self._parts = []
        await self._close()

    # ---------------------------------------------------------------- provider hooks
    def _push(self, pcm: np.ndarray) -> None:
        """Take (N,) float32 at the provider's rate; must not block."""
        self._parts.append(pcm)

    async def _decode(self) -> Transcript:
        """Transcribe all audio pushed so far."""
        pcm = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        return await self.stt._transcribe_impl(pcm)

    async def _close(self) -> None:
        """Free provider resources."""

    # ---------------------------------------------------------------- internals
    async def _timed(self) -> Transcript:
        t0 = time.perf_counter()
        try:
            result = await self._decode()
        except AvatarError:
            raise
        except Exception as exc:
            raise ProviderError(f"stt '{self.stt.name}' failed: {type(exc).__name__}: {exc}") from exc
        return replace(result, text=result.text.strip(), audio_s=self.fed / self.sample_rate,
                       proc_s=time.perf_counter() - t0, done_t=time.monotonic())


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # an unused prefetch that failed must not warn at exit

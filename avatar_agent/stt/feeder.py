"""Streaming speech-in for ``talk``: the utterance in progress goes to the STT as it is spoken.

:class:`SpeechFeeder` sits next to the :class:`~avatar_agent.audio.vad.VadSegmenter`.
Call :meth:`SpeechFeeder.update` after every ``vad.push``: at a speech onset it opens an
:class:`~avatar_agent.stt.base.STTStream`, then it feeds every new frame of the utterance
(pre-roll included); once the speaker has been silent for ``prefetch_ms`` it asks the
stream to decode what it has (``prefetch``), keyed by the VAD's voiced-frame count. When
the turn commits (``SpeechPause`` 200 ms into the pause, or the final ``Utterance``),
:meth:`SpeechFeeder.take` hands over the stream and that key: if no speech came after
the prefetch, the transcript is already decoded (or nearly) when the turn asks for it.

Only providers that really stream (``STT.streaming``, Moonshine) are fed: for a one-shot
provider a decode costs the whole utterance (faster-whisper tiny: ~0.9 s), and one per
short gap inside a question queued up (measured: voice-to-face 16 s in ``talk``), so the
turn transcribes the utterance one-shot as before. ``enabled=False`` does the same for
every provider.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable, Iterable

from ..audio.vad import SpeechStart, VadSegmenter
from ..types import Utterance
from .base import STT, STTStream

log = logging.getLogger(__name__)


class SpeechFeeder:
    """Feeds the VAD's utterance in progress to a streaming STT (loop thread only)."""

    def __init__(self, stt: STT, vad: VadSegmenter, *, enabled: bool = True,
                 prefetch_ms: int = 60) -> None:
        self.stt = stt
        self.vad = vad
        self.enabled = enabled and getattr(stt, "streaming", False)
        self._prefetch_frames = (max(1, round(prefetch_ms * vad.sample_rate / 1000 / vad.frame_len))
                                 if prefetch_ms > 0 else 0)
        self.stream: STTStream | None = None
        self._fed = 0  # samples of the current utterance given to the stream
        self._key: Hashable | None = None  # voiced-frame count at the last prefetch
        self._old: list[STTStream] = []

    def update(self, events: Iterable[object]) -> None:
        """After ``vad.push``: open a stream at an onset, feed new audio, maybe prefetch."""
        if not self.enabled:
            return
        if any(isinstance(e, SpeechStart) for e in events):
            self._open()
        if self.stream is None or not self.vad.in_speech:
            return
        pcm = self.vad.speech_audio(self._fed)
        if len(pcm):
            self.stream.feed(pcm)
            self._fed += len(pcm)
        silent = self.vad.silent_frames
        key = self.vad.voiced_frames
        if self._prefetch_frames and silent >= self._prefetch_frames and key != self._key:
            self._key = key
            self.stream.prefetch(key)

    def take(self, utt: Utterance) -> tuple[STTStream, Hashable] | None:
        """The stream holding ``utt`` (fed up to its end) and the key to ask it with;
        None when feeding is off or no stream covers it."""
        if not self.enabled or self.stream is None:
            return None
        if len(utt.pcm) > self._fed:  # the frames of the last push
            self.stream.feed(utt.pcm[self._fed:])
            self._fed = len(utt.pcm)
        return self.stream, self.vad.voiced_frames

    def _open(self) -> None:
        if self.stream is not None:
            self._old.append(self.stream)  # a turn may still be reading it: closed later
        self.stream = self.stt.open_stream(self.vad.sample_rate)
        self._fed = 0
        self._key = None

    async def collect(self) -> None:
        """Close the streams replaced by newer utterances, all but the latest of them: a
        turn started on that one may not have asked for its transcript yet."""
        old, self._old = self._old[:-1], self._old[-1:]
        await self._close(old)

    async def aclose(self) -> None:
        """Close every stream."""
        old, self._old = [*self._old, *([self.stream] if self.stream else [])], []
        self.stream = None
        await self._close(old)

    @staticmethod
    async def _close(streams: list[STTStream]) -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()

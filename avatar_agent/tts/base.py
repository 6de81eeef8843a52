"""Text-to-speech: text in, one or more :class:`SpeechChunk` out (per sentence).

Providers implement ``_synthesize_impl``; :meth:`TTS.synthesize` owns error wrapping
and converts the PCM to mono float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import replace

from ..audio.io import to_mono_float
from ..errors import AvatarError, ProviderError
from ..types import SpeechChunk


class TTS(ABC):
    """Base of every TTS provider."""

    name = "tts"

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load the voice now instead of on the first call (blocking)."""

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Speak ``text``; yields chunks of mono float32 PCM in order."""
        if not text.strip():
            return
        try:
            async for chunk in self._synthesize_impl(text):
                if len(chunk.pcm):
                    yield replace(chunk, pcm=to_mono_float(chunk.pcm))
        except AvatarError:
            raise
        except Exception as exc:
            raise ProviderError(f"tts '{self.name}' failed: {type(exc).__name__}: {exc}") from exc

    @abstractmethod
    def _synthesize_impl(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Provider synthesis; an async generator of chunks."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

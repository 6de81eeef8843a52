"""Speech-to-text: one transcript per utterance.

Providers implement ``_transcribe_impl``; the public :meth:`STT.transcribe` owns
resampling to the provider's rate, timing and error wrapping.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import replace

import numpy as np

from ..audio.io import PIPELINE_RATE, resample
from ..errors import AvatarError, ProviderError
from ..types import Transcript, Utterance


class STT(ABC):
    """Base of every STT provider. ``load()`` is a blocking warm-up, safe to call twice."""

    name = "stt"
    sample_rate = PIPELINE_RATE

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
                       proc_s=time.perf_counter() - t0)

    @abstractmethod
    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        """(N,) float32 mono at ``self.sample_rate`` -> Transcript."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

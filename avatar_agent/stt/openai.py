"""OpenAI audio transcriptions (``whisper-1``, ``gpt-4o-mini-transcribe``, ...).

The utterance is sent as a 16 kHz mono 16-bit wav (small, and the rate Whisper models
use internally). Works with OpenAI-compatible servers that implement
``/v1/audio/transcriptions`` (e.g. a faster-whisper server) through ``base_url``.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from ..audio.io import PIPELINE_RATE, to_int16
from ..llm.openai_client import OpenAIClient
from ..types import Transcript
from .base import STT

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """(N,) float32 mono -> a 16-bit PCM wav file in memory."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, to_int16(pcm), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class OpenAISTT(STT):
    """One transcription request per utterance through the official ``openai`` client."""

    name = "openai"
    sample_rate = PIPELINE_RATE

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        self._cfg = cfg.stt.openai
        self._client = OpenAIClient(self._cfg, "stt.openai")

    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        import openai

        kwargs = {"language": self._cfg.language} if self._cfg.language else {}
        try:
            result = await self._client.get().audio.transcriptions.create(
                model=self._cfg.model, file=("utterance.wav", wav_bytes(pcm, self.sample_rate), "audio/wav"),
                response_format="json", **kwargs,
            )
        except openai.OpenAIError as exc:
            raise self._client.error(exc) from None
        text = result if isinstance(result, str) else getattr(result, "text", "")
        return Transcript(text=text or "", language=self._cfg.language or "")

    async def aclose(self) -> None:
        """Close the HTTP client of this loop."""
        client = self._client._client
        if client is not None:
            await client.close()

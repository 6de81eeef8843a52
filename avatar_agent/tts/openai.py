"""OpenAI speech API (``tts-1``, ``gpt-4o-mini-tts``), streamed as raw PCM.

``response_format=pcm`` is 24 kHz mono 16-bit little-endian with no header, so audio
can be handed on while it downloads: chunks of ``CHUNK_S`` seconds are yielded as they
arrive (a whole number of 25/30 fps video frames each, which keeps lip-sync chunks
frame-aligned); the first chunk carries the text, the others ``""``. Closing the consumer
closes the HTTP stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import numpy as np

from ..llm.openai_client import OpenAIClient
from ..types import SpeechChunk
from .base import TTS

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

PCM_RATE = 24000  # fixed by the API for response_format=pcm
CHUNK_S = 0.4  # 10 frames at 25 fps, 12 at 30 fps


class OpenAITTS(TTS):
    """Streamed speech synthesis through the official ``openai`` client."""

    name = "openai"
    sample_rate = PCM_RATE

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        self._cfg = cfg.tts.openai
        self._client = OpenAIClient(self._cfg, "tts.openai")

    async def _synthesize_impl(self, text: str) -> AsyncIterator[SpeechChunk]:
        import openai

        c = self._cfg
        step = int(CHUNK_S * PCM_RATE) * 2  # bytes
        pending = b""
        label = text  # the text rides on the first chunk only, so a transcript of what
        # was played (one entry per chunk) holds each sentence once
        try:
            async with self._client.get().audio.speech.with_streaming_response.create(
                model=c.model, voice=c.voice, input=text, response_format="pcm", speed=c.speed,
            ) as response:
                async for data in response.iter_bytes():
                    pending += data
                    while len(pending) >= step:
                        yield self._chunk(pending[:step], label)
                        label, pending = "", pending[step:]
        except openai.OpenAIError as exc:
            raise self._client.error(exc) from None
        if len(pending) >= 2:
            yield self._chunk(pending[: len(pending) - len(pending) % 2], label)

    @staticmethod
    def _chunk(data: bytes, text: str) -> SpeechChunk:
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return SpeechChunk(pcm=pcm, sample_rate=PCM_RATE, text=text)

    async def aclose(self) -> None:
        """Close the HTTP client of this loop."""
        client = self._client._client
        if client is not None:
            await client.close()

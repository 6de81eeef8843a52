"""OpenAI-compatible chat completions, streamed over SSE.

Works with OpenAI and anything that speaks its ``/v1/chat/completions`` API: Ollama
(``base_url: http://localhost:11434/v1``), vLLM, LM Studio, a llama.cpp server. The key
comes from the environment variable named by ``llm.openai.api_key_env``; local
servers that need none may leave it unset when ``base_url`` is given. Cancelling the
consumer closes the HTTP stream, so the server stops generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..types import TextDelta
from .base import LLM, Message
from .openai_client import OpenAIClient

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore


class OpenAILLM(LLM):
    """Streaming chat completions through the official ``openai`` client."""

    name = "openai"

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        self._cfg = cfg.llm.openai
        self._client = OpenAIClient(self._cfg, "llm.openai")
        self.tokens_generated = 0  # content chunks of the last reply (≈ tokens)
        self._limit_name = "max_tokens"

    async def _stream_impl(self, messages: list[Message], *, max_tokens: int, temperature: float
                           ) -> AsyncIterator[TextDelta]:
        import openai

        self.tokens_generated = 0
        try:
            stream = await self._open(messages, max_tokens, temperature)
            async with stream:  # closes the connection on cancel/break: generation stops
                async for chunk in stream:
                    if not chunk.choices:  # usage-only chunks
                        continue
                    text = chunk.choices[0].delta.content or ""
                    if text:
                        self.tokens_generated += 1
                        yield TextDelta(text)
        except openai.APIConnectionError as exc:
            if not self.tokens_generated:
                raise self._client.error(exc) from None
            where, endpoint = "llm.openai", self._cfg.base_url or "api.openai.com"
            what = "stalled" if isinstance(exc, openai.APITimeoutError) else "dropped the connection"
            raise ProviderError(f"{where}: {endpoint} {what} after {self.tokens_generated} tokens of the reply",
                                hint="check the server; the next turn asks again") from None
        except openai.OpenAIError as exc:
            raise self._client.error(exc) from None

    async def _open(self, messages: list[Message], max_tokens: int, temperature: float) -> Any:
        """Start the SSE stream. ``max_tokens`` is what OpenAI-compatible servers know;
        newer OpenAI models reject it for ``max_completion_tokens``, learnt once per provider."""
        import openai

        client = self._client.get()
        limit = {self._limit_name: max_tokens}
        try:
            return await client.chat.completions.create(
                model=self._cfg.model, messages=messages, temperature=temperature, stream=True,
                **limit)
        except openai.BadRequestError as exc:
            if self._limit_name != "max_tokens" or "max_completion_tokens" not in str(exc):
                raise
        self._limit_name = "max_completion_tokens"
        return await client.chat.completions.create(
            model=self._cfg.model, messages=messages, temperature=temperature, stream=True,
            max_completion_tokens=max_tokens)

    async def aclose(self) -> None:
        """Close the HTTP client of this loop."""
        client = self._client._client
        if client is not None:
            await client.close()

"""LLM: a chat history in, an async stream of text deltas out.

Providers implement ``_stream_impl``; :meth:`LLM.stream` owns error wrapping.
Cancelling the consumer must really stop generation (providers check it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from ..errors import AvatarError, ProviderError
from ..types import TextDelta

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


class LLM(ABC):
    """Base of every LLM provider."""

    name = "llm"

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights now instead of on the first call (blocking)."""

    async def stream(self, messages: list[Message], *, max_tokens: int, temperature: float
                     ) -> AsyncIterator[TextDelta]:
        """Stream the reply to ``messages`` as text deltas."""
        try:
            async for delta in self._stream_impl(messages, max_tokens=max_tokens,
                                                 temperature=temperature):
                if delta.text:
                    yield delta
        except AvatarError:
            raise
        except Exception as exc:
            raise ProviderError(f"llm '{self.name}' failed: {type(exc).__name__}: {exc}") from exc

    @abstractmethod
    def _stream_impl(self, messages: list[Message], *, max_tokens: int, temperature: float
                     ) -> AsyncIterator[TextDelta]:
        """Provider streaming; an async generator."""

    async def complete(self, messages: list[Message], *, max_tokens: int, temperature: float) -> str:
        """The whole reply as one string."""
        parts = [d.text async for d in self.stream(messages, max_tokens=max_tokens,
                                                   temperature=temperature)]
        return "".join(parts)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class ChatHistory:
    """System prompt plus a bounded window of user/assistant turns.

    The window is evicted in steps (down to half of ``max_turns``) rather than sliding by
    one turn: a sliding window changes the prompt's prefix every turn, so llama.cpp
    cannot reuse its KV cache and re-reads the whole history (first token 0.25 s -> 1.1 s
    from the 8th turn on, benchmarks/RESULTS.md). Stepped eviction keeps the prefix
    stable for several turns in a row.
    """

    def __init__(self, system_prompt: str, max_turns: int) -> None:
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        self._turns: list[tuple[str, str]] = []

    def messages(self, user_text: str) -> list[Message]:
        """Messages to send for a new user turn (history + the new text)."""
        msgs: list[Message] = [{"role": "system", "content": self.system_prompt}]
        for user, assistant in self._turns:
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
        msgs.append({"role": "user", "content": user_text})
        return msgs

    def add(self, user_text: str, assistant_text: str) -> None:
        """Record a finished turn (``assistant_text``: what the user actually heard)."""
        self._turns.append((user_text, assistant_text))
        if len(self._turns) > self.max_turns:
            keep = (self.max_turns + 1) // 2
            del self._turns[:len(self._turns) - keep]

    def __len__(self) -> int:
        return len(self._turns)

"""LLM: a chat history in, an async stream of text deltas out.

Providers implement ``_stream_impl``; :meth:`LLM.stream` owns error wrapping.
Cancelling the consumer must really stop generation (providers check it).
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator

from ..errors import AvatarError, ProviderError
from ..types import TextDelta

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


class LLM(ABC):
    """Base of every LLM provider."""

    name = "llm"

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights now instead of on the first call (blocking)."""

    def prefill(self, context: list[Message]) -> None:  # noqa: B027 - optional hook
        """Read ``context`` (the system prompt and the history, without a new user turn)
        into the model's cache while nobody waits, so that the next reply reads only its
        question. Returns at once; a reply asked for meanwhile goes first. Local models."""

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold generation between two tokens while the block runs (bounded). A local
        model shares the CPU with the TTS; remote ones ignore it."""
        yield

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

    def context(self) -> list[Message]:
        """The system prompt and the turns in the window (what every next prompt starts with)."""
        msgs: list[Message] = [{"role": "system", "content": self.system_prompt}]
        for user, assistant in self._turns:
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
        return msgs

    def messages(self, user_text: str) -> list[Message]:
        """Messages to send for a new user turn (history + the new text)."""
        return [*self.context(), {"role": "user", "content": user_text}]

    def add(self, user_text: str, assistant_text: str) -> None:
        """Record a finished turn (``assistant_text``: what the user actually heard).

        A turn whose reply was never heard (cut off before its first word) is left out:
        empty answers in the history teach a small model to answer nothing (seen with
        SmolLM2 after three of them, on a loaded ``serve``)."""
        if not assistant_text.strip():
            return
        self._turns.append((user_text, assistant_text))
        if len(self._turns) > self.max_turns:
            keep = (self.max_turns + 1) // 2
            del self._turns[:len(self._turns) - keep]

    def __len__(self) -> int:
        return len(self._turns)

    def answers(self) -> list[str]:
        """The assistant's answers in the window, oldest first."""
        return [assistant for _, assistant in self._turns]


_PUNCT = re.compile(r"[^\w']+")
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")


def _norm(word: str) -> str:
    return _PUNCT.sub("", word.lower())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class RambleGuard:
    """Stops a reply that loops, copies an earlier answer, or runs too long to speak.

    Sync and word-level; feed it the LLM's text deltas with :meth:`push`, which returns
    the text that is safe to pass on now, and :meth:`flush` at the end. A run of words
    that could be the start of a repeat (a prefix of an n-gram already said in this
    reply, or of an earlier answer) is held back until it is clear, so a loop or a copy
    is cut before its repeated words are spoken. Small models loop ("the front of the
    front of the front of ...") and copy the previous answer; measured in ``talk``.

    ``loop_ngram``: stop when an n-gram of this many words repeats within the reply (0
    off). ``copy_ngram``: stop when an n-gram of this many words of an earlier answer
    reappears (0 off). ``max_words``: end at the first sentence end after this many
    words, and cut at 1.25x that in any case (0 off). :attr:`stopped` says why it
    stopped (``loop``, ``copy``, ``length``) or is None.
    """

    def __init__(self, *, loop_ngram: int = 4, copy_ngram: int = 6, max_words: int = 60,
                 previous: list[str] | tuple[str, ...] = ()) -> None:
        self.loop_ngram = loop_ngram
        self.copy_ngram = copy_ngram
        self.max_words = max_words
        self.stopped: str | None = None
        self._prev: set[tuple[str, ...]] = set()
        self._prefixes: set[tuple[str, ...]] = set()
        if copy_ngram > 0:
            for answer in previous:
                for gram in _grams([w for w in map(_norm, answer.split()) if w], copy_ngram):
                    self._add(gram, self._prev)
        self._own: set[tuple[str, ...]] = set()
        self._buf = ""     # text not passed on yet
        self._pos = 0      # where unparsed words start in _buf
        self._words: list[tuple[str, int]] = []  # (normalized word, its start in _buf) held
        self._count = 0    # words in the reply so far

    def _add(self, gram: tuple[str, ...], into: set[tuple[str, ...]]) -> None:
        into.add(gram)
        for k in range(1, len(gram)):
            self._prefixes.add(gram[:k])

    @property
    def done(self) -> bool:
        """True once the reply must end (the caller stops generating)."""
        return self.stopped is not None

    def push(self, text: str) -> str:
        """Add a delta; return the text to pass on now ("" while holding or stopped)."""
        if self.stopped is not None:
            return ""
        self._buf += text
        last = None
        for match in list(re.finditer(r"\S+(?=\s)", self._buf[self._pos:])):
            start, end = self._pos + match.start(), self._pos + match.end()
            cut = self._word(match.group(), start, end)
            if cut is not None:
                out, self._buf, self._words = self._buf[:max(0, cut)], "", []
                return out
            last = end
        if last is not None:
            self._pos = last
        return self._release()

    def flush(self) -> str:
        """End of the reply: the text still held (nothing if it was cut)."""
        if self.stopped is not None:
            return ""
        out, self._buf, self._pos, self._words = self._buf, "", 0, []
        return out

    # ---------------------------------------------------------------- internals
    def _word(self, raw: str, start: int, end: int) -> int | None:
        """Take one complete word; returns where to cut the text when the reply stops."""
        word = _norm(raw)
        if not word:
            return None
        self._count += 1
        self._words.append((word, start))
        words = [w for w, _ in self._words]
        for n, seen, why in ((self.loop_ngram, self._own, "loop"),
                             (self.copy_ngram, self._prev, "copy")):
            if n > 0 and len(words) >= n and tuple(words[-n:]) in seen:
                self.stopped = why
                return self._words[-n][1]  # drop the repeated words, keep what came before
        if self.loop_ngram > 0 and len(words) >= self.loop_ngram:
            self._add(tuple(words[-self.loop_ngram:]), self._own)
        if self.max_words > 0 and (
                (self._count >= self.max_words and _SENTENCE_END.search(raw))
                or self._count >= self.max_words * 5 // 4):
            self.stopped = "length"
            return end
        return None

    def _release(self) -> str:
        """Pass on everything before the held run (trailing words that may start a repeat)."""
        words = [w for w, _ in self._words]
        held = 0
        for k in range(min(len(words), max(self.loop_ngram, self.copy_ngram) - 1), 0, -1):
            if tuple(words[-k:]) in self._prefixes:
                held = k
                break
        # the n-gram windows need the last n-1 words even when released
        keep = max(self.loop_ngram, self.copy_ngram)
        if held:
            cut = self._words[-held][1]
        else:
            # nothing suspicious: release all complete words; hold the word being written
            cut = self._pos
        out, self._buf = self._buf[:cut], self._buf[cut:]
        self._pos -= cut
        self._words = [(w, s - cut) for w, s in self._words][-keep:]
        return out

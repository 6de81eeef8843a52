"""LLM: a chat history in, an async stream of text deltas out.

Providers implement ``_stream_impl``; :meth:`LLM.stream` owns error wrapping.
Cancelling the consumer must really stop generation (providers check it).
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator

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
_SENTENCES = re.compile(r"[^.!?…]+[.!?…]*")


def _norm(word: str) -> str:
    return _PUNCT.sub("", word.lower())


def _words_of(text: str) -> list[str]:
    return [w for w in map(_norm, text.split()) if w]


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
    words, and cut at 1.25x that in any case (0 off).

    The reply's head (its first sentence, or its first ``head_words`` words) is held
    until it can be judged, because two failures are only visible there: a short copy
    ("The history of Rome." three times in a row, shorter than any n-gram; issue 19),
    caught when the first sentence equals a sentence of an earlier answer once
    normalised, at any length; and a reply in another language, when ``foreign``
    (text -> a language code or None, :class:`~avatar_agent.llm.guards.LanguageCheck`)
    names one. A reply with no word at all ("", "...") is ``empty``. :attr:`stopped`
    says why it stopped (``loop``, ``copy``, ``language``, ``empty``, ``length``) or is
    None; on ``copy``, ``language`` and ``empty`` nothing of the reply was passed on.
    """

    def __init__(self, *, loop_ngram: int = 4, copy_ngram: int = 6, max_words: int = 60,
                 previous: list[str] | tuple[str, ...] = (),
                 foreign: Callable[[str], str | None] | None = None, head_words: int = 4) -> None:
        self.loop_ngram = loop_ngram
        self.copy_ngram = copy_ngram
        self.max_words = max_words
        self.foreign = foreign
        self.head_words = head_words
        self.stopped: str | None = None
        self.language: str | None = None  # the foreign language found (stopped == "language")
        self._prev: set[tuple[str, ...]] = set()
        self._prefixes: set[tuple[str, ...]] = set()
        # earlier answers, normalised: whole, and their sentences of 3+ words (a reply may
        # begin with "Yes." or "Hello!" again and go on to say something new)
        self._answers: set[tuple[str, ...]] = set()
        self._sentences: set[tuple[str, ...]] = set()
        if copy_ngram > 0:
            for answer in previous:
                for gram in _grams(_words_of(answer), copy_ngram):
                    self._add(gram, self._prev)
                if words := _words_of(answer):
                    self._answers.add(tuple(words))
                self._sentences.update(tuple(s) for s in map(_words_of, _SENTENCES.findall(answer)) if len(s) >= 3)
        self._copy_open = bool(self._answers)  # the first sentence is not judged yet
        self._lang_open = foreign is not None     # nor the language of the first words
        self._head_open = self._copy_open or self._lang_open
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
        """End of the reply: the text still held (nothing if it was cut or is empty)."""
        if self.stopped is not None:
            return ""
        tail = re.search(r"\S+\s*$", self._buf[self._pos:])
        if tail is not None:  # the last word, which no space followed
            start = self._pos + tail.start()
            word = tail.group().rstrip()
            cut = self._word(word, start, start + len(word))
            if cut is not None:
                out, self._buf, self._words = self._buf[:max(0, cut)], "", []
                return out
        if self._count == 0:
            self.stopped = "empty"
        elif self._head_open:  # the whole reply is its head: judged now
            self._judge_head(len(self._buf), sentence_end=False, final=True)
        if self.stopped is not None:
            self._buf, self._words = "", []
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
        if self._head_open and (cut := self._judge_head(end, sentence_end=bool(_SENTENCE_END.search(raw)))) is not None:
            return cut
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

    def _judge_head(self, end: int, *, sentence_end: bool, final: bool = False) -> int | None:
        """Judge the held head; returns 0 (cut: nothing was passed on) when it stops the
        reply. The copy check is done at the first sentence end: a head that could still
        grow into an earlier answer's sentence stays held until then. The language check
        is done at ``head_words`` words (fewer say too little: "Olá, Anna!"). ``final``:
        the reply ended, whatever is open is judged now."""
        head = tuple(w for w, _ in self._words)
        if self._copy_open:
            if (final and head in self._answers) or ((sentence_end or final) and head in self._sentences):
                self.stopped = "copy"
                return 0
            # "The history of ..." may be the old answer again: held until it is clear
            self._copy_open = not final and any(s[:len(head)] == head for s in self._answers | self._sentences)
        if self._lang_open and (len(head) >= self.head_words or final):
            if lang := self.foreign(self._buf[:end]):  # type: ignore[misc]
                self.stopped, self.language = "language", lang
                return 0
            self._lang_open = False
        self._head_open = self._copy_open or self._lang_open
        return None

    def _release(self) -> str:
        """Pass on everything before the held run (trailing words that may start a repeat)."""
        if self._head_open or self._count == 0:
            return ""  # the head is judged first; nothing but punctuation may be an empty reply
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

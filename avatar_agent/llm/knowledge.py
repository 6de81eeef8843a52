"""Answers from a document: BM25 passages of ``llm.knowledge`` files put into each question.

A kiosk's small model (SmolLM2-135M) knows nothing of the company it stands in; given
the two or three passages that match the question it can read the answer off them. The
files are split once at start-up (markdown headings and blank-line paragraphs; a
heading stays with its paragraph, so "## Parking" still matches a question about
parking) and indexed in memory with BM25 (bm25s, English stemmer and stop words).

The passages go into the last user message only, for the model's call
(:func:`with_facts`); the system prompt and the history stay as they were, so
llama.cpp's KV cache of system prompt + history (:meth:`LlamaCppLLM.prefill`) still
matches the next prompt's prefix, and the history keeps the bare question.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError, MissingExtraError
from .base import Message

#: Longest passage in characters: a long section is cut at sentence ends, so one
#: passage cannot fill a 2048-token context nor bury the fact among others.
MAX_CHARS = 600

_HEADING = re.compile(r"^#{1,6}\s+(.*\S)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def split_passages(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Passages of ``text``: blank-line paragraphs, each prefixed by the heading above it
    ("Parking: ..."); a heading with no text of its own is dropped, a paragraph over
    ``max_chars`` is cut at sentence ends (the heading repeated on each piece)."""
    passages: list[str] = []
    heading = ""
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        body: list[str] = []
        for line in lines:
            m = _HEADING.match(line)
            if m:
                if body:  # a heading right under a paragraph (no blank line) starts a new one
                    passages.extend(_cap(heading, " ".join(body), max_chars))
                    body = []
                heading = m.group(1)
            else:
                body.append(line)
        if body:
            passages.extend(_cap(heading, " ".join(body), max_chars))
    return passages


def _cap(heading: str, body: str, max_chars: int) -> list[str]:
    prefix = f"{heading}: " if heading else ""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(body):
        if current and len(prefix) + len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return [(prefix + p)[:max_chars] for p in pieces]


def read_files(paths: list[str] | list[Path]) -> list[str]:
    """The passages of every file in ``paths``; a missing, unreadable or empty file is a
    :class:`ConfigError` naming it (raised at start-up, not at the first question)."""
    passages: list[str] = []
    for value in paths:
        path = Path(value).expanduser()
        hint = "fix the path in llm.knowledge or remove it"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"llm.knowledge: file not found: {path}", hint=hint) from None
        except UnicodeDecodeError:
            raise ConfigError(f"llm.knowledge: {path} is not a text file (not UTF-8)",
                              hint="save it as UTF-8 text or markdown") from None
        except OSError as exc:
            raise ConfigError(f"llm.knowledge: cannot read {path}: {exc.strerror or exc}",
                              hint=hint) from None
        found = split_passages(text)
        if not found:
            raise ConfigError(f"llm.knowledge: {path} is empty",
                              hint="write the facts into it or remove it from llm.knowledge")
        passages.extend(found)
    return passages


class Knowledge:
    """An in-memory BM25 index of passages; :meth:`retrieve` finds the best for a question."""

    #: imported only when a knowledge file is configured (the ``local`` extra)
    requires = ("bm25s", "Stemmer")

    def __init__(self, passages: list[str]) -> None:
        try:
            import bm25s
            import Stemmer
        except ImportError as exc:
            raise MissingExtraError("llm.knowledge", "local", (exc.name or "bm25s").split(".")[0]) from None
        self.passages = list(passages)
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._index = bm25s.BM25()
        self._index.index(self._tokens(self.passages), show_progress=False)

    @classmethod
    def from_files(cls, paths: list[str] | list[Path]) -> Knowledge:
        return cls(read_files(paths))

    def _tokens(self, texts: list[str]):
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, show_progress=False)

    def retrieve(self, question: str, k: int = 3) -> list[str]:
        """Up to ``k`` passages for ``question``, best first; passages sharing no word
        with it (score 0) are left out, so a greeting gets no facts."""
        k = min(k, len(self.passages))
        tokens = self._tokens([question])
        if k <= 0 or not tokens.ids or not tokens.ids[0]:
            return []
        docs, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(d)] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def with_facts(messages: list[Message], facts: list[str]) -> list[Message]:
    """``messages`` with ``facts`` put before the last (user) message's text; a copy,
    the history's own messages are left alone. No facts: ``messages`` unchanged."""
    if not facts:
        return messages
    last = messages[-1]
    listed = "\n".join(f"- {fact}" for fact in facts)
    content = f"Facts:\n{listed}\n\nQuestion: {last['content']}"
    return [*messages[:-1], {**last, "content": content}]

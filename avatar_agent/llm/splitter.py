"""Turn a stream of LLM text deltas into speakable sentences, as early as possible.

The TTS can only start when it has a whole sentence, so the splitter decides each
boundary with the least look-ahead it can: ``!`` and ``?`` end a sentence as soon as
whitespace follows; ``.`` waits for the next visible character (a lowercase letter after
it means an abbreviation we do not know: never split mid-sentence, a merged sentence
only costs latency, a wrong split is an audible pause). The *first* chunk of a reply
is cut at its first clause (``,`` ``;`` ``:`` or a dash after a few words), or after at
most ``first_max_words`` words when no clause or sentence ends sooner (backing off over
"the", "of", ... so the cut falls after a content word), so speech starts while the LLM
is still writing and the first TTS call is short.

Handled: abbreviations (``Dr.``, ``e.g.``, ``U.S.``, initials), decimals and thousands
(``3.14``, ``1,000``), numbered-list markers, ellipses (``...``/``…`` split only before a
capital), closing quotes and brackets, emojis (dropped), and the markdown small models
emit anyway (bold/italics, headings, bullets, links, inline code; code blocks are
dropped). The sync core is :class:`SentenceSplitter`; :func:`split_sentences` wraps it
for an async stream of :class:`TextDelta`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable

from ..types import Sentence, TextDelta

_ENDS = ".!?…"
_CLAUSE = ",;:—–"
_CLOSERS = "\"')]}”’»*_`"
# never a sentence end: titles, "for example"-style abbreviations
_NEVER = {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "vs", "e.g", "i.e",
          "cf", "approx", "no", "fig", "ca", "eg", "ie", "sgt", "capt", "gen", "rev"}
# a sentence end only when a capital follows ("... apples, pears, etc. The rest")
_MAYBE = {"etc", "inc", "ltd", "co", "corp", "al", "jan", "feb", "mar", "apr", "jun",
          "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m"}
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\U00002600-\U000027BF\U00002B00-\U00002BFF\U0001F1E6-\U0001F1FF"
    "\U0000FE00-\U0000FE0F\U0000200D\U000E0020-\U000E007F\U00002190-\U000021FF\U00003030"
    "\U0000303D\U00003297\U00003299]"
)
# a first chunk cut by length never ends on these (the cut moves back over them)
_WEAK = {"a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "and",
         "or", "but", "is", "are", "was", "were", "be", "it", "its", "my", "your", "our",
         "their", "this", "that", "these", "those", "as", "if", "than", "so", "not", "i",
         "you", "we", "they", "he", "she", "e.g.", "i.e.", "very", "most", "more", "about"}
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S, a.m (the last dot is the candidate)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-+•]\s+|\d{1,3}[.)]\s+)+")
_HTML = re.compile(r"</?[A-Za-z][^>]*>")
_EMPH = re.compile(r"(?<!\w)_{1,2}|_{1,2}(?!\w)|~~|`+|\*+|\|")
_SPACES = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r"\s+([.,!?;:…])")


def clean_text(text: str) -> str:
    """Strip markdown, emojis and HTML from one sentence; collapse whitespace.

    Returns ``""`` when nothing speakable (no letter or digit) is left.
    """
    text = _EMOJI.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _HTML.sub(" ", text)
    text = _LINE_MARK.sub("", text)
    text = _EMPH.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_PUNCT.sub(r"\1", text)
    return text if any(ch.isalnum() for ch in text) else ""


class SentenceSplitter:
    """Sync core: :meth:`push` text pieces, get finished sentences; :meth:`flush` at the end.

    ``first_clause_words``: the first sentence is cut at a clause mark once it has this
    many words (0 disables). ``first_max_words``: ... and after at most this many words
    when neither a clause mark nor a sentence end came sooner (0 disables). ``max_chars``: a run with no boundary is cut at the last
    comma or space before this many characters, so one long sentence cannot stall TTS.
    """

    def __init__(self, *, first_clause_words: int = 4, max_chars: int = 240,
                 first_max_words: int = 8) -> None:
        self.first_clause_words = first_clause_words
        self.first_max_words = first_max_words
        self.max_chars = max_chars
        self._buf = ""
        self._index = 0
        self._in_fence = False

    def push(self, text: str) -> list[Sentence]:
        """Add streamed text; return the sentences that are now complete."""
        self._buf += text
        return self._drain(final=False)

    def flush(self) -> list[Sentence]:
        """End of stream: return whatever is left as final sentences."""
        out = self._drain(final=True)
        rest, self._buf = self._buf, ""
        if rest and not self._in_fence:
            out.extend(self._emit(rest))
        return out

    def split(self, text: str) -> list[str]:
        """Split a whole text at once (convenience for tests and batch use)."""
        return [s.text for s in [*self.push(text), *self.flush()]]

    # ------------------------------------------------------------------ internals
    def _drain(self, final: bool) -> list[Sentence]:
        out: list[Sentence] = []
        while True:
            end = self._boundary(final)
            if end is None:
                return out
            piece, self._buf = self._buf[:end], self._buf[end:]
            out.extend(self._emit(piece))

    def _emit(self, piece: str) -> list[Sentence]:
        kept: list[str] = []
        for k, part in enumerate(piece.split("```")):
            if k:
                self._in_fence = not self._in_fence  # spoken code is noise: drop fenced blocks
            if not self._in_fence:
                kept.append(part)
        text = clean_text(" ".join(kept))
        if not text:
            return []
        sentence = Sentence(text=text, index=self._index)
        self._index += 1
        return [sentence]

    def _boundary(self, final: bool) -> int | None:
        """End index (exclusive) of the first complete sentence in the buffer, or None."""
        buf = self._buf
        n = len(buf)
        head = buf.lstrip(" \t")
        if self._in_fence or head.startswith("```") or (head and "```".startswith(head)):
            nl = buf.find("\n")
            return nl + 1 if nl >= 0 else None  # code lines end only at a newline
        clause = self._index == 0 and self.first_clause_words > 0
        cap = self._word_cap(buf) if clause and self.first_max_words > 0 else None
        i = 0
        while i < n:
            if cap is not None and i >= cap:
                return cap  # the first chunk is long enough: say it now
            ch = buf[i]
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
                i += 1
                continue
            if ch not in _ENDS and not (clause and ch in _CLAUSE):
                i += 1
                continue
            j = i + 1
            while j < n and buf[j] in _ENDS:
                j += 1
            while j < n and buf[j] in _CLOSERS:
                j += 1
            if j >= n:
                return n if final else None  # cannot tell yet: "3." may become "3.14"
            if not buf[j].isspace():
                i = j  # 3.14, 1,000, e.g, U.S, "?!" inside a word
                continue
            k = j
            while k < n and buf[k] in " \t":
                k += 1
            nxt = buf[k] if k < n else None
            verdict = self._is_end(buf, i, j, nxt, clause)
            if verdict is None:
                return n if final else None
            if verdict:
                return j
            i = j
        if n > self.max_chars:
            return self._forced_cut(buf)
        return None

    def _is_end(self, buf: str, i: int, j: int, nxt: str | None, clause: bool) -> bool | None:
        """Is the punctuation run ``buf[i:j]`` a sentence end? None: need more text."""
        run = buf[i:j]
        if buf[i] in _CLAUSE:
            words = buf[:i].split()
            return len(words) >= self.first_clause_words and any(w[0].isalpha() for w in words)
        if ("!" in run or "?" in run) and run[-1] not in _CLOSERS:
            return True
        if nxt is None:
            return None
        if "!" in run or "?" in run:  # 'She asked "why?" and left.': a quote, not an end
            return not nxt.islower()
        if nxt == "\n":
            return True
        if "…" in run or run.count(".") >= 2:  # ellipsis: a pause unless a new sentence starts
            return nxt.isupper()
        word = buf[:i].split()[-1] if buf[:i].split() else ""
        bare = word.lstrip("\"'([{“‘«").lower()
        if bare in _NEVER:
            return False
        if bare in _MAYBE or _DOTTED.match(word.lstrip("\"'([{“‘«")):
            return nxt.isupper()
        if len(bare) == 1 and bare.isalpha() and word[-1].isupper() and word != "I":
            return False  # an initial: "J. R. R. Tolkien"
        if bare.isdigit() and len(buf[:i].split()) == 1 and len(bare) <= 3:
            return False  # "1. First item": a list marker, not a sentence
        return not nxt.islower()

    def _word_cap(self, buf: str) -> int | None:
        """End of the first chunk by length: after word ``first_max_words`` (or the last
        content word before it), once the word after it has begun; None before that."""
        spans = [m.span() for m in re.finditer(r"\S+", buf)]
        if len(spans) <= self.first_max_words or "```" in buf[: spans[self.first_max_words][0]]:
            return None
        low = max(1, self.first_clause_words)
        for k in range(self.first_max_words, low - 1, -1):
            word = buf[spans[k - 1][0]:spans[k - 1][1]]
            bare = word.strip("\"'()[]{}“”‘’«»*_`").lower()
            if bare and bare not in _WEAK and any(c.isalnum() for c in bare):
                return spans[k - 1][1]
        return spans[self.first_max_words - 1][1]

    def _forced_cut(self, buf: str) -> int:
        window = buf[: self.max_chars]
        for mark in (", ", "; ", " "):
            pos = window.rfind(mark)
            if pos > self.max_chars // 3:
                return pos + len(mark)
        return self.max_chars


def split_text(text: str, **kwargs: int) -> list[str]:
    """Split a whole text into speakable sentences (see :class:`SentenceSplitter`)."""
    return SentenceSplitter(**kwargs).split(text)


def split_chunks(chunks: Iterable[str], **kwargs: int) -> list[str]:
    """Feed ``chunks`` one by one as a stream would; return the sentences."""
    sp = SentenceSplitter(**kwargs)
    out = [s.text for c in chunks for s in sp.push(c)]
    return out + [s.text for s in sp.flush()]


async def split_sentences(deltas: AsyncIterator[TextDelta], *, first_clause_words: int = 4,
                          max_chars: int = 240, first_max_words: int = 8) -> AsyncIterator[Sentence]:
    """Async adapter: LLM text deltas in, :class:`Sentence` (indexed from 0) out, in order."""
    sp = SentenceSplitter(first_clause_words=first_clause_words, max_chars=max_chars,
                          first_max_words=first_max_words)
    async for delta in deltas:
        for sentence in sp.push(delta.text):
            yield sentence
    for sentence in sp.flush():
        yield sentence

"""Scoring for the conversation benchmark: pure functions on text, no models.

heard: word error rate of what the STT heard against the script (:func:`wer`), or for a
recording of a known passage against the best-matching span of it (:func:`span_wer`).
right: the reply matches an answer key (:func:`key_match`). copy: the reply equals an
earlier reply once normalised, at any length (:func:`is_copy`). drift: the reply is not
English (:func:`is_drift`: letters outside ASCII, or foreign function words and no
English ones). parrot: the reply repeats the user's words (:func:`is_parrot`). Tested in ``tests/test_bench_conversation.py``.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# British spellings in our script vs the American ones an English STT writes
_SPELLING = {"favourite": "favorite", "colour": "color", "travelling": "traveling",
             "centre": "center", "metre": "meter"}
_JOINED = (("good bye", "goodbye"), ("e mail", "email"), ("to day", "today"), ("any more", "anymore"))
_CONTRACTIONS = {"i'm": "i am", "it's": "it is", "what's": "what is", "that's": "that is",
                 "you're": "you are", "don't": "do not", "isn't": "is not", "can't": "cannot",
                 "there's": "there is", "let's": "let us", "i've": "i have", "we're": "we are"}


def number_words(n: int) -> str:
    """``n`` (0..999) in words: 56 → "fifty six" (hyphens become spaces when normalised)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def normalise(text: str) -> str:
    """Lower case, curly quotes straightened, digits (< 1000) as words, hyphens and
    punctuation removed, contractions and British spellings unified, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\b\d{1,3}\b", lambda m: number_words(int(m.group())), text)
    text = re.sub(r"[^\w\s']+", " ", text.replace("-", " "))
    words = []
    for w in text.split():
        w = w.strip("'")
        w = _CONTRACTIONS.get(w, w)
        words.extend(_SPELLING.get(p, p) for p in w.split())
    text = " ".join(w for w in words if w)
    for split, joined in _JOINED:  # "good-bye" lost its hyphen above: one word, as "goodbye"
        text = re.sub(rf"\b{split}\b", joined, text)
    return text


def _edits(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (substitutions + deletions + insertions) / reference words, on
    :func:`normalise`d text; 0 for two empty strings, 1 for an empty hypothesis."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return _edits(ref, hyp) / len(ref)


def span_wer(passage: str, hypothesis: str) -> tuple[float, str]:
    """WER of ``hypothesis`` against the contiguous span of ``passage`` it matches best
    (free start and end in the passage: a recording cut from a known text at pauses);
    returns (wer, the span)."""
    ref, hyp = normalise(passage).split(), normalise(hypothesis).split()
    if not hyp:
        return 1.0, ""
    best = (float("inf"), 0, 0, 0)  # (edits, |span - hyp| length gap, start, end)
    # every start in the passage, every end up to twice the hypothesis' length: O(n m²)
    # on a few hundred words, instant
    for start in range(len(ref)):
        prev = list(range(len(hyp) + 1))  # span ref[start:start] vs hyp[:j]
        for i in range(start, min(len(ref), start + 2 * len(hyp) + 2)):
            cur = [i - start + 1] + [0] * len(hyp)
            for j, h in enumerate(hyp, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref[i] != h))
            prev = cur
            cand = (prev[-1], abs(i + 1 - start - len(hyp)), start, i + 1)
            best = min(best, cand)
    edits, _, s, e = best
    return edits / (e - s), " ".join(ref[s:e])


def key_match(reply: str, key: tuple[str, ...] | None, exact: bool = False) -> bool | None:
    """Does ``reply`` hold one of ``key``'s regexes? ``exact``: the whole normalised reply
    must match one. ``None`` when there is no key (a statement or chit-chat)."""
    if key is None:
        return None
    if exact:
        said = normalise(reply)
        return any(re.fullmatch(k, said) for k in key)
    text = unicodedata.normalize("NFKC", reply).lower().replace("\u2019", "'")
    said = normalise(reply)
    return any(re.search(k, text) or re.search(k, said) for k in key)


def is_copy(reply: str, earlier: list[str]) -> bool:
    """``reply`` equals one of the ``earlier`` replies once normalised, at any length
    (the copy guard's 6-word n-grams miss "The history of Rome." twice)."""
    said = normalise(reply)
    return bool(said) and any(said == normalise(e) for e in earlier)


# the commonest English words: function words, numbers, yes/no, and words short replies use
_ENGLISH = set("""
a about above after again all also am an and any are around as at be because been before
being below between both but by can cannot could did do does doing down during each few for
from further had has have having he her here hers him his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours out over own
same she should so some such than that the their them then there these they this those
through to too under until up very was we were what when where which while who whom why will
with would yes you your yours hello hi hey thanks thank please okay ok sure sorry well good
great fine nice day today people city capital one two three four five six seven eight nine
ten eleven twelve twenty thirty forty fifty sixty hundred thousand million millions times
plus minus many much first last name called live lives like love know think see say said
free new old big small long little right left time year way man woman child world life hand
part place case week point number fact water sun moon star sky earth animal dog cat food
make made go going get got come take give tell ask work call try need feel become leave put
mean keep let begin seem help talk turn start show hear play run move believe hold bring
happen write sit stand lose pay meet include continue set learn change lead understand
watch follow stop create speak read spend grow open walk win offer remember consider appear
buy wait serve die send expect build stay fall cut reach kill remain suggest raise pass sell
red blue green yellow black white color colour hot cold warm yes no maybe really always never
""".split())
# function words of the languages a small model drifts into (Portuguese, Spanish, French,
# Italian, German, Dutch): seen in issue 19, "Nossa mesaura, amo." then "Não, não. Não."
_FOREIGN = set("""
não nao nossa nosso uma um que os às com mais muito você voce eu sim é está esta são sao
el los las del por para una es está estoy muy gracias hola pero como sí
le les des est une et je tu nous vous il elle oui merci bonjour avec pour pas suis
il lo gli della che sono non per una ciao grazie è
der die das und ist nicht ich du wir ein eine zu mit danke ja nein
het een en niet ik je wij dank
""".split()) - _ENGLISH


def is_parrot(reply: str, heard: str) -> bool:
    """``reply`` repeats the user: all of what was heard, or three or more of its words in
    a row and nothing else ("The age of wisdom." after "… it was the age of wisdom")."""
    said, user = normalise(reply), normalise(heard)
    if not said:
        return False
    return said == user or (len(said.split()) >= 3 and f" {said} " in f" {user} ")


def is_drift(reply: str) -> bool:
    """Is ``reply`` not English? Letters outside ASCII (ã, é, ü, CJK, …), or at least as
    many foreign function words as English ones, or four or more words, one in lower
    case, none of them a common English word. Short replies ("Paris.", "Fifty-six.") and
    names alone count as English. Independent of the reply guard's detector (py3langid in
    ``avatar_agent/llm/guards.py``), so the benchmark sees what the guard lets through."""
    text = unicodedata.normalize("NFKC", reply)
    letters = [c for c in text if c.isalpha()]
    if any(ord(c) > 127 for c in letters):
        return True
    raw = re.findall(r"[A-Za-z']+", text)
    words = [w.lower() for w in raw]
    english = sum(w in _ENGLISH for w in words)
    # French/Italian elisions (l'aujour, d'Allemagne, qu'il, dell'anno) count as foreign
    foreign = sum(w in _FOREIGN or bool(re.match(r"(l|d|qu|j|c|n|dell|all|nell)'[a-z]", w)) for w in words)
    if foreign and foreign >= english:
        return True
    # names alone ("Lisbon, Portugal, Europe") are no language: a lower-case word must be
    # there; four words at least, as misheard echoes ("Dubel free, eh?") are English junk
    return len(words) >= 4 and english == 0 and any(w[0].islower() for w in raw)


def is_cut(reply: str, interrupted: bool) -> bool:
    """The reply was cut off: interrupted, or heard only in part ("…")."""
    return interrupted or reply.rstrip().endswith(("…", "..."))

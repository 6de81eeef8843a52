"""Sentence splitter: table-driven, whole text and the same text streamed in pieces."""

from __future__ import annotations

import random

import pytest

from avatar_agent.llm.splitter import (
    SentenceSplitter,
    clean_text,
    split_chunks,
    split_sentences,
    split_text,
)
from avatar_agent.types import TextDelta

# (case id, LLM text, expected sentences) -- the first sentence may be cut at a clause
CASES = [
    ("plain", "Hello there. How are you? I am fine!",
     ["Hello there.", "How are you?", "I am fine!"]),
    ("first-clause", "Well, I think that, in general, it works. Yes, it does.",
     ["Well, I think that,", "in general, it works.", "Yes, it does."]),
    ("short-first-clause-kept-whole", "Yes, sure. Go on, then.", ["Yes, sure.", "Go on, then."]),
    ("titles", "Dr. Smith met Mrs. Jones at St. Mary's. They talked.",
     ["Dr. Smith met Mrs. Jones at St. Mary's.", "They talked."]),
    ("decimals-thousands", "Pi is 3.14159 and it costs $1,250.50 today. Nice.",
     ["Pi is 3.14159 and it costs $1,250.50 today.", "Nice."]),
    ("e.g.-i.e.", "Eat fruit e.g. apples or pears i.e. the sweet kind. Done.",  # 10 words: capped
     ["Eat fruit e.g. apples or pears", "i.e. the sweet kind.", "Done."]),
    ("e.g.-i.e.-later", "Fine. Eat fruit e.g. apples or pears i.e. the sweet kind. Done.",
     ["Fine.", "Eat fruit e.g. apples or pears i.e. the sweet kind.", "Done."]),
    ("etc-before-capital", "We need milk, eggs etc. The shop is open.",
     ["We need milk, eggs etc.", "The shop is open."]),
    ("time-abbrev", "Meet me at 5 p.m. tomorrow. See you.", ["Meet me at 5 p.m. tomorrow.", "See you."]),
    ("initials", "J. R. R. Tolkien wrote it. I agree.", ["J. R. R. Tolkien wrote it.", "I agree."]),
    ("ellipsis-pause", "Well... maybe not. Hmm… Okay then.",
     ["Well... maybe not.", "Hmm…", "Okay then."]),
    ("ellipsis-end", "Let me think...", ["Let me think..."]),
    ("quotes", 'He said "hello there." Then he left.', ['He said "hello there."', "Then he left."]),
    ("interrobang", "Really?! That is great.", ["Really?!", "That is great."]),
    ("emojis-dropped", "I love it 😀! See you soon 👋🏽.", ["I love it!", "See you soon."]),
    ("emoji-only-dropped", "Sure. 🎉🎉", ["Sure."]),
    ("bold-italic", "**Sure!** This is *really* _neat_.", ["Sure!", "This is really neat."]),
    ("markdown-list", "Three tips:\n1. Sleep well.\n2. Eat well.\n- Walk daily",
     ["Three tips:", "Sleep well.", "Eat well.", "Walk daily"]),
    ("heading-link", "## Summary\nRead [the docs](http://x.io/a.html) first.",
     ["Summary", "Read the docs first."]),
    ("inline-code", "Call `print` now. Done.", ["Call print now.", "Done."]),
    ("code-block-dropped", "Here it is:\n```python\nx = 1. y = 2\n```\nThat is all.",
     ["Here it is:", "That is all."]),
    ("no-final-punctuation", "Bye for now", ["Bye for now"]),
    ("numbered-sentence-end", "I am number 1. Then came 2.", ["I am number 1.", "Then came 2."]),
    ("whitespace", "  Hello\t  world.   Bye.  ", ["Hello world.", "Bye."]),
    ("quoted-question-mid-sentence", 'She asked "why?" and left. Then what?',
     ['She asked "why?" and left.', "Then what?"]),
    ("quoted-exclamation-end", 'He shouted "stop!" Everyone froze.',
     ['He shouted "stop!"', "Everyone froze."]),
    ("domain-and-time", "Visit example.com at 10:30 today. Bye.",
     ["Visit example.com at 10:30 today.", "Bye."]),
    ("mr-and-mrs", "Mr. and Mrs. Smith are here. Welcome them.",
     ["Mr. and Mrs. Smith are here.", "Welcome them."]),
    ("unknown-abbrev-lowercase", "It is approx. ten metres. Fine.", ["It is approx. ten metres.", "Fine."]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_split_whole_text(text, expected):
    assert split_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_split_streamed_in_random_pieces_matches(text, expected):
    rng = random.Random(len(text))
    for _ in range(5):
        pieces, i = [], 0
        while i < len(text):
            n = rng.randint(1, 6)
            pieces.append(text[i:i + n])
            i += n
        assert split_chunks(pieces) == expected
    assert split_chunks(list(text)) == expected  # one character at a time


def test_first_sentence_is_emitted_before_the_stream_ends():
    sp = SentenceSplitter()
    tokens = ["The", " capital", " of", " France", " is", " Paris", ",", " a", " city",
              " of", " light", ".", " It", " is", " lovely", "."]
    out_at = {}
    for k, tok in enumerate(tokens):
        for s in sp.push(tok):
            out_at[s.text] = k
    rest = [s.text for s in sp.flush()]
    # the first clause goes out as soon as the space after the comma arrives
    assert out_at == {"The capital of France is Paris,": 7, "a city of light.": 12}
    assert rest == ["It is lovely."]


def test_a_long_first_sentence_is_cut_after_a_few_words():
    # no comma and no sentence end in sight: the first TTS call gets ~8 words, not 16
    sp = SentenceSplitter()
    tokens = ("The moon is about three hundred and eighty four thousand kilometres away "
              "from the earth on average. It moves.").split(" ")
    out_at = {}
    for k, tok in enumerate(tokens):
        for s in sp.push(tok if k == 0 else " " + tok):
            out_at[s.text] = k
    rest = [s.text for s in sp.flush()]
    # cut after "eighty" (word 8, a content word) as soon as word 9 begins
    assert out_at == {"The moon is about three hundred and eighty": 8,
                      "four thousand kilometres away from the earth on average.": 17}
    assert rest == ["It moves."]


def test_the_length_cut_backs_off_over_function_words():
    assert split_text("Well I think the answer to all of the questions is yes.") == [
        "Well I think the answer to all", "of the questions is yes."]  # not "... all of"
    # no content word among words 4-8: cut at word 8 anyway
    assert split_text("It is in the of a to and the end.")[0] == "It is in the of a to and"


def test_the_length_cut_can_be_turned_off():
    text = "The moon is about three hundred and eighty four thousand kilometres away."
    assert split_text(text, first_max_words=0) == [text]
    assert split_text(text, first_clause_words=0) == [text]  # first-chunk rules off


def test_period_waits_for_one_more_character_only():
    sp = SentenceSplitter(first_clause_words=0)
    assert sp.push("Dr.") == []
    assert sp.push(" ") == []  # "Dr." or a sentence end? needs the next letter
    assert sp.push("S") == []  # Dr. is a title: never an end
    assert [s.text for s in sp.push("mith left. T")] == ["Dr. Smith left."]
    assert [s.text for s in sp.flush()] == ["T"]


def test_sentence_indices_count_from_zero():
    sp = SentenceSplitter()
    got = [*sp.push("One. Two. Three."), *sp.flush()]
    assert [s.index for s in got] == [0, 1, 2]


def test_long_run_without_punctuation_is_cut():
    text = "and then " * 60
    out = split_text(text, max_chars=100)
    assert len(out) > 3 and all(len(s) <= 100 for s in out)
    assert " ".join(out).split() == text.split()


@pytest.mark.parametrize(("raw", "clean"), [
    ("**Hello** _world_!", "Hello world!"),
    ("# Title", "Title"),
    ("> quoted text", "quoted text"),
    ("snake_case stays", "snake_case stays"),
    ("🎉 Party 🎉.", "Party."),
    ("a<br>b", "a b"),
    ("***", ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


async def test_async_split_sentences():
    async def deltas():
        for tok in ["Hi", " there", "!", " How", " are", " you", "?"]:
            yield TextDelta(tok)

    got = [s async for s in split_sentences(deltas())]
    assert [(s.index, s.text) for s in got] == [(0, "Hi there!"), (1, "How are you?")]

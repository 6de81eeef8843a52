"""The conversation benchmark's scoring (benchmarks/conversation_score.py) and script.

Pure text: no models, no devices. Each check has a case that must pass and one that
must fail, taken from what issue 19 saw the avatar say.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import conversation_score as score  # noqa: E402
from conversation_set import DIALOGUES, Turn, keyed_count  # noqa: E402

SPIDER = (r"\b8\b", r"\beight\b")


def test_key_match_finds_the_answer_in_words_or_digits():
    assert score.key_match("A spider has 8 legs.", SPIDER)
    assert score.key_match("Eight.", SPIDER)
    assert not score.key_match("A spider has four legs.", SPIDER)
    assert not score.key_match("The number of days in a week is 7.", (r"\b56\b", r"\bfifty[- ]six\b"))
    assert score.key_match("Seven times eight is fifty-six.", (r"\b56\b", r"\bfifty[- ]six\b"))
    assert score.key_match("anything", None) is None


def test_exact_key_takes_the_word_alone():
    assert score.key_match("Blue.", ("blue",), exact=True)
    assert score.key_match(" blue! ", ("blue",), exact=True)
    assert not score.key_match("The word is blue.", ("blue",), exact=True)
    assert not score.key_match("Say, \"You're asking about where to live?\"", ("blue",), exact=True)


def test_wer_counts_misheard_words_and_forgives_digits_and_spelling():
    assert score.wer("What is seven times eight?", "What is 7 times 8") == 0.0
    assert score.wer("What is my favourite colour?", "What's my favorite color?") == 0.0
    assert score.wer("Thank you, goodbye!", "Thank you, good-bye.") == 0.0
    assert score.wer("How far away is the moon?", "Our faraway is the moon.") == pytest.approx(0.5)
    assert score.wer("Why is the sea salty?", "Why isn't the seat all this?") > 0.25
    assert score.wer("Hello there", "") == 1.0


def test_span_wer_finds_the_part_of_the_passage_read():
    passage = "It was the best of times, it was the worst of times, it was the age of wisdom."
    w, span = score.span_wer(passage, "it was the worst of times it was the age")
    assert w == 0.0 and span == "it was the worst of times it was the age"
    w, _ = score.span_wer(passage, "it was the worst of crimes")
    assert w == pytest.approx(1 / 6)
    assert score.span_wer(passage, "")[0] == 1.0


def test_copy_at_any_length():
    earlier = ["The history of Rome.", "Paris is the capital of France."]
    assert score.is_copy("The history of Rome.", earlier)
    assert score.is_copy("the history of rome!", earlier)
    assert score.is_copy("The universe.", ["The universe."])
    assert not score.is_copy("The history of Greece.", earlier)
    assert not score.is_copy("", [""])


def test_parrot_repeats_the_user():
    heard = "It was the best of times. It was the worst of times. It was the age of wisdom."
    assert score.is_parrot("The age of wisdom.", heard)
    assert score.is_parrot("Hello.", "Hello.")
    assert not score.is_parrot("Blue.", "Say just the word blue.")
    assert not score.is_parrot("The age of reason.", heard)
    assert not score.is_parrot("", heard)


@pytest.mark.parametrize("reply", ["Nossa mesaura, amo.", "Não, não. Não.", "Je suis un robot.",
                                   "Eu não pode ser Anna, que está no Brasil.", "Das ist nicht gut.",
                                   "L'aujour d'Allemagne, eh?", "Eu esta amigo, Anna."])
def test_drift_catches_other_languages(reply):
    assert score.is_drift(reply)


@pytest.mark.parametrize("reply", ["The history of Rome.", "Paris.", "Fifty-six.", "Lisbon, Portugal, Europe.",
                                   "Seven times eight is fifty-six.", "Your name is Anna.", "Moo!",
                                   "Dubel free, eh?"])
def test_drift_leaves_english_alone(reply):
    assert not score.is_drift(reply)


def test_cut_reply():
    assert score.is_cut("The capital of France is …", interrupted=False)
    assert score.is_cut("The capital.", interrupted=True)
    assert not score.is_cut("The capital of France is Paris.", interrupted=False)


def test_turn_row_from_transcript_lines_counts_a_false_cut():
    import bench_conversation as bench
    from conversation_voices import Clip

    pt = bench.PlannedTurn(Turn("Hello! | My name is Anna and I live in Lisbon.", "statement"),
                           Clip(np.zeros(16000, np.float32), "espeak", "en-us@150",
                                "Hello! My name is Anna and I live in Lisbon."))
    recs = [  # as talk writes them (turn.py _record): the cut "Hello." then the rest
        {"user": "Hello.", "assistant": "Hello! How can", "interrupted": True, "metrics": {"first_frame_s": 0.7}},
        {"user": "My name is Anna and I live in Lisbon.", "assistant": "Nossa mesaura, amo.",
         "interrupted": False, "metrics": {"first_frame_s": 0.8}},
    ]
    row = bench._score_turn(pt, recs, earlier=[])
    assert row["false_cut"] and row["records"] == 2
    assert row["heard"] == "Hello. My name is Anna and I live in Lisbon." and row["wer"] == 0.0
    assert row["drift"] and not row["sensible"] and row["first_audio_s"] == 0.8
    probe = bench.PlannedTurn(Turn("What is my name?", "memory", (r"\banna\b",)),
                              Clip(np.zeros(16000, np.float32), "piper", "joe", "What is my name?"))
    drifted = bench._score_turn(probe, [{"user": "What is my name?", "assistant": "Eu não pode ser Anna."}], [])
    assert drifted["right"] is False  # the name is there, the language is not
    fine = bench._score_turn(probe, [{"user": "What is my name?", "assistant": "Your name is Anna."}], [])
    assert fine["right"] is True and not fine["false_cut"]
    rejoined = bench._score_turn(pt, [{**recs[0], "merged": True},
                                      {**recs[1], "user": "Hello. My name is Anna and I live in Lisbon."}], [])
    assert rejoined["split"] and not rejoined["false_cut"] and rejoined["wer"] == 0.0
    total = bench.summarise([row, drifted, fine])
    assert (total["memory_probes"], total["memory_right"], total["false_cuts"], total["drifts"]) == (2, 1, 1, 2)


def test_the_script_has_keyed_questions_in_short_dialogues():
    assert keyed_count() >= 48
    kinds = {t.kind for d in DIALOGUES for t in d.turns}
    assert {"fact", "arith", "yesno", "instruct", "followup", "memory", "chat", "statement"} <= kinds
    assert sum("|" in t.text for d in DIALOGUES for t in d.turns) >= 3  # pauses inside turns
    for d in DIALOGUES:
        assert 6 <= len(d.turns) <= 10, d.name
        for k in (t.key or () for t in d.turns):
            for rx in k:
                re.compile(rx)
        said = ""
        for i, t in enumerate(d.turns):
            if t.kind == "memory":  # the fact was given at most 6 turns before (history_turns: 6)
                facts = [j for j, u in enumerate(d.turns[:i]) if u.kind == "statement"]
                assert facts and i - facts[0] <= 6, (d.name, t.text)
                assert any(re.search(rx, said.lower()) for rx in t.key), (d.name, t.text)
            said += " " + t.script

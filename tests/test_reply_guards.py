"""Replies worth hearing (issue 19 item 3): a copy of an earlier answer at any length,
a reply in another language and an empty reply are asked again, never spoken; when no
reply worth hearing comes, the user is asked to say it again, and that apology stays
out of the history.

The LLMs here are FAKES (scripted token streams, named Fake*), standing in for the
failure modes SmolLM2-135M showed in ``talk`` ("The history of Rome." three times in a
row; "Nossa mesaura, amo." and every later reply in Portuguese after "I live in
Lisbon"; empty replies). The language check is the real one (py3langid), the TTS and
lip-sync are the real embedded ones, and the turns run through the real ``run_turn``
(history, JSONL transcript)."""

from __future__ import annotations

import json

import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.llm.base import LLM
from avatar_agent.llm.guards import LanguageCheck
from avatar_agent.pipeline import SAY_AGAIN, Pipeline
from avatar_agent.transcript import TranscriptLog
from avatar_agent.turn import TurnOutput, run_turn
from avatar_agent.types import TextDelta

from .test_ramble import guard_text


@pytest.fixture(scope="module")
def english() -> LanguageCheck:
    check = LanguageCheck("en")
    check.load()
    return check


# ---------------------------------------------------------------- the guard alone
@pytest.mark.parametrize(("reply", "previous"), [
    ("The history of Rome.", ["The history of Rome."]),         # 4 words: under the 6-word n-gram
    ("the history of Rome", ["The history of Rome."]),           # normalised: case, punctuation
    ("The universe.", ["The universe."]),
    ("Yes.", ["Yes."]),                                          # any length
    ("You can't make up your coffee. It is late.", ["Hi. You can't make up your coffee."]),
])
def test_a_short_copy_of_an_earlier_answer_is_stopped_before_a_word_is_passed_on(reply, previous):
    assert guard_text(reply, previous=previous) == ("", "copy")


@pytest.mark.parametrize(("reply", "previous"), [
    ("The history of Rome is long and rich.", ["The history of Rome."]),
    ("Yes, it is.", ["Yes."]),
    ("Hello! How can I help you today?", ["Hello!"]),            # a greeting again, then something new
    ("Rome.", ["The history of Rome."]),
])
def test_a_reply_that_only_begins_like_an_earlier_one_is_passed_on_whole(reply, previous):
    assert guard_text(reply, previous=previous) == (reply, None)


@pytest.mark.parametrize("reply", ["", " ", "...", " … ", "\n"])
def test_a_reply_without_a_word_is_empty(reply):
    assert guard_text(reply) == ("", "empty")


@pytest.mark.parametrize("reply", ["Não, não. Não.", "Olá, Anna! Prazer em conhecê-la.", "Eu sou a Ava.",
                                   "Bonjour, je m'appelle Ava.", "Ich bin ein Roboter.", "Hola, ¿cómo estás?"])
def test_a_reply_in_another_language_is_stopped_before_a_word_is_passed_on(reply, english):
    assert guard_text(reply, foreign=english.foreign) == ("", "language")


# English replies a small model gives, short ones above all: the check must not cry wolf
ENGLISH = ["Paris.", "Yes.", "No.", "OK.", "Fifty-six.", "56.", "Lisbon, Portugal.", "Tokyo.", "The Nile.",
           "Your name is Anna.", "You live in Lisbon.", "A cow says moo.", "Moo is a bird.",
           "Buenos Aires is in Argentina.", "Mount Everest.", "Hello Anna, nice to meet you!",
           "Seven times eight is fifty-six.", "A spider has eight legs.", "There are 24 hours in a day.",
           "Bon appetit!", "Sure, I can help with that.", "The capital of France is Paris."]


def test_english_replies_are_not_taken_for_another_language(english):
    wrong = [r for r in ENGLISH if guard_text(r, foreign=english.foreign)[1] is not None]
    assert not wrong


# ---------------------------------------------------------------- through the turn
class FakeScriptedLLM(LLM):
    """FAKE: ``script(messages)`` gives the reply text, streamed word by word; every call's
    message count is recorded (2 = system + question: asked without the history)."""

    name = "fake-scripted"

    def __init__(self, script) -> None:
        self.script = script
        self.calls: list[int] = []

    async def _stream_impl(self, messages, *, max_tokens, temperature):
        self.calls.append(len(messages))
        text = self.script(messages)
        for k, word in enumerate(text.split(" ")):
            yield TextDelta(word if k == 0 else " " + word)


class _Collect(TurnOutput):
    def __init__(self) -> None:
        self.chunks: list = []

    def emit(self, chunk):
        self.chunks.append(chunk)


@pytest.fixture()
async def make(tmp_path, store, face_bgr):
    made: list[Pipeline] = []

    async def build(script):
        cfg = Config()
        llm = FakeScriptedLLM(script)
        pipe = Pipeline(cfg=cfg, stt=registry.create("stt", "faster_whisper", cfg=cfg, store=store),
                        llm=llm, tts=registry.create("tts", "piper", cfg=cfg, store=store),
                        engine=registry.create("lipsync", "viseme", cfg=cfg, store=store),
                        transcript=TranscriptLog(tmp_path / "t.jsonl"))
        made.append(pipe)
        return pipe, llm, await pipe.prepare_avatar(face_bgr)

    yield build
    for pipe in made:
        await pipe.aclose()


async def turn(pipe, state, text: str):
    out = _Collect()
    result = await run_turn(pipe, state, out, text=text)
    return result, out


def _history_answers(messages) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


async def test_a_short_copy_of_the_previous_answer_is_asked_again_without_the_history(make):
    def script(messages):  # SmolLM2's habit: the previous answer again, if there is one
        answers = _history_answers(messages)
        if answers:
            return answers[-1]
        return {"Tell me about Rome.": "The history of Rome.",
                "What is the universe?": "Everything that exists."}.get(messages[-1]["content"], "I am not sure.")

    pipe, llm, state = await make(script)
    first, _ = await turn(pipe, state, "Tell me about Rome.")
    second, out = await turn(pipe, state, "What is the universe?")
    assert first.reply_text == "The history of Rome."
    assert second.reply_text == "Everything that exists.", second.reply_text  # not Rome again
    assert "Rome" not in " ".join(c.text for c in out.chunks)  # not a word of the copy was spoken
    assert llm.calls == [2, 4, 2]  # first turn; second with history (a copy); again without
    assert second.metrics.guards == ["copy"]
    assert pipe.history.answers() == ["The history of Rome.", "Everything that exists."]


def _drifter(messages):
    """Portuguese once Lisbon is in the history; English without the history."""
    if any("Lisbon" in m["content"] for m in messages[1:-1]):
        return "Olá, Anna! Prazer em conhecê-la. Você mora em Lisboa."
    if "Lisbon" in messages[-1]["content"]:
        return "Nice to meet you, Anna."
    return "I do not know your name yet."


async def test_a_reply_that_drifts_into_another_language_is_asked_again_and_the_drift_never_spoken(make):
    pipe, llm, state = await make(_drifter)
    await turn(pipe, state, "My name is Anna, and I live in Lisbon.")
    result, out = await turn(pipe, state, "What is my name?")
    spoken = " ".join(c.text for c in out.chunks if c.text)
    assert spoken == result.reply_text == "I do not know your name yet."
    assert "Olá" not in spoken
    assert llm.calls == [2, 4, 2]
    assert result.metrics.guards == ["language"]


async def test_a_reply_still_in_another_language_asks_the_user_to_say_it_again(make):
    pipe, llm, state = await make(lambda messages: "Não, não. Não.")
    result, out = await turn(pipe, state, "Hello there.")
    assert result.reply_text == SAY_AGAIN
    assert llm.calls == [2, 2]  # the question, then again without the history (none yet)
    assert result.metrics.guards == ["language", "language again"]
    assert len(pipe.history) == 0  # the apology is not an answer to learn from


@pytest.mark.parametrize("empty", ["", "...", "  …"])
async def test_an_empty_reply_is_never_spoken_nor_stored(make, empty, tmp_path):
    answers = iter([empty, "Paris is the capital of France."])
    pipe, llm, state = await make(lambda messages: next(answers))
    result, out = await turn(pipe, state, "What is the capital of France?")
    assert result.reply_text == "Paris is the capital of France."  # asked again, answered
    assert all("..." not in c.text and "…" not in c.text for c in out.chunks)
    assert llm.calls == [2, 2]
    # always empty: the user is asked again, nothing empty reaches the history
    pipe2, llm2, state2 = await make(lambda messages: empty)
    result2, out2 = await turn(pipe2, state2, "What is the capital of France?")
    assert result2.reply_text == SAY_AGAIN
    assert len(pipe2.history) == 0
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [x["user"] for x in lines][-1] == "What is the capital of France?"  # what was said is kept
    assert lines[-1]["assistant"] == SAY_AGAIN and lines[-1]["metrics"]["guards"] == ["empty", "empty again"]

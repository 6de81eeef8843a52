"""A reply that never rambles: loops and copies are cut, long replies end, and the
avatar still starts speaking early. The LLMs here are FAKES (scripted token streams,
named Fake*), standing in for a small model's failure modes seen in ``talk``
("the front of the front of ..." until max_tokens; a later turn copying the previous
answer); TTS and lip-sync are the real embedded ones."""

from __future__ import annotations

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.llm.base import LLM, RambleGuard
from avatar_agent.pipeline import Pipeline
from avatar_agent.transcript import TranscriptLog
from avatar_agent.types import TextDelta


def guard_text(text: str, **kw) -> tuple[str, str | None]:
    g = RambleGuard(**kw)
    out = []
    for k, tok in enumerate(text.split(" ")):
        out.append(g.push(tok if k == 0 else " " + tok))
        if g.done:
            break
    out.append(g.flush())
    return "".join(out), g.stopped


def test_guard_passes_a_normal_reply_unchanged():
    text = "Paris is the capital of France. It is a lovely city on the river Seine."
    assert guard_text(text) == (text, None)


def test_guard_cuts_a_loop_before_the_repeat():
    text = "The front of the front of the front of the front of the front of the"
    out, why = guard_text(text)
    assert why == "loop"
    assert out.split() == ["The", "front", "of"]  # "the front of the" never said twice


def test_guard_cuts_a_copy_of_the_previous_answer():
    prev = ["No, it's not going to be a walk tomorrow, it will be sunny."]
    out, why = guard_text("No, it's not going to be a walk tomorrow, it will be sunny.", previous=prev)
    assert (out, why) == ("", "copy")  # held back: nothing of the copy was passed on
    # a new answer sharing a few words with the old one is not a copy
    text = "Yes, it is going to rain tomorrow in the afternoon."
    assert guard_text(text, previous=prev) == (text, None)


def test_guard_ends_a_long_reply_at_a_sentence_end():
    text = " ".join(f"w{i}" for i in range(22)) + ". More words follow here. And more."
    out, why = guard_text(text, max_words=20)
    assert why == "length" and out.endswith("w21.") and "More" not in out
    out, why = guard_text(" ".join(f"w{i}" for i in range(100)), max_words=20)
    assert why == "length" and len(out.split()) == 25  # no sentence end: hard cut at 1.25x


class FakeLoopingLLM(LLM):
    """FAKE: streams a loop with no sentence end, token by token, until max_tokens."""

    name = "fake-looping"

    def __init__(self, token_s: float = 0.03) -> None:
        self.token_s = token_s
        self.tokens_sent = 0

    async def _stream_impl(self, messages, *, max_tokens, temperature):
        import asyncio

        tokens = ["The"] + [[" front", " of", " the"][k % 3] for k in range(max_tokens - 1)]
        for token in tokens:  # "The front of the front of the ..." with no sentence end
            await asyncio.sleep(self.token_s)
            self.tokens_sent += 1
            yield TextDelta(token)


class FakeCopyingLLM(LLM):
    """FAKE: answers the first turn, then copies that answer unless the history is gone."""

    name = "fake-copying"

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def _stream_impl(self, messages, *, max_tokens, temperature):
        self.calls.append(len(messages))
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        if answers:  # the small model's habit: the previous answer again
            text = answers[-1]
        elif len(self.calls) > 1:  # asked again without the history
            text = "Sorry, I do not know what the weather will be like."
        else:
            text = "It will be sunny and warm all day tomorrow."
        for k, word in enumerate(text.split(" ")):
            yield TextDelta(word if k == 0 else " " + word)


def make_pipeline(tmp_path, store, llm) -> Pipeline:
    cfg = Config()
    return Pipeline(cfg=cfg, stt=registry.create("stt", "faster_whisper", cfg=cfg, store=store),
                    llm=llm, tts=registry.create("tts", "piper", cfg=cfg, store=store),
                    engine=registry.create("lipsync", "viseme", cfg=cfg, store=store),
                    transcript=TranscriptLog(tmp_path / "t.jsonl"))


async def test_a_looping_llm_still_speaks_early_and_the_reply_ends(tmp_path, store, face_bgr):
    llm = FakeLoopingLLM()
    pipe = make_pipeline(tmp_path, store, llm)
    state = await pipe.prepare_avatar(face_bgr)
    reply: list[str] = []
    chunks: list = []
    await pipe.respond("Where is the front door?", state, chunks.append, reply=reply)
    assert chunks, "the avatar said nothing"
    text = " ".join(reply).lower()
    assert text.count("the front of") <= 1, text  # the loop was cut, never spoken twice
    # generation stopped at the loop, far before max_tokens (96)
    assert llm.tokens_sent < 12, llm.tokens_sent
    await pipe.aclose()


async def test_a_reply_that_copies_the_previous_answer_is_asked_again(tmp_path, store, face_bgr):
    llm = FakeCopyingLLM()
    pipe = make_pipeline(tmp_path, store, llm)
    state = await pipe.prepare_avatar(face_bgr)
    first: list[str] = []
    await pipe.respond("Will it be sunny tomorrow?", state, lambda chunk: None, reply=first)
    pipe.history.add("Will it be sunny tomorrow?", " ".join(first))
    second: list[str] = []
    await pipe.respond("And the day after?", state, lambda chunk: None, reply=second)
    assert " ".join(first) == "It will be sunny and warm all day tomorrow."
    assert " ".join(second) != " ".join(first)
    assert "sunny and warm" not in " ".join(second)
    assert llm.calls == [2, 4, 2]  # first turn; second with history (a copy); again without
    await pipe.aclose()


class FakeSameAnswerLLM(LLM):
    """FAKE: the same answer every time, with or without the history."""

    name = "fake-same"

    async def _stream_impl(self, messages, *, max_tokens, temperature):
        for k, word in enumerate("The moon is about four billion years old.".split(" ")):
            yield TextDelta(word if k == 0 else " " + word)


async def test_a_question_asked_again_gets_its_answer_again(tmp_path, store, face_bgr):
    pipe = make_pipeline(tmp_path, store, FakeSameAnswerLLM())
    state = await pipe.prepare_avatar(face_bgr)
    first: list[str] = []
    await pipe.respond("How old is the moon?", state, lambda chunk: None, reply=first)
    pipe.history.add("How old is the moon?", " ".join(first))
    again: list[str] = []
    await pipe.respond("How old is the moon?", state, lambda chunk: None, reply=again)
    # a copy of the previous answer is asked for afresh, and the fresh answer stands
    assert " ".join(again) == " ".join(first) == "The moon is about four billion years old."
    await pipe.aclose()

"""The reply's first words come early on two cores: the LLM reads the history between
turns (prefill) and waits while the TTS makes the first audio. Real SmolLM2 (llama.cpp),
Piper and the viseme engine; the spies below only watch the real calls."""

from __future__ import annotations

import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.pipeline import Pipeline
from avatar_agent.transcript import TranscriptLog

pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra 'local') is not installed")


@pytest.fixture
def pipe(tmp_path, store):
    cfg = Config()
    return Pipeline(cfg=cfg, stt=registry.create("stt", cfg.stt.provider, cfg=cfg, store=store),
                    llm=registry.create("llm", "llama_cpp", cfg=cfg, store=store),
                    tts=registry.create("tts", "piper", cfg=cfg, store=store),
                    engine=registry.create("lipsync", "viseme", cfg=cfg, store=store),
                    transcript=TranscriptLog(tmp_path / "t.jsonl"))


async def test_the_first_audio_is_made_while_the_llm_waits(pipe, face_bgr, monkeypatch):
    pipe.llm.load()
    pipe.tts.load()
    state = await pipe.prepare_avatar(face_bgr)
    real = pipe.tts.synthesize
    generating: list[bool] = []  # per TTS call: could the LLM go on while it ran?

    def watched(text):
        generating.append(pipe.llm._go.is_set())
        return real(text)

    monkeypatch.setattr(pipe.tts, "synthesize", watched)
    reply: list[str] = []
    await pipe.respond("Tell me about the history of Rome, in a few sentences.", state,
                       lambda chunk: None, reply=reply)
    assert reply and len(generating) >= 2, (reply, generating)
    assert generating[0] is False  # the first clause had the CPU to itself
    assert all(generating[1:])  # later sentences are made while the LLM writes on
    assert pipe.llm._go.is_set()  # and nothing stays paused after the reply


async def test_a_remembered_turn_is_read_before_the_next_question(pipe, face_bgr, monkeypatch):
    pipe.llm.load()
    state = await pipe.prepare_avatar(face_bgr)
    for n in range(3):
        pipe.history.add(f"What is fact {n}?", f"Fact {n} is that the sea is deep and wide.")
    pipe.llm._llama.reset()  # as after the window dropped its oldest turns
    counts: list[int] = []
    real = pipe.llm._llama.eval
    monkeypatch.setattr(pipe.llm._llama, "eval", lambda tokens: (counts.append(len(tokens)), real(tokens))[1])
    pipe.remember("Where is Paris?", "Paris is in France.")
    await pipe.llm._worker.run(lambda: None)  # queued behind the prefill
    prefilled = sum(counts)
    assert prefilled > 100, counts  # the system prompt and four turns, read while idle
    del counts[:]
    await pipe.respond("And Rome?", state, lambda chunk: None)
    assert counts[0] < 20, counts  # the reply read only its question

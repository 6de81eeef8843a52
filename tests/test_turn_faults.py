"""Faults inside a live conversation: each is survived, and nothing is lost.

The conversation is the real one (``live.Conversation`` running ``turn.run_turn``) with
real STT, LLM, TTS and lip-sync, on the named fake devices of ``tests/live_fakes.py``. The
cloud LLM is a real HTTP server on 127.0.0.1 speaking the OpenAI API (``openai_server``)
that can die mid-stream, answer 429 storms or stall. The hanging TTS is the real Piper
voice whose worker thread is blocked on demand (a named fake fault: a stuck native call).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.pipeline import COULD_NOT_ANSWER, Pipeline
from avatar_agent.tts.piper import PiperTTS

from .live_fakes import attach_speaker, session, until
from .openai_server import Fault, OpenAIServer

pytestmark = pytest.mark.slow
KEY_ENV = "AVATAR_TEST_FAULTS_KEY"


@pytest.fixture(scope="module")
def face():
    import cv2

    return cv2.imread("examples/assets/face.png")


class HangingPiper(PiperTTS):
    """Fake fault on the real Piper voice: :meth:`hang` makes the next synthesis block its
    worker thread (as a stuck native call would) until :attr:`release` is set."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.release = threading.Event()
        self._hang = False

    def hang(self) -> None:
        self._hang = True

    async def _synthesize_impl(self, text):
        if self._hang:
            self._hang = False
            await self._worker.run(self.release.wait)
        async for chunk in super()._synthesize_impl(text):
            yield chunk


def _cfg(tmp_path) -> Config:
    cfg = Config()
    cfg.transcript.path = tmp_path / "t.jsonl"
    cfg.llm.max_tokens = 32  # short replies: the faults are the point, and loaded CPUs are slow
    return cfg


def _heard(record) -> str:
    return " ".join(p.chunk.text for p in record.played if p.chunk.text)


def _lines(cfg: Config) -> list[dict]:
    return [json.loads(x) for x in cfg.transcript.path.read_text().splitlines()]


async def _ask(conv, mic, question, n: int, limit_s: float = 120) -> object:
    """Speak ``question`` once the avatar listens; returns the n-th turn record (1-based)."""
    await until(lambda: conv.state == "listening", limit_s, "listening")
    await asyncio.sleep(0.4)
    mic.say(question)
    await until(lambda: len(conv.turns) >= n, limit_s, f"turn {n}")
    return conv.turns[n - 1]


async def _end(conv, task, stream, presenter) -> None:
    conv.quit()
    await asyncio.wait_for(task, 10)
    conv.playback._stream.abort()
    stream.abort()
    presenter.stop()
    await conv.pipeline.aclose()


async def test_a_hanging_tts_gives_the_apology_and_the_next_turn_is_answered(tmp_path, store, face, speak):
    cfg = _cfg(tmp_path)
    cfg.timeouts.tts_s = 2.0
    tts = HangingPiper(cfg=cfg, store=store)
    pipeline = Pipeline(cfg=cfg, stt=registry.create("stt", cfg.stt.provider, cfg=cfg, store=store),
                        llm=registry.create("llm", cfg.llm.provider, cfg=cfg, store=store), tts=tts,
                        engine=registry.create("lipsync", "viseme", cfg=cfg, store=store))
    first, second = speak("What is the capital of France?"), speak("What colour is the sky?")
    conv, mic, stream, task, presenter = await session(cfg, store, face, pipeline, warm=True)
    try:
        tts.hang()
        t0 = time.monotonic()
        hung = await _ask(conv, mic, first, 1)
        assert hung.error and "tts gave nothing for 2 s" in hung.error, hung.error
        # the apology was prepared at warm-up: heard although the TTS thread is stuck
        assert _heard(hung) == COULD_NOT_ANSWER
        assert time.monotonic() - t0 < 30
        answered = await _ask(conv, mic, second, 2)  # a fresh TTS thread serves it
        assert answered.error is None and _heard(answered)
        assert COULD_NOT_ANSWER not in _heard(answered)
        assert not task.done(), "the conversation ended"
        lines = _lines(cfg)
        assert [bool(x["error"]) for x in lines] == [True, False]
        assert "france" in lines[0]["user"].lower() and "sky" in lines[1]["user"].lower()
    finally:
        tts.release.set()
        await _end(conv, task, stream, presenter)


async def test_llm_server_dies_mid_stream_storms_and_stalls_then_answers(tmp_path, store, face, speak,
                                                                         monkeypatch):
    with OpenAIServer() as server:
        monkeypatch.setenv(KEY_ENV, server.api_key)
        cfg = _cfg(tmp_path)
        cfg.llm.provider = "openai"
        cfg.llm.openai.base_url = server.base_url
        cfg.llm.openai.api_key_env = KEY_ENV
        cfg.llm.openai.max_retries = 2
        cfg.timeouts.llm_first_s = 2.0
        server.reply_tokens = ["Paris", " is", " the", " capital", ".", " It", " is", " big", "."]
        question = speak("What is the capital of France?")
        conv, mic, stream, task, presenter = await session(cfg, store, face, warm=True)
        try:
            # 1. the server dies after the first sentence: that sentence, then the apology
            server.die_after_tokens = 6
            died = await _ask(conv, mic, question, 1)
            assert died.error and "dropped the connection after 6 tokens" in died.error, died.error
            assert _heard(died).startswith("Paris is the capital.")
            assert _heard(died).endswith(COULD_NOT_ANSWER)
            # 2. a 429 storm longer than the retries: bounded, then the apology
            calls = server.count("/v1/chat/completions")
            server.fail_next("/v1/chat/completions",
                             *[Fault(429, headers={"retry-after-ms": "50"})] * 3)
            stormed = await _ask(conv, mic, question, 2)
            assert stormed.error and _heard(stormed) == COULD_NOT_ANSWER
            assert server.count("/v1/chat/completions") - calls == 3  # 1 + max_retries
            # 3. a 5xx that clears within the retries: answered
            server.fail_next("/v1/chat/completions", Fault(503, headers={"retry-after-ms": "50"}))
            retried = await _ask(conv, mic, question, 3)
            assert retried.error is None and _heard(retried) == "Paris is the capital. It is big."
            # 4. no first token within timeouts.llm_first_s: the apology, without waiting longer
            server.fail_next("/v1/chat/completions", Fault(200, delay_s=6.0))
            stalled = await _ask(conv, mic, question, 4)
            assert stalled.error and "llm gave nothing for 2 s" in stalled.error
            assert stalled.metrics.first_token_s is None
            assert _heard(stalled) == COULD_NOT_ANSWER
            # 5. and the conversation goes on
            server.reply_tokens = ["It", " is", " Paris", ",", " on", " the", " Seine", "."]
            last = await _ask(conv, mic, question, 5, limit_s=60)
            assert last.error is None and _heard(last) == "It is Paris, on the Seine."
            assert not task.done()
            assert [bool(x["error"]) for x in _lines(cfg)] == [True, True, False, True, False]
        finally:
            await _end(conv, task, stream, presenter)


async def test_mic_and_speaker_lost_mid_reply_are_reopened(tmp_path, store, face, speak):
    cfg = _cfg(tmp_path)
    question = speak("Tell me about the moon.")
    conv, mic, stream, task, presenter = await session(cfg, store, face)
    pb = conv.playback
    reopened: list = []
    pb.start = lambda: reopened.append(attach_speaker(pb))  # the fake device comes back
    try:
        # the mic goes away while the avatar speaks: reopened, the reply plays on
        await asyncio.sleep(0.4)
        mic.say(question)
        await until(lambda: conv.state == "speaking", 120, "speaking")
        mic.lose()
        await until(lambda: conv.turns, 120, "the first turn")
        first = conv.turns[0]
        assert mic.starts == 1 and first.error is None and not first.interrupted
        # the speaker goes away mid-reply: it is reopened, the turn records what was
        # heard before the loss, and the next question is answered on the new speaker
        await until(lambda: conv.state == "listening", 60, "listening")
        await asyncio.sleep(0.4)
        mic.say(question)
        await until(lambda: conv.state == "speaking", 120, "speaking again")
        await asyncio.sleep(0.6)
        conv.playback._stream.abort()
        await until(lambda: len(conv.turns) >= 2, 120, "the cut turn")
        second = conv.turns[1]
        assert len(reopened) == 1, "the speaker was not reopened"
        full = " ".join(p.chunk.text for p in second.played)
        assert len(conv.pipeline.transcript.read()[-1]["assistant"]) < len(full)
        third = await _ask(conv, mic, question, 3)
        assert third.error is None and reopened[0].loud_times(), "nothing played on the new speaker"
        assert not task.done()
    finally:
        await _end(conv, task, stream, presenter)

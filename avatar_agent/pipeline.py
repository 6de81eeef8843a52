"""The orchestrator: one conversational turn as a chain of streaming stages.

    Utterance ─STT→ Transcript ─LLM→ TextDelta* ─splitter→ Sentence* ─TTS→ SpeechChunk*
              ─lip-sync→ FrameChunk*  (yielded in order, first one while the LLM still writes)

Stages are asyncio tasks joined by bounded queues; blocking model calls run in each
provider's single-worker executor (see ``workers.py``). Cancelling the consumer of
:meth:`Pipeline.respond` cancels the whole turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import registry
from .audio.io import rms_db
from .config import Config
from .lipsync.base import LipSyncEngine
from .llm.base import LLM, ChatHistory, RambleGuard
from .llm.splitter import split_sentences, split_text
from .models import ModelStore
from .stt.base import STT, STTStream
from .transcript import TranscriptLog
from .tts.base import TTS
from .types import FrameChunk, Sentence, SpeechChunk, TextDelta, Transcript, TurnMetrics, Utterance
from .workers import Worker

log = logging.getLogger(__name__)

# Below this level (dBFS) an utterance is treated as silence without running STT.
SILENCE_DB = -50.0
HEARD_NOTHING = "Sorry, I didn't hear anything. Could you say that again?"
COULD_NOT_ANSWER = "Sorry, I could not answer that just now. Please try again."
_QUEUE = 4  # bounded queues between stages: back-pressure, little latency


@dataclass
class TurnResult:
    """What one turn produced: the user's words, the reply and its timings."""

    transcript: Transcript
    reply_text: str = ""
    heard_nothing: bool = False
    failed: str | None = None
    metrics: TurnMetrics = field(default_factory=TurnMetrics)

    def summary(self) -> str:
        """Human-readable lines for the CLI."""
        m = self.metrics
        stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in m.stages.items())
        lines = [f"you said: {self.transcript.text or '(nothing)'}",
                 f"avatar:   {self.reply_text}",
                 f"timings:  {stages}"]
        if m.first_frame_s is not None:
            lines.append(f"first frame after {m.first_frame_s * 1000:.0f} ms; total {m.total_s or 0:.2f} s")
        return "\n".join(lines)


class Pipeline:
    """STT, LLM, TTS and lip-sync assembled for conversational turns."""

    def __init__(self, *, cfg: Config, stt: STT, llm: LLM, tts: TTS, engine: LipSyncEngine,
                 transcript: TranscriptLog | None = None) -> None:
        self.cfg = cfg
        self.stt = stt                      # speech -> text, one utterance at a time
        self.llm = llm                      # text -> streamed reply deltas
        self.tts = tts                      # sentence -> speech chunks
        self.engine = engine                # speech chunk -> lip-synced frames
        self.history = ChatHistory(cfg.llm.system_prompt, cfg.llm.history_turns)
        self.transcript = transcript or TranscriptLog(cfg.transcript.path)
        self._lipsync = Worker("lipsync")   # engine math off the loop, one thread

    @classmethod
    def from_config(cls, cfg: Config, store: ModelStore | None = None) -> Pipeline:
        """Build every provider named in ``cfg`` (lazy imports; nothing loaded yet)."""
        store = store or ModelStore()
        return cls(
            cfg=cfg,
            stt=registry.create("stt", cfg.stt.provider, cfg=cfg, store=store),
            llm=registry.create("llm", cfg.llm.provider, cfg=cfg, store=store),
            tts=registry.create("tts", cfg.tts.provider, cfg=cfg, store=store),
            engine=registry.create("lipsync", cfg.lipsync.engine, cfg=cfg, store=store),
        )

    def load(self) -> dict[str, float]:
        """Load all models now (blocking); returns load seconds per stage."""
        times = {}
        for name, part in (("stt", self.stt), ("llm", self.llm), ("tts", self.tts)):
            t0 = time.perf_counter()
            part.load()
            times[name] = time.perf_counter() - t0
        return times

    async def aload(self) -> dict[str, float]:
        """:meth:`load` off the loop, on a daemon thread: cancelling (Ctrl-C) returns at
        once and never waits for a model that is still loading."""
        loader = Worker("load")
        try:
            return await loader.run(self.load)
        finally:
            loader.close()

    async def warm_up(self, state: Any) -> float:
        """Run every stage once on throw-away input so the first real turn is not slower.

        First calls pay one-off costs (ONNX/CTranslate2 kernel setup, the LLM's KV cache
        of the system prompt, which later prompts share as a prefix). Returns seconds.
        """
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(8000) * 0.01).astype(np.float32)
        await self.stt.transcribe(Utterance(pcm=noise, sample_rate=16000))
        if getattr(self.stt, "streaming", False):  # the streaming path has its own first-call costs
            stream = self.stt.open_stream(16000)
            stream.feed(noise)
            await stream.result()
            await stream.aclose()
        await self.llm.complete(self.history.messages("Hello."), max_tokens=1, temperature=0.0)
        async for chunk in self.tts.synthesize("Hello."):
            await self._lipsync.run(self.engine.render_chunk, state, chunk.pcm, chunk.sample_rate)
        self.engine.reset(state)
        return time.perf_counter() - t0

    def tts_rate(self) -> int:
        """Sample rate of the TTS voice (for writers and playback)."""
        return int(getattr(self.tts, "sample_rate", 22050))

    async def prepare_avatar(self, image: np.ndarray) -> Any:
        """Run the engine's one-time analysis of the avatar (face, landmarks)."""
        return await self._lipsync.run(self.engine.prepare, image)

    # ---------------------------------------------------------------- one turn
    async def hear(self, utt: Utterance, metrics: TurnMetrics | None = None, *,
                   stream: tuple[STTStream, Hashable] | None = None) -> Transcript:
        """Transcribe an utterance; near-silence gives an empty transcript without STT.

        ``stream``: the :class:`STTStream` that was fed ``utt`` while it was spoken and the
        key of its prefetch (``talk``, see :class:`~avatar_agent.stt.feeder.SpeechFeeder`);
        without it the utterance is transcribed one-shot.
        """
        if rms_db(utt.pcm) < SILENCE_DB:
            return Transcript(text="", audio_s=utt.duration_s)
        t0 = time.perf_counter()
        if stream is not None:
            result = await stream[0].result(stream[1])
        else:
            result = await self.stt.transcribe(utt)
        if metrics is not None:
            metrics.stages["stt"] = time.perf_counter() - t0
        return result

    async def respond(self, user_text: str, state: Any, *, t0: float | None = None,
                      metrics: TurnMetrics | None = None, reply: list[str] | None = None,
                      ) -> AsyncIterator[FrameChunk]:
        """Stream the avatar's answer to ``user_text`` as lip-synced chunks, in order.

        ``t0``: the perf-counter origin of the metrics (end of user speech);
        ``reply``: filled with the spoken sentences as they are produced.
        """
        t0 = time.perf_counter() if t0 is None else t0
        metrics = metrics if metrics is not None else TurnMetrics()
        reply = reply if reply is not None else []
        messages = self.history.messages(user_text)
        sentences: asyncio.Queue[Sentence | None] = asyncio.Queue(_QUEUE)
        speech: asyncio.Queue[SpeechChunk | None] = asyncio.Queue(_QUEUE)

        async def think() -> None:
            async def deltas():
                # a looping, copying or endless reply is cut (RambleGuard); a reply that
                # starts as a copy of an earlier answer is asked again without the history
                c = self.cfg.llm
                fresh = [messages[0], messages[-1]]
                for attempt in (messages, fresh):
                    guard = RambleGuard(loop_ngram=c.loop_ngram, copy_ngram=c.copy_ngram,
                                        max_words=c.max_spoken_words,
                                        previous=self.history.answers()[-2:])
                    said = False
                    async with contextlib.aclosing(self.llm.stream(
                            attempt, max_tokens=c.max_tokens, temperature=c.temperature)) as stream:
                        async for delta in stream:
                            if metrics.first_token_s is None:
                                metrics.first_token_s = time.perf_counter() - t0
                            if text := guard.push(delta.text):
                                said = True
                                yield TextDelta(text)
                            if guard.done:
                                break
                    if text := guard.flush():
                        said = True
                        yield TextDelta(text)
                    if guard.stopped:
                        log.info("reply cut: %s", guard.stopped)
                    if guard.stopped != "copy" or said or attempt is fresh:
                        return

            async for sentence in split_sentences(deltas()):
                if metrics.first_sentence_s is None:
                    metrics.first_sentence_s = time.perf_counter() - t0
                await sentences.put(sentence)
            await sentences.put(None)

        async def speak() -> None:
            while (sentence := await sentences.get()) is not None:
                first = True
                async for chunk in self.tts.synthesize(sentence.text):
                    if metrics.first_audio_s is None:
                        metrics.first_audio_s = time.perf_counter() - t0
                    # a sentence's text rides on its first chunk only (streamed TTS sends
                    # several), so the reply and the history hold each sentence once
                    text = (chunk.text or sentence.text) if first else ""
                    first = False
                    await speech.put(SpeechChunk(chunk.pcm, chunk.sample_rate, text, chunk.phonemes))
            await speech.put(None)

        tasks = [asyncio.create_task(think(), name="turn-think"),
                 asyncio.create_task(speak(), name="turn-speak")]
        pending = set(tasks)
        try:
            while True:
                getter = asyncio.ensure_future(speech.get())
                while not getter.done():
                    await asyncio.wait([getter, *pending], return_when=asyncio.FIRST_COMPLETED)
                    for task in [t for t in pending if t.done()]:
                        pending.discard(task)
                        if task.exception() is not None:  # a stage failed: fail the turn
                            getter.cancel()
                            raise task.exception()
                chunk = getter.result()
                if chunk is None:
                    break
                frames = await self._lipsync.run(self.engine.render_chunk, state, chunk.pcm,
                                                 chunk.sample_rate, chunk.text, chunk.phonemes)
                if metrics.first_frame_s is None:
                    metrics.first_frame_s = time.perf_counter() - t0
                if chunk.text:
                    reply.append(chunk.text)
                yield frames
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        metrics.total_s = time.perf_counter() - t0

    async def say(self, text: str, state: Any) -> AsyncIterator[FrameChunk]:
        """Speak fixed ``text`` (no LLM) as lip-synced chunks, one per sentence.

        Each chunk carries its own sentence, so a cut-off reply keeps only what was heard.
        """
        for sentence in split_text(text) or [text]:
            async for chunk in self.tts.synthesize(sentence):
                yield await self._lipsync.run(self.engine.render_chunk, state, chunk.pcm,
                                              chunk.sample_rate, sentence, chunk.phonemes)

    async def turn(self, utt: Utterance, state: Any) -> tuple[TurnResult, AsyncIterator[FrameChunk]]:
        """Hear ``utt`` and return the result plus the stream of reply chunks.

        The result's ``reply_text``/``metrics`` are complete once the stream is exhausted;
        the turn is then appended to the transcript and the history.
        """
        t0 = time.perf_counter()
        result = TurnResult(transcript=Transcript(text=""))
        result.transcript = await self.hear(utt, result.metrics)
        result.metrics.stt_s = time.perf_counter() - t0
        return result, self._stream_turn(result, state, t0)

    async def _stream_turn(self, result: TurnResult, state: Any, t0: float) -> AsyncIterator[FrameChunk]:
        spoken: list[str] = []
        user_text = result.transcript.text
        try:
            if not user_text:
                result.heard_nothing = True
                async for chunk in self.say(HEARD_NOTHING, state):
                    spoken.append(chunk.text)
                    yield chunk
            else:
                try:
                    async for chunk in self.respond(user_text, state, t0=t0, metrics=result.metrics,
                                                    reply=spoken):
                        yield chunk
                except Exception as exc:  # a failing turn never ends the conversation
                    result.failed = str(exc)
                    log.warning("turn failed", extra={"error": type(exc).__name__})
                    async for chunk in self.say(COULD_NOT_ANSWER, state):
                        yield chunk
                    spoken = [COULD_NOT_ANSWER]
        finally:
            result.reply_text = " ".join(s.strip() for s in spoken if s.strip())
            if result.metrics.total_s is None:
                result.metrics.total_s = time.perf_counter() - t0
            result.metrics.stages.setdefault("total", result.metrics.total_s)
            if user_text and not result.failed:
                self.history.add(user_text, result.reply_text)
            self.transcript.append({"user": user_text, "assistant": result.reply_text,
                                    "heard_nothing": result.heard_nothing, "error": result.failed,
                                    "metrics": result.metrics.as_dict()})

    async def aclose(self) -> None:
        """Close providers and workers."""
        for part in (self.stt, self.llm, self.tts):
            if part is not None:
                await part.aclose()
        self._lipsync.close()

"""The orchestrator's stages: STT, then the reply as a chain of streaming stages.

    Utterance ─STT→ Transcript ─LLM→ TextDelta* ─splitter→ Sentence* ─TTS→ SpeechChunk*
              ─lip-sync→ FrameChunk*  (handed out in order, the first while the LLM still writes)

:meth:`Pipeline.respond` runs think (LLM + splitter), speak (TTS) and show (lip-sync) as
tasks of one :class:`asyncio.TaskGroup` joined by bounded queues; blocking model calls
run in each provider's single-thread :class:`~avatar_agent.workers.Worker`. Every stage
has a time limit (``timeouts.*``): past it the stage fails with :class:`StageTimeout`
and its worker thread is abandoned to the hung call, so later turns are not queued
behind it. A whole turn (hear, answer or apologise, record) is
:func:`avatar_agent.turn.run_turn`, the one turn path of every front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from . import registry
from .audio.io import rms_db
from .config import Config
from .errors import StageTimeout
from .lipsync.base import LipSyncEngine
from .llm.base import LLM, ChatHistory, Message, RambleGuard
from .llm.guards import LanguageCheck
from .llm.knowledge import Knowledge, with_facts
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
SAY_AGAIN = "Sorry, could you say that again?"  # no reply worth hearing (foreign, empty)
APOLOGIES = (HEARD_NOTHING, COULD_NOT_ANSWER, SAY_AGAIN)  # never kept in the history
_ASK_AGAIN = ("copy", "language", "empty")  # the guard's reasons to ask the LLM again
_QUEUE = 4  # bounded queues between stages: back-pressure, little latency
_HEAD_S = 0.3  # a reply's first chunk is drawn and played in two: this much, then the rest


def split_head(chunk: SpeechChunk, fps: float, head_s: float) -> tuple[SpeechChunk, ...]:
    """``chunk`` as its first ``head_s`` (whole frames) and the rest, phoneme timings split
    and shifted with it; the text rides on the head. Short chunks stay whole. Rendered with
    the rest as its ``ahead``, the head draws what the whole chunk would (viseme engine)."""
    frames = round(head_s * fps)
    cut = int(round(frames * chunk.sample_rate / fps))
    if frames < 1 or len(chunk.pcm) < 2 * cut:
        return (chunk,)
    at = cut / chunk.sample_rate
    head_ph = rest_ph = None
    if chunk.phonemes is not None:
        # whole phonemes on each side (times relative to their piece; one may run past the
        # cut), a stress mark with the sound it precedes, a length mark with the one it follows
        ph = chunk.phonemes
        i = next((j for j, p in enumerate(ph) if p.start >= at), len(ph))
        while 0 < i < len(ph) and ph[i].phoneme[:1] in "ːˑ":
            i += 1
        while i > 0 and ph[i - 1].phoneme[:1] in "ˈˌ":
            i -= 1
        head_ph = ph[:i]
        rest_ph = tuple(replace(p, start=p.start - at, end=p.end - at) for p in ph[i:])
    return (replace(chunk, pcm=chunk.pcm[:cut], phonemes=head_ph),
            replace(chunk, pcm=chunk.pcm[cut:], text="", phonemes=rest_ph))


T = TypeVar("T")
Emit = Callable[[FrameChunk], "Awaitable[None] | None"]


async def _emit(emit: Emit, chunk: FrameChunk) -> None:
    result = emit(chunk)
    if inspect.isawaitable(result):
        await result


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of a task group's failure (the stage that failed first)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


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
        # llm.knowledge: read and indexed now, so a bad file stops the start-up
        self.knowledge = Knowledge.from_files(cfg.llm.knowledge) if cfg.llm.knowledge else None
        self.transcript = transcript or TranscriptLog(cfg.transcript.path)
        self._lipsync = Worker("lipsync")   # engine math off the loop, one thread
        self._canned: dict[str, list[SpeechChunk]] = {}  # the apologies, made at warm-up
        # the reply's language check (llm.language; None: off)
        self.language = LanguageCheck(cfg.llm.language) if cfg.llm.language else None

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
        if self.language is not None:  # the reply's language check (~1.4 s), off the loop too
            t0 = time.perf_counter()
            self.language.load()
            times["language"] = time.perf_counter() - t0
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
        of the system prompt, which later prompts share as a prefix). The apologies are
        synthesized here once and kept: they are heard even when the TTS fails later.
        Returns seconds.
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
        for text in APOLOGIES:
            self._canned[text] = [c async for c in self.tts.synthesize(text)]
        for chunk in self._canned[COULD_NOT_ANSWER][:1]:
            await self.render(state, chunk)
        await self.reset_avatar(state)
        return time.perf_counter() - t0

    def remember(self, user_text: str, heard: str) -> None:
        """Add a finished turn to the history, and have the LLM read the new history while
        the user listens and speaks (the next reply then reads only its question)."""
        if heard.strip() in APOLOGIES:  # "Sorry, could you say that again?" teaches nothing
            return
        self.history.add(user_text, heard)
        self.llm.prefill(self.history.context())

    def tts_rate(self) -> int:
        """Sample rate of the TTS voice (for writers and playback)."""
        return int(getattr(self.tts, "sample_rate", 22050))

    async def prepare_avatar(self, image: np.ndarray) -> Any:
        """Run the engine's one-time analysis of the avatar (face, landmarks)."""
        return await self._lipsync.run(self.engine.prepare, image)

    async def reset_avatar(self, state: Any) -> None:
        """Close the mouth and restart its counters, on the lip-sync thread: after any
        render of a cancelled turn that is still running, never interleaved with it."""
        await self._lipsync.run(self.engine.restart, state)

    # ---------------------------------------------------------------- stage limits
    def _unstick(self, stage: str) -> None:
        part = {"stt": self.stt, "llm": self.llm, "tts": self.tts, "lipsync": self._lipsync}[stage]
        worker = part if isinstance(part, Worker) else getattr(part, "_worker", None)
        if isinstance(worker, Worker) and worker.abandon():
            log.warning("%s call hangs: its thread is left to it, later calls get a new one", stage)

    def _timeout(self, stage: str, key: str) -> StageTimeout:
        self._unstick(stage)
        limit = getattr(self.cfg.timeouts, key)
        return StageTimeout(f"{stage} gave nothing for {limit:g} s",
                            hint=f"check the {stage} provider, or raise timeouts.{key}")

    async def _within(self, stage: str, key: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(getattr(self.cfg.timeouts, key)):
                return await awaitable
        except TimeoutError:
            raise self._timeout(stage, key) from None

    async def _paced(self, stage: str, first: str, gap: str, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """The items of ``items``, the first within ``timeouts.<first>``, each next one
        within ``timeouts.<gap>`` of the one before."""
        key = first
        async with contextlib.aclosing(items):
            while True:
                try:
                    async with asyncio.timeout(getattr(self.cfg.timeouts, key)):
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timeout(stage, key) from None
                yield item
                key = gap

    async def render(self, state: Any, chunk: SpeechChunk, ahead: SpeechChunk | None = None) -> FrameChunk:
        """One speech chunk -> its lip-synced frames, on the lip-sync thread (``ahead``: the
        chunk that follows, already known; see :meth:`LipSyncEngine.render_chunk`)."""
        later = None if ahead is None else (ahead.pcm, ahead.phonemes)
        return await self._within("lipsync", "lipsync_s", self._lipsync.run(
            self.engine.render_chunk, state, chunk.pcm, chunk.sample_rate, chunk.text, chunk.phonemes, later))

    async def speech(self, text: str) -> AsyncIterator[SpeechChunk]:
        """``text`` spoken by the TTS (the apologies: as prepared at warm-up)."""
        if text in self._canned:
            for chunk in self._canned[text]:
                yield chunk
            return
        async for chunk in self._paced("tts", "tts_s", "tts_s", self.tts.synthesize(text)):
            yield chunk

    # ---------------------------------------------------------------- the stages
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
        job = stream[0].result(stream[1]) if stream is not None else self.stt.transcribe(utt)
        result = await self._within("stt", "stt_s", job)
        if metrics is not None:
            metrics.stages["stt"] = time.perf_counter() - t0
            if result.done_t and utt.t_end > 0:  # end of speech -> text decoded (maybe before the turn)
                metrics.stages["transcript_ready"] = max(0.0, result.done_t - utt.t_end)
        return result

    def prompt(self, user_text: str) -> list[Message]:
        """The messages for a reply to ``user_text``: history + the text, with the
        knowledge passages for it in the last message only (the history keeps the bare
        text, and the prefix llama.cpp has read stays the same)."""
        messages = self.history.messages(user_text)
        if self.knowledge is None:
            return messages
        return with_facts(messages, self.knowledge.retrieve(user_text, self.cfg.llm.knowledge_passages))

    async def respond(self, user_text: str, state: Any, emit: Emit, *, t0: float | None = None,
                      metrics: TurnMetrics | None = None, reply: list[str] | None = None) -> None:
        """Answer ``user_text``: each lip-synced chunk goes to ``emit`` in order, the first
        while the LLM still writes. A TTS or lip-sync failure stops the other stages and
        is raised; an LLM failure is raised after the sentences it wrote were spoken.

        ``t0``: the perf-counter origin of the metrics (end of user speech);
        ``reply``: filled with the spoken sentences as they are produced.
        """
        t0 = time.perf_counter() if t0 is None else t0
        metrics = metrics if metrics is not None else TurnMetrics()
        reply = reply if reply is not None else []
        messages = self.prompt(user_text)
        sentences: asyncio.Queue[Sentence | None] = asyncio.Queue(_QUEUE)
        speech: asyncio.Queue[SpeechChunk | None] = asyncio.Queue(_QUEUE)
        llm_failed: list[Exception] = []

        async def deltas() -> AsyncIterator[TextDelta]:
            # a looping, copying or endless reply is cut (RambleGuard). A reply that starts
            # as a copy of an earlier answer, in another language than llm.language, or
            # empty is asked again without the history (the usual cause: a small model
            # imitates its own turns), and a copy then stands (the same question asked
            # again may well get the same answer); a fresh reply still foreign or empty is
            # never spoken: the user is asked to say it again. A stall after the first
            # words ends the reply there.
            c = self.cfg.llm
            fresh = [messages[0], messages[-1]]
            for attempt in (messages, fresh):
                # the last two answers: the copies seen were of the turn before ("The history
                # of Rome." three times in a row); an answer recalled from further back (a
                # name asked for again) is no copy to ask again without the history
                previous = self.history.answers()[-2:] if attempt is messages else []
                guard = RambleGuard(loop_ngram=c.loop_ngram, copy_ngram=c.copy_ngram,
                                    max_words=c.max_spoken_words, previous=previous,
                                    foreign=self.language.foreign if self.language else None)
                said = False
                stream = self._paced("llm", "llm_first_s", "llm_stall_s", self.llm.stream(
                    attempt, max_tokens=c.max_tokens, temperature=c.temperature))
                try:
                    async for delta in stream:
                        if metrics.first_token_s is None:
                            metrics.first_token_s = time.perf_counter() - t0
                        if text := guard.push(delta.text):
                            said = True
                            yield TextDelta(text)
                        if guard.done:
                            break
                except StageTimeout:
                    if not said:
                        raise
                    log.warning("reply cut: the LLM stalled")  # what it said is kept
                except Exception as exc:
                    if not said:
                        raise
                    llm_failed.append(exc)  # what it wrote is said, then the apology
                    return
                finally:
                    await stream.aclose()
                if text := guard.flush():
                    said = True
                    yield TextDelta(text)
                if guard.stopped:
                    metrics.guards.append(guard.stopped if attempt is messages else f"{guard.stopped} again")
                    log.info("reply %s: %s%s", "cut" if said else "not spoken", guard.stopped,
                             f" ({guard.language})" if guard.language else "")
                if said or guard.stopped not in _ASK_AGAIN:
                    return
                if attempt is fresh and guard.stopped != "copy":
                    yield TextDelta(SAY_AGAIN)  # no reply worth hearing came
                    return

        async def think() -> None:
            try:
                async for sentence in split_sentences(deltas()):
                    if metrics.first_sentence_s is None:
                        metrics.first_sentence_s = time.perf_counter() - t0
                    await sentences.put(sentence)
            except Exception as exc:  # the LLM died mid-reply: what it wrote is still said
                llm_failed.append(exc)
            await sentences.put(None)

        async def speak() -> None:
            while (sentence := await sentences.get()) is not None:
                first = True
                async with contextlib.aclosing(self.speech(sentence.text)) as chunks:
                    while True:
                        # the LLM waits while the reply's first audio is made: the two
                        # share the CPU, and the rest of the reply is not needed yet
                        with self.llm.paused() if metrics.first_audio_s is None else contextlib.nullcontext():
                            chunk = await anext(chunks, None)
                        if chunk is None:
                            break
                        if metrics.first_audio_s is None:
                            metrics.first_audio_s = time.perf_counter() - t0
                        # a sentence's text rides on its first chunk only (streamed TTS
                        # sends several), so the reply and the history hold each sentence once
                        text = (chunk.text or sentence.text) if first else ""
                        first = False
                        await speech.put(replace(chunk, text=text))
            await speech.put(None)

        async def show() -> None:
            first = True
            while (chunk := await speech.get()) is not None:
                # the reply's first frames go out before the rest of its first chunk is
                # drawn: the speaker starts a whole chunk's render time sooner
                pieces = split_head(chunk, self.engine.fps, _HEAD_S) if first else (chunk,)
                for j, piece in enumerate(pieces):
                    frames = await self.render(state, piece, pieces[j + 1] if j + 1 < len(pieces) else None)
                    if metrics.first_frame_s is None:
                        metrics.first_frame_s = time.perf_counter() - t0
                    if piece.text:
                        reply.append(piece.text)
                    await _emit(emit, frames)
                first = False

        try:
            async with asyncio.TaskGroup() as stages:
                stages.create_task(think(), name="turn-think")
                stages.create_task(speak(), name="turn-speak")
                stages.create_task(show(), name="turn-show")
        except BaseExceptionGroup as failed:
            raise _first_error(failed) from None
        metrics.total_s = time.perf_counter() - t0
        if llm_failed:
            raise llm_failed[0]

    async def say(self, text: str, state: Any, emit: Emit) -> None:
        """Speak fixed ``text`` (no LLM): lip-synced chunks to ``emit``, sentence by sentence.

        A sentence's text rides on its first chunk, so a cut-off reply keeps only what was heard.
        """
        for sentence in split_text(text) or [text]:
            first = True
            async for chunk in self.speech(sentence):
                await _emit(emit, await self.render(state, replace(chunk, text=sentence if first else "")))
                first = False

    async def aclose(self) -> None:
        """Close providers and workers."""
        for part in (self.stt, self.llm, self.tts):
            if part is not None:
                await part.aclose()
        self._lipsync.close()

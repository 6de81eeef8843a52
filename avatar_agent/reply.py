"""File-mode turns: ``reply`` (question audio -> avatar mp4), ``say`` and ``render``.

``reply`` and ``say`` run the one turn path (:func:`avatar_agent.turn.run_turn`) with a
file source and an mp4 sink; ``render`` lip-syncs a given audio file (no turn).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import registry
from .audio.io import PIPELINE_RATE, load_audio
from .config import Config
from .errors import InputError
from .face.avatar import builtin_portrait, load_avatar_image  # noqa: F401 - re-exported
from .models import ModelStore
from .pipeline import Pipeline
from .render.mp4 import Mp4Writer, check_output
from .turn import TurnOutput, TurnResult, run_turn
from .types import FrameChunk, SpeechChunk, Utterance

CLOSING_S = 0.4  # a file answer ends on a moment of silence: the mouth settles closed


def _quality(cfg: Config) -> dict:
    """The mp4 encoder settings of ``output.*``."""
    return {"crf": cfg.output.crf, "preset": cfg.output.preset, "pix_fmt": cfg.output.pix_fmt,
            "progress": True}  # one updating stderr line while writing (terminals only)


def _check_output(path: Path) -> None:
    check_output(path, "--output")


class _FileOutput(TurnOutput):
    """A file turn's output: every chunk into the mp4 (kept in memory only for --show)."""

    def __init__(self, writer: Mp4Writer, keep: bool) -> None:
        self.writer = writer
        self.keep = keep
        self.chunks: list[FrameChunk] = []  # a long reply's frames only when they are shown
        self.rate: int | None = None

    def emit(self, chunk: FrameChunk) -> None:
        self.writer.add_chunk(chunk)
        self.rate = chunk.sample_rate
        if self.keep:
            self.chunks.append(chunk)

    async def close_mouth(self, pipe: Pipeline, state) -> None:
        """End on a moment of silence, continuing the engine's state: the mouth settles."""
        if self.rate is not None:
            tail = await pipe.render(state, SpeechChunk(np.zeros(int(CLOSING_S * self.rate), np.float32),
                                                        self.rate))
            self.emit(tail)


async def show_in_window(cfg: Config, pipe: Pipeline, state, chunks: list[FrameChunk]) -> None:
    """``reply --show``: play ``chunks`` with the live presenter, paced by the speaker's
    clock as in ``talk``. Without a display or a speaker: one warning line, nothing shown."""
    from .audio.playback import Playback
    from .errors import DeviceError
    from .render.window import Presenter, check_display

    if not chunks:
        return
    quit_now = threading.Event()
    playback = Playback(device=cfg.audio.output_device, block_ms=cfg.audio.output_block_ms,
                        latency=cfg.audio.latency)
    presenter = Presenter(clock=playback, idle_fn=lambda t: pipe.engine.idle_frame(state, t),
                          fps=pipe.engine.fps, title=cfg.window.title, show_status=False,
                          scale=cfg.window.scale, on_quit=quit_now.set)
    try:
        check_display()
        playback.start()
        presenter.start()
    except DeviceError as exc:
        playback.close()
        print(f"warning: not shown: {exc}", file=sys.stderr)
        return
    try:
        shows = [presenter.play(c, playback.enqueue(c.audio, c.sample_rate)) for c in chunks]
        end = shows[-1].at.end
        # the speaker's clock and the window thread's flags, polled: nothing to await on
        while (playback.heard_position() < end or not shows[-1].done.is_set()) \
                and not quit_now.is_set() and presenter.running and playback.active:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        await asyncio.to_thread(presenter.stop)
        playback.close()


async def reply_async(cfg: Config, question: Path, output: Path, *, show: bool = False,
                      store: ModelStore | None = None, pipeline: Pipeline | None = None) -> TurnResult:
    """Answer the question in ``question`` (any audio file) with an mp4 at ``output``."""
    _check_output(output)
    pcm = load_audio(question, PIPELINE_RATE)
    image = load_avatar_image(cfg)
    pipe = pipeline or Pipeline.from_config(cfg, store)
    t0 = time.perf_counter()
    load_s = await asyncio.to_thread(pipe.load)
    state = await pipe.prepare_avatar(image)
    setup_s = time.perf_counter() - t0
    utt = Utterance(pcm=pcm, sample_rate=PIPELINE_RATE)
    with Mp4Writer(output, fps=cfg.lipsync.fps, sample_rate=pipe.tts_rate(), **_quality(cfg)) as writer:
        out = _FileOutput(writer, keep=show)
        result = await run_turn(pipe, state, out, utterance=utt, mode="reply")  # the one turn path
        await out.close_mouth(pipe, state)
    if show:
        await show_in_window(cfg, pipe, state, out.chunks)
    result.metrics.stages = {**{f"load_{k}": v for k, v in load_s.items()},
                             "setup": setup_s, **result.metrics.stages}
    if pipeline is None:
        await pipe.aclose()
    return result


def reply_file(cfg: Config, question: Path, output: Path, *, show: bool = False) -> TurnResult:
    """Sync wrapper of :func:`reply_async`; a silence-only question is an InputError after
    the mp4 (with the avatar saying it heard nothing) has been written."""
    result = asyncio.run(reply_async(cfg, question, output, show=show))
    if result.heard_nothing:
        print(result.summary())
        raise InputError(f"no speech heard in {question}; the avatar asked to repeat ({output})",
                         hint="record the question again, closer to the microphone")
    return result


async def say_async(cfg: Config, text: str, output: Path) -> TurnResult:
    """Speak ``text`` with the avatar into ``output`` (no STT, no LLM)."""
    _check_output(output)
    if not text.strip():
        raise InputError("nothing to say: the text is empty", hint='e.g. avatar-agent say "Hello"')
    if not any(ch.isalnum() for ch in text):
        raise InputError(f"nothing to say: {text.strip()[:40]!r} has no words",
                         hint='give words to speak, e.g. avatar-agent say "Hello"')
    image = load_avatar_image(cfg)
    store = ModelStore()
    tts = registry.create("tts", cfg.tts.provider, cfg=cfg, store=store)
    engine = registry.create("lipsync", cfg.lipsync.engine, cfg=cfg, store=store)
    pipe = Pipeline(cfg=cfg, stt=None, llm=None, tts=tts, engine=engine)  # type: ignore[arg-type]
    state = await pipe.prepare_avatar(image)
    t0 = time.perf_counter()
    try:
        with Mp4Writer(output, fps=cfg.lipsync.fps, sample_rate=pipe.tts_rate(), **_quality(cfg)) as writer:
            out = _FileOutput(writer, keep=False)
            result = await run_turn(pipe, state, out, say=text, mode="say")  # the one turn path
            await out.close_mouth(pipe, state)
            if writer.frames_written == 0:  # the voice read nothing it could speak
                raise InputError(f"the voice produced no speech for {text.strip()[:40]!r}",
                                 hint="give words in the voice's language")
    finally:
        await pipe.aclose()
    result.reply_text = text
    result.metrics.stages["say"] = time.perf_counter() - t0
    return result


def say_text(cfg: Config, text: str, output: Path) -> TurnResult:
    """Sync wrapper of :func:`say_async`."""
    return asyncio.run(say_async(cfg, text, output))


def render_file(cfg: Config, audio: Path, output: Path) -> Path:
    """Lip-sync ``audio`` onto the configured avatar into ``output``; no STT/LLM/TTS."""
    _check_output(output)
    pcm = load_audio(audio, PIPELINE_RATE)
    image = load_avatar_image(cfg)
    engine = registry.create("lipsync", cfg.lipsync.engine, cfg=cfg, store=ModelStore())
    state = engine.prepare(image)
    with Mp4Writer(output, fps=cfg.lipsync.fps, sample_rate=PIPELINE_RATE, **_quality(cfg)) as writer:
        step = PIPELINE_RATE * 2  # 2 s pieces: bounded memory, seamless through the state
        for start in range(0, len(pcm), step):
            writer.add_chunk(engine.render_chunk(state, pcm[start:start + step], PIPELINE_RATE))
    return output

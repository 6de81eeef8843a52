"""File-mode turns: ``reply`` (question audio -> avatar mp4), ``say`` and ``render``.

They reuse the live orchestrator (:class:`Pipeline`) with a file source and an mp4 sink.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from . import registry
from .audio.io import PIPELINE_RATE, load_audio
from .config import Config
from .errors import InputError
from .models import ModelStore
from .pipeline import Pipeline, TurnResult
from .render.mp4 import Mp4Writer
from .types import FrameChunk, Transcript, Utterance

CLOSING_S = 0.4  # a file answer ends on a moment of silence: the mouth settles closed


def load_avatar_image(cfg: Config) -> np.ndarray:
    """The avatar: a photo (H, W, 3) or a looped video (T, H, W, 3), uint8 BGR; with
    neither ``avatar.image`` nor ``avatar.video`` set, the :func:`builtin_portrait`.

    One-line InputError when the file is missing or unreadable.
    """
    from .face.avatar import load_avatar

    if cfg.avatar.image is None and cfg.avatar.video is None:
        return builtin_portrait()
    return load_avatar(cfg.avatar)


def builtin_portrait() -> np.ndarray:
    """The default avatar: NASA's astronaut portrait (public domain) from scikit-image's
    bundled sample data, (512, 512, 3) uint8 BGR; the picture ``examples/make_assets.py``
    saves as ``examples/assets/face.png``. Made in memory, nothing is written.

    One-line InputError naming the fixes when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        raise InputError(
            "no avatar image given, and the built-in portrait needs scikit-image",
            hint="pass --image PATH to a portrait photo, or install the portrait's package: "
                 "pip install 'avatar-agent[examples]'",
        ) from None
    import cv2

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _quality(cfg: Config) -> dict:
    """The mp4 encoder settings of ``output.*``."""
    return {"crf": cfg.output.crf, "preset": cfg.output.preset, "pix_fmt": cfg.output.pix_fmt}


def _check_output(path: Path) -> None:
    if path.suffix.lower() != ".mp4":
        raise InputError(f"output {path} must end in .mp4", hint="e.g. --output out/reply.mp4")


async def _write(chunks, writer: Mp4Writer, show: bool, pipe: Pipeline, state) -> None:
    # chunks are kept in memory only to be played afterwards (--show): a long reply's
    # frames would otherwise pile up (30 s at 512x512 is ~0.6 GB)
    shown: list[FrameChunk] = []
    rate = None
    async for chunk in chunks:
        writer.add_chunk(chunk)
        rate = chunk.sample_rate
        if show:
            shown.append(chunk)
    if rate is not None:  # continue the engine's state through a short silence
        tail = await asyncio.to_thread(pipe.engine.render_chunk, state,
                                       np.zeros(int(CLOSING_S * rate), np.float32), rate)
        writer.add_chunk(tail)
        shown.append(tail)
    if show:
        play_in_window(shown)


def play_in_window(chunks: list[FrameChunk], title: str = "avatar_agent") -> None:
    """Play chunks in an OpenCV window with their audio, when a display exists."""
    if not os.environ.get("DISPLAY"):
        return
    import cv2

    try:
        import sounddevice as sd

        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
        sd.play(audio, chunks[0].sample_rate if chunks else 22050)
    except Exception:  # no audio device: show the frames anyway
        sd = None
    t_start = time.monotonic()
    k = 0
    frames = [f for c in chunks for f in c.frames]
    fps = chunks[0].fps if chunks else 25.0
    while k < len(frames):
        cv2.imshow(title, frames[k])
        key = cv2.waitKey(max(1, int((t_start + (k + 1) / fps - time.monotonic()) * 1000)))
        if key in (ord("q"), 27):
            break
        k = max(k + 1, int((time.monotonic() - t_start) * fps))
    if sd is not None:
        sd.stop()
    cv2.destroyAllWindows()


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
    result, chunks = await pipe.turn(utt, state)
    with Mp4Writer(output, fps=cfg.lipsync.fps, sample_rate=pipe.tts_rate(), **_quality(cfg)) as writer:
        await _write(chunks, writer, show, pipe, state)
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
    with Mp4Writer(output, fps=cfg.lipsync.fps, sample_rate=pipe.tts_rate(), **_quality(cfg)) as writer:
        await _write(pipe.say(text, state), writer, False, pipe, state)
        if writer.frames_written == 0:  # the voice read nothing it could speak
            raise InputError(f"the voice produced no speech for {text.strip()[:40]!r}",
                             hint="give words in the voice's language")
    result = TurnResult(transcript=Transcript(text=""), reply_text=text)
    result.metrics.stages["say"] = time.perf_counter() - t0
    await pipe.aclose()
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

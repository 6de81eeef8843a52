"""Piper (VITS on onnxruntime) text-to-speech: the offline default.

The voice is a model-store name (``piper-joe-medium``) or a path to a ``.onnx`` voice
with its ``.onnx.json`` beside it. piper-tts 1.8 ``PiperVoice.synthesize`` yields one
``AudioChunk`` per sentence (22050 Hz for joe-medium); the generator is consumed in the
provider's worker thread and each sentence becomes one :class:`SpeechChunk` carrying
that sentence's text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from ..llm.splitter import split_text
from ..types import PhonemeTiming, SpeechChunk
from ..workers import Worker
from .base import TTS

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)


def resolve_voice(voice: str, store: ModelStore) -> Path:
    """A model-store name or an ``.onnx`` path -> the voice file (its json must sit beside it)."""
    path = Path(voice).expanduser()
    if path.suffix == ".onnx" or path.is_file():
        if not path.is_file():
            raise ModelError(f"tts.piper.voice: file not found: {path}",
                             hint="give an existing .onnx voice or a model-store name")
        if not Path(f"{path}.json").is_file():
            raise ModelError(f"tts.piper.voice: {path}.json is missing",
                             hint="place the voice's .onnx.json next to the .onnx file")
        return path
    if voice in store.registry:
        return store.path(voice)
    raise ModelError(f"tts.piper.voice: '{voice}' is neither a model-store name nor an .onnx file",
                     hint=f"use one of {sorted(store.registry)} or a path to a .onnx voice")


class _ShrinkingSession:
    """Piper's onnxruntime session, whose memory arena is given back after every call.

    onnxruntime keeps the arena at the largest sentence it has synthesized: RSS rose from
    242 to 620 MB over 40 random sentences of 3-40 words, in steps, and stayed there; with
    the arena shrunk after each run it stayed at 236 MB (benchmarks/RESULTS.md, soak). The
    cost: 10-15 % more synthesis time (98 -> 108 ms for a first clause; fresh pages for
    each sentence's buffers)."""

    def __init__(self, inner) -> None:
        import onnxruntime

        self._inner = inner
        self._options = onnxruntime.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names, input_feed, run_options=None):
        return self._inner.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class PiperTTS(TTS):
    """Piper voice; one :class:`SpeechChunk` per sentence at the voice's sample rate."""

    name = "piper"
    requires = ("piper",)  # imported lazily; the registry checks it when the provider is made

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self._cfg = cfg.tts.piper
        self._voice_path = resolve_voice(self._cfg.voice, store)
        self._worker = Worker("tts")
        self._voice = None
        # piper logs the text it speaks at DEBUG; the user's words stay out of our logs
        if logging.getLogger("piper").getEffectiveLevel() < logging.INFO:
            logging.getLogger("piper").setLevel(logging.INFO)
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        """Output rate in Hz (loads the voice config)."""
        self.load()
        return int(self._voice.config.sample_rate)  # type: ignore[union-attr]

    def load(self) -> None:
        """Load the ONNX voice (blocking; ~0.5-3 s the first time)."""
        with self._lock:
            if self._voice is not None:
                return
            from piper import PiperVoice

            # include_alignments patches the ONNX graph in memory to also output samples
            # per phoneme id (needs the onnx package; without it Piper just skips it)
            try:
                self._voice = PiperVoice.load(str(self._voice_path),
                                              include_alignments=self._cfg.phoneme_timings)
            except Exception as exc:  # noqa: BLE001 - protobuf/onnxruntime/json errors alike
                detail = " ".join(str(exc).split())[:120] or type(exc).__name__
                raise ModelError(
                    f"tts.piper.voice: cannot load {self._voice_path.name}: {detail}",
                    hint="is it a Piper .onnx voice with its .onnx.json beside it? "
                         "For the default voice: avatar-agent models pull --force piper-joe-medium",
                ) from None
            self._voice.session = _ShrinkingSession(self._voice.session)
            log.info("piper voice loaded", extra={"sample_rate": self._voice.config.sample_rate})

    def _chunks(self, text: str, stop: threading.Event) -> Iterator[SpeechChunk]:
        from piper import SynthesisConfig

        self.load()
        c = self._cfg
        syn = SynthesisConfig(speaker_id=c.speaker_id, length_scale=c.length_scale,
                              noise_scale=c.noise_scale, noise_w_scale=c.noise_w)
        # One Piper call per sentence of ours, so each chunk knows the exact text it
        # speaks (Piper's own split only returns phonemes); if espeak splits a sentence
        # further, the text rides on its first chunk only.
        for sentence in split_text(text, first_clause_words=0) or [text]:
            label = sentence
            for chunk in self._voice.synthesize(  # type: ignore[union-attr]
                    sentence, syn, include_alignments=c.phoneme_timings):
                yield SpeechChunk(pcm=chunk.audio_float_array, sample_rate=chunk.sample_rate,
                                  text=label, phonemes=_timings(chunk))
                label = ""
                if stop.is_set():  # consumer gone: do not synthesize the next sentence
                    return

    async def _synthesize_impl(self, text: str) -> AsyncIterator[SpeechChunk]:
        async for chunk in self._worker.iterate(lambda stop: self._chunks(text, stop)):
            yield chunk

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()


def _timings(chunk) -> tuple[PhonemeTiming, ...] | None:
    """Phoneme timings from Piper's alignments, when the voice provides them.

    Symbols are Piper's IPA phonemes as given, including its ``^``/``$`` sentence
    boundaries, word spaces and stress marks; times are seconds from the chunk start
    and tile the chunk's audio exactly.
    """
    aligns = getattr(chunk, "phoneme_alignments", None)
    if not aligns:
        return None
    out: list[PhonemeTiming] = []
    t = 0.0
    for a in aligns:
        dur = a.num_samples / float(chunk.sample_rate)
        out.append(PhonemeTiming(a.phoneme, t, t + dur))
        t += dur
    return tuple(out)

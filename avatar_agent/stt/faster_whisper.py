"""faster-whisper (CTranslate2) speech-to-text: the offline default.

The model is a model-store name (``whisper-tiny.en``, pulled into ``checkpoints/``) or a
folder holding a CTranslate2 Whisper conversion (``model.bin``, ``config.json``,
``tokenizer.json``, ``vocabulary.txt``). Decoding runs in the provider's worker thread;
faster-whisper's lazy segment generator is consumed there too, never on the loop.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..types import Transcript, Word
from ..workers import Worker
from .base import STT

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)

# Whisper drops the first word of audio that starts right on speech (TTS output, a
# tight VAD cut): measured on Piper clips, 0.2 s of leading silence fixes it.
LEAD_PAD_S = 0.25


def resolve_model_dir(model: str, store: ModelStore) -> Path:
    """A model-store name or a folder path -> the CTranslate2 model folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError(f"stt.faster_whisper.model: {path} has no model.bin",
                             hint="point it at a CTranslate2 Whisper folder")
        return path
    if model in store.registry:
        return store.path(model).parent  # checks size/sha; names the pull command if missing
    raise ModelError(f"stt.faster_whisper.model: '{model}' is neither a model-store name nor a folder",
                     hint=f"use one of {sorted(store.registry)} or an existing folder")


class FasterWhisperSTT(STT):
    """Whisper via faster-whisper/CTranslate2 on CPU (int8 by default), 16 kHz input."""

    name = "faster_whisper"
    requires = ("faster_whisper",)  # imported lazily; the registry checks it when the provider is made

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self._cfg = cfg.stt.faster_whisper
        self._model_dir = resolve_model_dir(self._cfg.model, store)
        self._worker = Worker("stt")
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the CTranslate2 model (blocking, ~0.4 s for tiny.en)."""
        with self._lock:
            if self._model is not None:
                return
            from faster_whisper import WhisperModel

            c = self._cfg
            try:
                self._model = WhisperModel(str(self._model_dir), device=c.device,
                                           compute_type=c.compute_type, cpu_threads=c.cpu_threads,
                                           local_files_only=True)
            except (ValueError, RuntimeError) as exc:  # CTranslate2: a device/type this machine lacks
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:140]
                raise ModelError(
                    f"stt.faster_whisper: cannot load on device {c.device} with compute_type "
                    f"{c.compute_type}: {first}",
                    hint="use stt.faster_whisper.device=cpu and compute_type=int8") from None
            log.info("faster-whisper loaded", extra={"compute_type": c.compute_type})

    def _run(self, pcm: np.ndarray) -> Transcript:
        self.load()
        c = self._cfg
        # English-only checkpoints reject a language other than "en"
        language = c.language or None
        pad = np.zeros(int(LEAD_PAD_S * self.sample_rate), dtype=np.float32)
        segments, info = self._model.transcribe(  # type: ignore[union-attr]
            np.concatenate([pad, pcm]), beam_size=c.beam_size, language=language, vad_filter=c.vad_filter,
            word_timestamps=True, condition_on_previous_text=False,
        )
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:  # lazy: decoding happens while iterating, in this thread
            texts.append(seg.text)
            words.extend(Word(w.word.strip(), max(0.0, w.start - LEAD_PAD_S),
                              max(0.0, w.end - LEAD_PAD_S)) for w in seg.words or ())
        return Transcript(text="".join(texts).strip(), language=info.language or (language or ""),
                          words=tuple(words))

    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        return await self._worker.run(self._run, pcm)

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()

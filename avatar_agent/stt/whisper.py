"""openai-whisper (PyTorch) speech-to-text from a local ``.pt`` checkpoint.

For users who have Whisper checkpoints in OpenAI's format (``tiny.en.pt``,
``base.pt``, a fine-tune saved the same way). Nothing is downloaded: ``checkpoint`` must
be an existing file, loaded through ``whisper.load_model(path)``. Needs the extra
``whisper`` (openai-whisper + torch). Decoding is greedy (temperature 0, no fallback
passes) because a conversational turn cannot wait for re-decodes.
"""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MissingExtraError, ModelError
from ..types import Transcript
from ..workers import Worker
from .base import STT

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)


class WhisperSTT(STT):
    """openai-whisper on CPU; 16 kHz input; language from the config (None = detect)."""

    name = "whisper"

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        try:
            import torch  # noqa: F401
            import whisper  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("stt provider 'whisper'", "whisper", exc.name) from None
        self._cfg = cfg.stt.whisper
        self._path = Path(self._cfg.checkpoint).expanduser()
        if not self._path.is_file():
            raise ModelError(f"stt.whisper.checkpoint: file not found: {self._path}",
                             hint="place an openai-whisper .pt file there (e.g. tiny.en.pt)")
        self._worker = Worker("stt")
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the checkpoint (blocking)."""
        with self._lock:
            if self._model is not None:
                return
            import whisper

            try:
                self._model = whisper.load_model(str(self._path), device="cpu", in_memory=True)
            except (RuntimeError, KeyError, TypeError, ValueError, EOFError,
                    pickle.UnpicklingError) as exc:  # a wrong or corrupt file
                detail = " ".join(str(exc).split())[:120]
                raise ModelError(f"stt.whisper.checkpoint: cannot load {self._path.name}: {detail}",
                                 hint="give a .pt saved by openai-whisper") from None
            log.info("whisper loaded", extra={"multilingual": self._model.is_multilingual})

    def _run(self, pcm: np.ndarray) -> Transcript:
        self.load()
        model = self._model
        language = self._cfg.language or None
        if language and not model.is_multilingual and language != "en":  # type: ignore[union-attr]
            raise ModelError(f"stt.whisper.language: '{language}' but {self._path.name} is English-only",
                             hint="set stt.whisper.language: en or use a multilingual checkpoint")
        result = model.transcribe(  # type: ignore[union-attr]
            pcm.astype(np.float32), language=language, fp16=self._cfg.fp16, temperature=0.0,
            condition_on_previous_text=False, word_timestamps=False, verbose=None,
        )
        return Transcript(text=str(result.get("text", "")).strip(),
                          language=str(result.get("language") or language or ""))

    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        return await self._worker.run(self._run, pcm)

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()

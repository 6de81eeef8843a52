"""Coqui TTS (the maintained ``coqui-tts`` fork) from a local checkpoint.

For users with a Coqui model on disk (VITS, Tacotron2 + vocoder, ...): ``model_path``
is the checkpoint (``.pth``) and ``config_path`` its ``config.json`` (default: the
``config.json`` beside the checkpoint). Loaded through ``TTS.api.TTS(model_path=...,
config_path=...)``; nothing is downloaded. Needs the extra ``coqui`` (coqui-tts +
torch). Text is split into sentences by Coqui's own splitter and each sentence is
yielded as soon as it is synthesized (the stop flag is checked between sentences).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, MissingExtraError, ModelError
from ..types import SpeechChunk
from ..workers import Worker
from .base import TTS

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)


class CoquiTTS(TTS):
    """A local Coqui TTS model on CPU; one :class:`SpeechChunk` per sentence."""

    name = "coqui"

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        try:
            import torch  # noqa: F401
            from TTS.api import TTS as _Api  # noqa: F401, N811
        except ImportError as exc:
            raise MissingExtraError("tts provider 'coqui'", "coqui", exc.name or "TTS") from None
        c = cfg.tts.coqui
        if c.model_path is None:
            raise ConfigError("tts.coqui.model_path is not set",
                              hint="point it at a Coqui checkpoint (.pth) on disk")
        self._model_path = Path(c.model_path).expanduser()
        self._config_path = (Path(c.config_path).expanduser() if c.config_path
                             else self._model_path.with_name("config.json"))
        for key, path in (("model_path", self._model_path), ("config_path", self._config_path)):
            if not path.is_file():
                raise ModelError(f"tts.coqui.{key}: file not found: {path}",
                                 hint="give the checkpoint and its config.json")
        self._speaker = c.speaker
        self._worker = Worker("tts")
        self._api: Any = None
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        """Output rate in Hz, from the model config (loads the model)."""
        self.load()
        return int(self._api.synthesizer.output_sample_rate)

    def load(self) -> None:
        """Load the checkpoint (blocking)."""
        with self._lock:
            if self._api is not None:
                return
            from TTS.api import TTS as Api

            try:
                api = Api(model_path=str(self._model_path), config_path=str(self._config_path),
                          progress_bar=False, gpu=False)
            except (RuntimeError, KeyError, ValueError, TypeError, EOFError, OSError) as exc:
                detail = " ".join(str(exc).split())[:120]
                raise ModelError(f"tts.coqui: cannot load {self._model_path.name}: {detail}",
                                 hint="check that model_path and config_path belong together") from None
            if self._speaker and api.speakers and self._speaker not in api.speakers:
                raise ConfigError(f"tts.coqui.speaker: '{self._speaker}' is not in this model",
                                  hint=f"choose one of {api.speakers[:8]}")
            self._api = api
            log.info("coqui model loaded",
                     extra={"sample_rate": api.synthesizer.output_sample_rate})

    def _chunks(self, text: str, stop: threading.Event) -> Iterator[SpeechChunk]:
        self.load()
        api = self._api
        rate = int(api.synthesizer.output_sample_rate)
        speaker = self._speaker or (api.speakers[0] if api.is_multi_speaker and api.speakers else None)
        for sentence in api.synthesizer.split_into_sentences(text):
            if stop.is_set():  # consumer gone: do not synthesize the next sentence
                return
            if not any(ch.isalnum() for ch in sentence):
                continue
            wav = api.tts(text=sentence, speaker=speaker, split_sentences=False)
            yield SpeechChunk(pcm=np.asarray(wav, dtype=np.float32), sample_rate=rate, text=sentence)

    async def _synthesize_impl(self, text: str) -> AsyncIterator[SpeechChunk]:
        async for chunk in self._worker.iterate(lambda stop: self._chunks(text, stop)):
            yield chunk

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()

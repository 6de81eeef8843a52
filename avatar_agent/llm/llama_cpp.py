"""llama.cpp (llama-cpp-python) on a local GGUF: the offline default LLM.

The model is a model-store name (``smollm2-135m``) or a path to a ``.gguf`` file. The
chat template comes from the GGUF's own metadata unless ``chat_format`` names one.
Tokens are generated in the provider's worker thread; the worker checks a stop flag
between tokens and closes llama.cpp's generator, so cancelling the consumer really
stops generation (no tokens are computed for a reply nobody hears).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, ModelError
from ..types import TextDelta
from ..workers import Worker
from .base import LLM, Message

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)
_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields: object) -> Iterator[None]:
    """Set llama.cpp model params that ``Llama()`` does not expose, for one load.

    Why: with extra buffer types on, llama.cpp (llama-cpp-python 0.3.36) moves weights
    to its AMX kernels on CPUs that have AMX (these machines do) and segfaults in
    ``ggml_backend_amx_mul_mat`` on the first multi-token batch. ``use_extra_bufts =
    False`` is the C-level equivalent of llama.cpp's ``--no-repack``.
    """
    import llama_cpp.llama_cpp as lib

    with _PARAMS_LOCK:
        default = lib.llama_model_default_params

        def patched():  # type: ignore[no-untyped-def]
            params = default()
            for key, value in fields.items():
                if hasattr(params, key):
                    setattr(params, key, value)
            return params

        lib.llama_model_default_params = patched
        try:
            yield
        finally:
            lib.llama_model_default_params = default


def resolve_gguf(model: str, store: ModelStore) -> Path:
    """A model-store name or a ``.gguf`` path -> the GGUF file."""
    path = Path(model).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise ModelError(f"llm.llama_cpp.model: file not found: {path}",
                             hint="give an existing .gguf file or a model-store name")
        return path
    if model in store.registry:
        return store.path(model)
    raise ModelError(f"llm.llama_cpp.model: '{model}' is neither a model-store name nor a .gguf file",
                     hint=f"use one of {sorted(store.registry)} or a path to a .gguf file")


class LlamaCppLLM(LLM):
    """Chat completion with llama.cpp on CPU, streamed token by token."""

    name = "llama_cpp"

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self._cfg = cfg.llm.llama_cpp
        self._path = resolve_gguf(self._cfg.model, store)
        self._worker = Worker("llm")
        self._llama = None
        self._lock = threading.Lock()
        self.tokens_generated = 0  # of the last reply; read by benchmarks

    @property
    def model_path(self) -> Path:
        """The GGUF file in use."""
        return self._path

    def load(self) -> None:
        """Load the GGUF (blocking; ~0.2 s for SmolLM2-135M)."""
        with self._lock:
            if self._llama is not None:
                return
            from llama_cpp import Llama

            c = self._cfg
            if c.chat_format is not None:
                from llama_cpp import llama_chat_format as formats

                try:
                    formats.get_chat_completion_handler(c.chat_format)
                except formats.LlamaChatCompletionHandlerNotFoundException:
                    # the names, for a suggestion only (a private table; empty if it moved)
                    known = list(getattr(formats.LlamaChatCompletionHandlerRegistry(), "_chat_handlers", {}))
                    close = difflib.get_close_matches(c.chat_format, known, n=1)
                    raise ConfigError(
                        f"llm.llama_cpp.chat_format: unknown format '{c.chat_format}'"
                        + (f"; did you mean '{close[0]}'?" if close else ""),
                        hint="leave it null to use the template stored in the GGUF") from None
            threads = c.n_threads or os.cpu_count() or 1
            try:
                with _model_params(use_extra_bufts=c.repack):
                    self._llama = Llama(model_path=str(self._path), n_ctx=c.n_ctx,
                                        n_threads=threads, n_threads_batch=threads, seed=c.seed,
                                        chat_format=c.chat_format, verbose=False)
            except ValueError as exc:  # llama.cpp's "Failed to load model from file"
                raise ModelError(f"llm.llama_cpp.model: cannot load {self._path.name}: {exc}",
                                 hint="is it a GGUF this llama.cpp version reads?") from None
            log.info("llama.cpp model loaded", extra={"n_ctx": c.n_ctx, "threads": threads})

    def _tokens(self, messages: list[Message], max_tokens: int, temperature: float,
                stop: threading.Event) -> Iterator[TextDelta]:
        self.load()
        self.tokens_generated = 0
        stream = self._llama.create_chat_completion(  # type: ignore[union-attr]
            messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True,
            seed=self._cfg.seed, repeat_penalty=self._cfg.repeat_penalty,
        )
        try:
            for chunk in stream:
                if stop.is_set():
                    break
                text = chunk["choices"][0]["delta"].get("content") or ""
                if text:
                    self.tokens_generated += 1
                    yield TextDelta(text)
        finally:
            stream.close()  # ends llama.cpp's sampling loop now, not at max_tokens

    async def _stream_impl(self, messages: list[Message], *, max_tokens: int, temperature: float
                           ) -> AsyncIterator[TextDelta]:
        def factory(stop: threading.Event) -> Iterator[TextDelta]:
            return self._tokens(messages, max_tokens, temperature, stop)

        async for delta in self._worker.iterate(factory):
            yield delta

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()

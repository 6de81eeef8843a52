"""llama.cpp (llama-cpp-python) on a local GGUF: the offline default LLM.

The model is a model-store name (``smollm2-135m``) or a path to a ``.gguf`` file. The
chat template comes from the GGUF's own metadata unless ``chat_format`` names one.
Tokens are generated in the provider's worker thread; the worker checks a stop flag
between tokens and closes llama.cpp's generator, so cancelling the consumer really
stops generation (no tokens are computed for a reply nobody hears).

Two things keep the first words early on a 2-core CPU (benchmarks/RESULTS.md, issue 9):

* :meth:`prefill` reads the history into llama.cpp's KV cache between turns, so a
  reply's prompt costs only its question: after the history window drops its oldest
  turns (or after a reply asked again without the history), the whole history had to
  be read again at the next question (first token 0.31 -> 0.6-0.9 s).
* :meth:`paused` holds generation while the TTS makes the reply's first audio: Piper's
  first clause takes 0.09 s alone and 0.23 s beside llama.cpp's two threads.
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
_PREFILL_STEP = 64   # tokens per decode while prefilling: a reply waits for at most one step
_PAUSE_MAX_S = 1.0   # a pause never holds generation longer than this


class _Captured(Exception):
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens


class _PromptOnly:
    """Stands in for the ``Llama`` given to a chat handler: the handler formats and
    tokenizes the prompt as for a real reply, and its completion call hands the tokens
    back (raised) instead of generating."""

    def __init__(self, llama) -> None:
        self._llama = llama

    def __getattr__(self, name: str):
        return getattr(self._llama, name)

    def create_completion(self, prompt, **_):
        raise _Captured(list(prompt))


def _common(a, b) -> int:
    """Length of the common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
    requires = ("llama_cpp",)  # imported lazily; the registry checks it when the provider is made

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self._cfg = cfg.llm.llama_cpp
        self._path = resolve_gguf(self._cfg.model, store)
        self._worker = Worker("llm")
        self._llama = None
        self._lock = threading.Lock()
        self.tokens_generated = 0  # of the last reply; read by benchmarks
        self.prefilled = 0  # tokens read by the last prefill; read by tests and benchmarks
        self._ticket = 0  # bumped by every reply: a prefill started before it stops
        self._pauses = 0
        self._go = threading.Event()  # clear while paused
        self._go.set()
        self._pause_lock = threading.Lock()

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

    # ---------------------------------------------------------------- prefill
    def prefill(self, context: list[Message]) -> None:
        """Queue a read of ``context`` into the KV cache (see the module doc); it stops
        at the next step when a reply is asked for. Does nothing before :meth:`load`."""
        if self._llama is None:
            return
        with contextlib.suppress(RuntimeError):  # the worker is closed: the app is quitting
            self._worker.submit(self._prefill, context, self._ticket)

    def _prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The tokens ``create_chat_completion`` would read for ``messages``, from the same
        chat handler (the GGUF's template or ``chat_format``)."""
        from llama_cpp import llama_chat_format

        llama = self._llama
        handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)  # type: ignore[union-attr]
                   or llama_chat_format.get_chat_completion_handler(llama.chat_format))  # type: ignore[union-attr]
        try:
            handler(llama=_PromptOnly(llama), messages=messages)
        except _Captured as got:
            return got.tokens
        raise RuntimeError("the chat handler made no completion call")

    def _prefill(self, context: list[Message], ticket: int) -> None:
        # the prompt's part before the user's words: what two prompts that differ only in
        # those words share
        try:
            a = self._prompt_tokens([*context, {"role": "user", "content": "A"}])
            b = self._prompt_tokens([*context, {"role": "user", "content": "B"}])
            prefix = a[:_common(a, b)]
            llama = self._llama
            start = _common(llama._input_ids.tolist(), prefix)  # type: ignore[union-attr]
            llama.n_tokens = start  # type: ignore[union-attr]  # eval drops the cache after it
            self.prefilled = 0
            for i in range(start, len(prefix), _PREFILL_STEP):
                if ticket != self._ticket:
                    return
                step = prefix[i:i + _PREFILL_STEP]
                llama.eval(step)  # type: ignore[union-attr]
                self.prefilled += len(step)
        except Exception as exc:  # a cache warm-up: the reply reads its prompt anyway
            log.warning("llm prefill failed: %s: %s", type(exc).__name__, exc)

    # ---------------------------------------------------------------- pause
    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold generation between two tokens while the block runs (see the module doc);
        a token never waits longer than ``_PAUSE_MAX_S``."""
        with self._pause_lock:
            self._pauses += 1
            self._go.clear()
        try:
            yield
        finally:
            with self._pause_lock:
                self._pauses -= 1
                if self._pauses == 0:
                    self._go.set()

    # ---------------------------------------------------------------- generation
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
                self._go.wait(_PAUSE_MAX_S)  # the next token waits while paused
        finally:
            stream.close()  # ends llama.cpp's sampling loop now, not at max_tokens

    async def _stream_impl(self, messages: list[Message], *, max_tokens: int, temperature: float
                           ) -> AsyncIterator[TextDelta]:
        self._ticket += 1  # a prefill still running stops at its next step

        def factory(stop: threading.Event) -> Iterator[TextDelta]:
            return self._tokens(messages, max_tokens, temperature, stop)

        async for delta in self._worker.iterate(factory):
            yield delta

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()

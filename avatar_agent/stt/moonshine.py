"""Moonshine (moonshine-voice) speech-to-text: small, fast, and streaming.

Moonshine tiny English (MIT) ships inside the PyPI wheel ``moonshine-voice==0.0.44``
(``moonshine_voice/assets/tiny-en``: ONNX encoder/decoder and tokenizer, run by the
wheel's own ``libmoonshine`` + onnxruntime), so it is a pinned dependency of the
``local`` extra rather than a model-store entry: nothing is downloaded at run time
(later versions of the wheel fetch their models from the network instead; do not
upgrade without checking). ``stt.moonshine.model`` may also name a folder holding
``encoder_model.ort``, ``decoder_model_merged.ort`` and ``tokenizer.bin``.

One-shot (:meth:`MoonshineSTT.transcribe`, used by ``reply``) and streaming
(:meth:`MoonshineSTT.open_stream`, used by ``talk``) share one transcriber. Every call
into the library runs on the provider's :class:`~avatar_agent.workers.Worker`. A stream
is fed in pieces of at least ``chunk_ms``; at most one feed is queued at a time (audio
that arrives meanwhile is merged into the next one), so a slow machine never builds a
backlog. Each feed lets the library re-decode the line in progress at its own cadence
(about every 0.5 s of audio) and close lines at the pauses its own VAD hears; asking for
the result forces a decode of the open line only.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from ..types import Transcript
from ..workers import Worker
from .base import STT, STTStream

if TYPE_CHECKING:
    from ..config import Config
    from ..models import ModelStore

log = logging.getLogger(__name__)

_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")
_FORCE_UPDATE = 1  # MOONSHINE_FLAG_FORCE_UPDATE: decode the open line now
_NO_AUTO_UPDATE = 1e9  # the Python wrapper's own update cadence: off (we call it)


def resolve_model_dir(model: str) -> Path:
    """A model name inside the wheel (``tiny-en``) or a folder -> the model folder."""
    path = Path(model).expanduser()
    if not path.is_dir():
        from moonshine_voice import get_model_path

        path = Path(get_model_path(model))
    missing = [f for f in _FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(f"stt.moonshine.model: '{model}' has no {', '.join(missing)} (looked in {path})",
                         hint="use tiny-en (inside moonshine-voice==0.0.44) or a folder with those files")
    return path


_SHARED: dict[tuple[str, str, float], Any] = {}  # (folder, arch, vad) -> Transcriber
_SHARED_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()  # providers sharing a transcriber run on different workers
# speaker identification is on by default in the library: it costs ~30 % more time and
# made repeated transcriptions of the same audio differ; a turn has one speaker
_OPTIONS = {"identify_speakers": "false"}


def _transcriber(folder: Path, arch: str, vad_threshold: float) -> Any:
    """The process's transcriber for these settings, loaded once and never freed:
    freeing one (``Transcriber.close``) crashed the process (SIGSEGV) in 0.0.44."""
    from moonshine_voice import ModelArch, Transcriber

    key = (str(folder), arch, vad_threshold)
    with _SHARED_LOCK:
        if key not in _SHARED:
            tr = Transcriber(str(folder), ModelArch.TINY if arch == "tiny" else ModelArch.BASE,
                             update_interval=_NO_AUTO_UPDATE,
                             options={**_OPTIONS, "vad_threshold": str(vad_threshold)})
            if not _SHARED:
                atexit.register(_forget_all)
            _SHARED[key] = tr
        return _SHARED[key]


def trim_lead(pcm: np.ndarray, sample_rate: int, keep_s: float = 0.1, below_db: float = 35.0) -> np.ndarray:
    """``pcm`` from ``keep_s`` before its first 20 ms frame within ``below_db`` of its
    loudest. The VAD's pre-roll puts up to 0.3 s of room before the first word, and
    Moonshine heard a word in it ("You What is the biggest animal ..."): trimmed, its
    talk-path WER on the fixture set went from 35.7 to 31.0 % (benchmarks/RESULTS.md)."""
    hop = sample_rate // 50
    n = len(pcm) // hop
    if n < 2:
        return pcm
    frames = pcm[:n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    first = int(np.argmax(db > db.max() - below_db))
    return pcm[max(0, first * hop - int(keep_s * sample_rate)):]


def _forget_all() -> None:
    for tr in _SHARED.values():
        tr._handle = None  # no free at interpreter exit (the crash above); the OS reclaims it


def _text(transcript: Any) -> str:
    return " ".join(line.text.strip() for line in transcript.lines if line.text.strip())


class MoonshineSTT(STT):
    """Moonshine tiny/base English on CPU; 16 kHz input; streaming capable."""

    name = "moonshine"
    requires = ("moonshine_voice",)  # imported lazily; the registry checks it when the provider is made
    streaming = True

    def __init__(self, *, cfg: Config, store: ModelStore | None = None) -> None:
        import moonshine_voice  # noqa: F401 - fail now (missing extra), not at the first turn

        self._cfg = cfg.stt.moonshine
        self._model_dir = resolve_model_dir(self._cfg.model)
        self._worker = Worker("stt")
        self._tr: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the transcriber (blocking; ~0.3-0.5 s for tiny)."""
        with self._lock:
            if self._tr is not None:
                return
            try:
                self._tr = _transcriber(self._model_dir, self._cfg.arch, self._cfg.vad_threshold)
            except Exception as exc:  # the library's MoonshineError: a wrong or corrupt folder
                raise ModelError(f"stt.moonshine.model: cannot load {self._model_dir}: {exc}",
                                 hint="check stt.moonshine.arch matches the model") from None
            log.info("moonshine loaded", extra={"arch": self._cfg.arch})

    # ---------------------------------------------------------------- one-shot
    def _run(self, pcm: np.ndarray) -> Transcript:
        self.load()
        if len(pcm) == 0:
            return Transcript(text="")
        pcm = np.concatenate([trim_lead(pcm.astype(np.float32), self.sample_rate), self._pad()])
        with _CALL_LOCK:
            # a stream of its own per decode: the library's one-shot call keeps state from
            # the previous one and then heard a word ("You") before 15 of 30 questions
            # replayed from talk, and the same audio twice gave different text (17 of 30);
            # with a fresh stream: 0, and 6 (benchmarks/RESULTS.md)
            stream = self._tr.create_stream(update_interval=_NO_AUTO_UPDATE)
            try:
                stream.start()
                stream.add_audio(pcm.tolist(), self.sample_rate)
                result = stream.update_transcription(_FORCE_UPDATE)
            finally:
                stream.close()
        return Transcript(text=_text(result), language="en")

    async def _transcribe_impl(self, pcm: np.ndarray) -> Transcript:
        return await self._worker.run(self._run, pcm)

    # ---------------------------------------------------------------- streaming
    def open_stream(self, sample_rate: int = 16000) -> STTStream:
        """``stt.moonshine.incremental``: the library's own streaming decoder; otherwise
        (default) a buffer whose prefetch decodes the whole utterance one-shot in the
        pause: as fast for a question (0.1 s), and more accurate (the library's streaming
        decodes each line its VAD cuts on its own, without the rest: WER 36 % vs 31 % on
        the VAD-cut fixture set, benchmarks/RESULTS.md)."""
        if not self._cfg.incremental:
            return STTStream(self, sample_rate)
        return _MoonshineStream(self, sample_rate, min_chunk=int(self.sample_rate * self._cfg.chunk_ms / 1000))

    # worker-thread side of _MoonshineStream
    def _stream_add(self, st: _MoonshineStream, pcm: np.ndarray) -> None:
        self.load()
        if st.freed:
            raise RuntimeError("the stream was closed")
        with _CALL_LOCK:
            if st.handle is None:
                st.handle = self._tr.create_stream(update_interval=_NO_AUTO_UPDATE)
                st.handle.start()
            if len(pcm):
                st.handle.add_audio(pcm.tolist(), self.sample_rate)
                st.handle.update_transcription(0)  # the library decides whether to decode now

    def _pad(self) -> np.ndarray:
        # silence after the speech: the VAD cuts 0.2 s after the last word, and Moonshine
        # misheard the last word more often with that little (WER 36 -> 31 % with 0.2 s
        # more, on the VAD-cut fixture set; benchmarks/RESULTS.md)
        return np.zeros(int(self.sample_rate * self._cfg.tail_pad_ms / 1000), np.float32)

    def _stream_text(self, st: _MoonshineStream, pcm: np.ndarray) -> Transcript:
        self._stream_add(st, np.concatenate([pcm, self._pad()]))
        with _CALL_LOCK:
            return Transcript(text=_text(st.handle.update_transcription(_FORCE_UPDATE)),
                              language="en")

    def _stream_free(self, st: _MoonshineStream) -> None:
        handle, st.handle = st.handle, None
        st.freed = True
        if handle is not None:
            with _CALL_LOCK:
                handle.close()

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._worker.close()


class _MoonshineStream(STTStream):
    """Feeds a Moonshine stream on the provider's worker, one queued feed at most."""

    def __init__(self, stt: MoonshineSTT, sample_rate: int, *, min_chunk: int) -> None:
        super().__init__(stt, sample_rate)
        self.handle: Any = None  # the library's Stream; touched on the worker thread only
        self.freed = False
        self._owner = stt
        self._min_chunk = max(1, min_chunk)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._inflight: Future | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _push(self, pcm: np.ndarray) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        self._pending.append(pcm)
        self._pending_n += len(pcm)
        self._pump()

    def _take(self) -> np.ndarray:
        pcm = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        self._pending, self._pending_n = [], 0
        return pcm

    def _pump(self) -> None:
        busy = self._inflight is not None and not self._inflight.done()
        if busy or self._closed or self._pending_n < self._min_chunk:
            return
        try:
            self._inflight = self._owner._worker.submit(self._owner._stream_add, self, self._take())
        except RuntimeError:  # the provider is closed (quitting)
            return
        self._inflight.add_done_callback(self._fed)

    def _fed(self, fut: Future) -> None:  # worker thread
        if not fut.cancelled() and fut.exception() is not None and self._error is None:
            self._error = fut.exception()
        loop = self._loop
        if loop is not None and not self._closed:
            try:
                loop.call_soon_threadsafe(self._pump)
            except RuntimeError:  # the loop is gone
                pass

    async def _decode(self) -> Transcript:
        if self._error is not None:
            raise self._error
        # queued behind any feed in flight (one worker, in order): sees all the audio
        fut = self._owner._worker.submit(self._owner._stream_text, self, self._take())
        self._inflight = fut
        fut.add_done_callback(self._fed)
        return await asyncio.wrap_future(fut)

    async def _close(self) -> None:
        self._pending, self._pending_n = [], 0
        try:
            self._owner._worker.submit(self._owner._stream_free, self)
        except RuntimeError:  # worker closed: the library frees it with the transcriber
            pass

"""End-of-turn classifier: has the speaker finished, or only paused mid-sentence?

Smart Turn v3.2 (pipecat-ai, BSD-2-Clause; the ONNX file ships inside the
``pipecat-ai==1.14.0`` wheel, pulled into the model store as ``smart-turn-v3.2``) reads
the intonation and rhythm of the last 8 s of speech and returns the probability that
the turn is complete. Facts read from pipecat's ``local_smart_turn_v3.py``:

* input: the speech so far at 16 kHz, its last 8 s, zero-padded *at the start* when
  shorter; the 8 s window is normalised to zero mean and unit variance;
* features: Whisper's log-mel (n_fft 400, hop 160, periodic Hann, 80 Slaney bands
  0..8000 Hz, power spectrum, ``log10(max(1e-10, mel))``, the last frame dropped, floored
  at max - 8, then ``(x + 4) / 4``): ``input_features`` ``(1, 80, 800)`` float32;
* output: ``logits`` ``(1, 1)``, already a sigmoid probability.

Plain synchronous code (no asyncio): the live conversation calls :meth:`SmartTurn.predict`
through a :class:`~avatar_agent.workers.Worker`. onnxruntime is imported when the model
loads (it comes with the ``local`` extra, as a dependency of piper-tts).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, MissingExtraError, ModelError

if TYPE_CHECKING:
    from ..models import ModelStore

MODEL_NAME = "smart-turn-v3.2"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
SAMPLE_RATE = 16000             # Hz, what the model was trained on
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model sees the last 8 s
N_FFT = 400                     # samples (25 ms), Whisper's STFT
HOP = 160                       # samples (10 ms) -> 100 mel frames/s, 800 per window
N_MELS = 80


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (``torch.hann_window``)."""
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """``(80, 201)`` float64 Slaney mel filterbank, 0..8000 Hz (Whisper's)."""
    from ..lipsync.mel import mel_basis

    return mel_basis(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2).astype(np.float64)


def features(pcm: np.ndarray) -> np.ndarray:
    """``(N,)`` float mono at 16 kHz -> ``(80, 800)`` float32 Whisper log-mel of the last 8 s.

    Shorter audio is zero-padded at the start (the end of the speech is what matters).
    """
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)[-WINDOW_SAMPLES:]
    x = np.pad(x, (WINDOW_SAMPLES - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # float32, as the model was trained
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400)
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2             # (801, 201)
    log_mel = np.log10(np.maximum(1e-10, _mel_basis() @ power.T))[:, :-1]  # (80, 800)
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """Smart Turn v3.2 on onnxruntime: :meth:`predict` -> probability the turn is complete.

    ``threads``: onnxruntime intra-op threads (measured per call on the 2-core dev
    machine in benchmarks/RESULTS.md, "Smart Turn"). The session is created by
    :meth:`load`, or by the first :meth:`predict`.
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        self._session = None

    @classmethod
    def from_store(cls, store: ModelStore | None = None, *, threads: int = 1) -> SmartTurn:
        """The pulled model of the store (checked now: a missing file fails here, one line)."""
        from ..models import ModelStore

        store = store or ModelStore(progress=False)
        return cls(store.path(MODEL_NAME, MODEL_FILE), threads=threads)

    def load(self) -> None:
        """Create the onnxruntime session (once); blocking, ~0.1 s."""
        if self._session is not None:
            return
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingExtraError("the smart_turn turn model", "local", "onnxruntime") from None
        if not self.path.is_file():
            raise ModelError(f"Smart Turn model {self.path} is missing",
                             hint=f"run: avatar-agent models pull {MODEL_NAME}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise ModelError(f"cannot load Smart Turn model {self.path}: {str(exc).splitlines()[0]}",
                             hint=f"run: avatar-agent models pull --force {MODEL_NAME}") from None

    def predict(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Probability (0..1) that the speech in ``pcm`` ((N,) float32 mono) is a finished
        turn. Only the last 8 s count; other rates are resampled to 16 kHz."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if len(pcm) == 0:
            raise InputError("Smart Turn got no audio", hint="pass the speech so far")
        if sample_rate != SAMPLE_RATE:
            import soxr

            pcm = soxr.resample(pcm[-8 * sample_rate:], sample_rate, SAMPLE_RATE).astype(np.float32)
        self.load()
        assert self._session is not None
        out = self._session.run(["logits"], {"input_features": features(pcm)[None]})[0]
        return float(np.asarray(out).reshape(-1)[0])

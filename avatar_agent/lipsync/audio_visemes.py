"""Visemes from the sound alone: a small trained network (``train-visemes``) on OpenVINO.

When the TTS gives no phoneme timings (OpenAI, Coqui, a user's wav, the browser), the
:class:`~avatar_agent.lipsync.mouth.MouthTracker` asks this model which viseme class
(:data:`~avatar_agent.lipsync.mouth.VISEME_CLASSES`) each video frame shows, and shapes
the lips from the class probabilities; loudness still drives the opening.

Features: log-mel power frames (``N_MELS`` bands, ``WIN_S`` window, ``HOP_S`` hop) on an
*absolute* grid of the stream (mel frame ``m`` ends at sample ``m*sr*HOP_S``), so they
do not depend on how the audio was chunked. Video frame ``k`` sees the ``N_CTX`` mel
frames that end at or before ``MouthTracker._model_end`` (``MODEL_LOOKAHEAD_S``, 50 ms
after the frame's window centre: the offset it was trained with; the loudness itself looks
40 ms ahead), and a frame stays provisional until that audio has arrived. The network (three
dilated 1D convolutions and two dense layers, see ``avatar_agent.train.visemes``) maps
them to class probabilities. PyTorch is only needed to train it; at run time the
committed ``data/visemes.onnx`` runs on OpenVINO, one core.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .mel import mel_basis

MODEL_PATH = Path(__file__).resolve().parent / "data" / "visemes.onnx"
HOP_S = 0.010  # mel hop (s): mel frame m ends at sample floor(m * sr * HOP_S)
WIN_S = 0.025  # mel window (s)
N_MELS = 40
N_CTX = 24  # mel frames per video frame: 255 ms of audio ending at MouthTracker._model_end
FMIN, FMAX = 60.0, 7600.0
FLOOR_DB = -100.0
BLOCK = 16  # mel frames computed together (see ``features``)


@functools.lru_cache(maxsize=8)
def _frontend(sr: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(window samples, FFT size, Hann window, mel bank scaled to a rate-free PSD)."""
    win = int(round(WIN_S * sr))
    n_fft = 1 << (win - 1).bit_length()
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
    bank = mel_basis(sr, n_fft, N_MELS, FMIN, min(FMAX, 0.48 * sr))
    # |X|^2 of a stationary sound is ~ PSD * sr * sum(w^2) per bin; the bank's triangles have
    # unit area in Hz: dividing by n_fft * sum(w^2) leaves the band's PSD, whatever the rate
    bank = (bank / (n_fft * float(np.sum(hann.astype(np.float64) ** 2)))).astype(np.float32)
    return win, n_fft, hann, np.ascontiguousarray(bank.T)


def mel_ends(m: np.ndarray, sr: int) -> np.ndarray:
    """One-past-the-last sample of mel frames ``m`` (absolute grid)."""
    return (np.asarray(m, np.int64) * sr) // int(round(1 / HOP_S))


def last_mel(ends: np.ndarray, sr: int) -> np.ndarray:
    """Index of the last mel frame that ends at or before each sample index in ``ends``."""
    return (np.asarray(ends, np.int64) * int(round(1 / HOP_S))) // sr


def features(audio: np.ndarray, audio_start: int, ends: np.ndarray, sr: int) -> np.ndarray:
    """``(F, N_CTX, N_MELS)`` float32 log-mel (dB) windows for frames whose audio ends at
    absolute samples ``ends``. ``audio`` holds the stream from absolute sample
    ``audio_start``; samples outside it are silence (the tracker keeps every sample a
    frame still to come can read, ``context_samples``)."""
    ends = np.asarray(ends, np.int64)
    if len(ends) == 0:
        return np.zeros((0, N_CTX, N_MELS), np.float32)
    win, n_fft, hann, bank = _frontend(sr)
    last = last_mel(ends, sr)
    m_lo, m_hi = int(last.min()) - N_CTX + 1, int(last.max())
    # mel frames are computed in blocks of BLOCK aligned on the absolute grid: a frame's
    # FFT and mel product then always run in the same position of the same-shaped arrays,
    # so its value does not depend on which call (chunking) computed it, to the last bit
    b_lo = (m_lo // BLOCK) * BLOCK
    b_hi = (m_hi // BLOCK + 1) * BLOCK
    e = mel_ends(np.arange(b_lo, b_hi), sr)
    idx = e[:, None] - win + np.arange(win)[None, :]  # absolute sample indices
    rel = idx - audio_start
    x = np.asarray(audio, np.float32)
    # outside ``audio`` reads as silence: before the stream, in rows no frame uses, and
    # after a change of sample rate (the tracker then starts a new tail)
    ok = (idx >= 0) & (rel >= 0) & (rel < len(x))
    frames = np.zeros(idx.shape, np.float32)
    frames[ok] = x[rel[ok]]
    db = np.empty((len(frames), N_MELS), np.float32)
    for i in range(0, len(frames), BLOCK):
        spec = np.fft.rfft(frames[i:i + BLOCK] * hann, n=n_fft, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        db[i:i + BLOCK] = 10.0 * np.log10(np.maximum(power @ bank, 1e-10))
    db = np.maximum(db, FLOOR_DB)
    m_lo = b_lo
    cols = (last - m_lo)[:, None] + np.arange(-N_CTX + 1, 1)[None, :]
    return np.ascontiguousarray(db[cols])


def context_samples(sr: int) -> int:
    """How many samples before a frame's window end its features can read."""
    win = _frontend(sr)[0]
    return int(np.ceil((N_CTX + 1) * HOP_S * sr)) + win


@functools.lru_cache(maxsize=4)
def _compiled(path: str):
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
        raise ModelError(f"viseme model {path} cannot be read: {' '.join(str(exc).split())[:120]}",
                         hint="retrain it with: python -m avatar_agent train-visemes") from None
    # f32: OpenVINO would otherwise run bf16 on CPUs that have it (and differ from training)
    return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                             "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_PRECISION_HINT": "f32"})


class VisemeModel:
    """The trained audio -> viseme-class network on OpenVINO (one infer request each)."""

    def __init__(self, path: Path | str = MODEL_PATH) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"viseme model not found: {path}",
                             hint="retrain it with: python -m avatar_agent train-visemes, or set "
                                  "lipsync.viseme.audio_model=false")
        self.path = path
        self._compiled = _compiled(str(path))
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def probs(self, feats: np.ndarray) -> np.ndarray:
        """``(F, N_CTX, N_MELS)`` features -> ``(F, classes)`` probabilities (float32)."""
        if len(feats) == 0:
            return np.zeros((0, self._compiled.output(0).get_partial_shape()[1].get_length()),
                            np.float32)
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(feats, np.float32)})
            return self._request.get_output_tensor(0).data.copy()


@functools.lru_cache(maxsize=1)
def default_model() -> VisemeModel:
    """The committed model (loaded and compiled once per process)."""
    return VisemeModel(MODEL_PATH)

"""The exact Wav2Lip audio front end in numpy/scipy (no librosa), offline and streaming.

Facts read from the original Wav2Lip ``audio.py``/``hparams.py``: 16 kHz mono,
pre-emphasis 0.97, STFT n_fft 800 / hop 200 / Hann window 800, centred with reflect
padding (librosa < 0.10, what the checkpoints were trained with), magnitude (power 1),
80 Slaney mel bands 55..7600 Hz with Slaney area normalisation (librosa's default),
``20*log10(max(1e-5, x)) - 20`` dB, then ``clip(8*(S + 100)/100 - 4, -4, 4)``.
Result: ``(80, T)`` float32 at 80 mel frames/s with ``T = 1 + N // 200``.

Video frame ``i`` at ``fps`` sees the 16 mel frames starting at ``int(i * 80 / fps)``;
windows running past the available mel are right-aligned (the original's last window).
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000      # Hz, the rate the network was trained on
N_FFT = 800              # samples (50 ms)
HOP = 200                # samples (12.5 ms) -> 80 mel frames/s
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MEL_FPS = SAMPLE_RATE / HOP
WINDOW = 16              # mel frames per video frame (200 ms)
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
FLOOR = -MAX_ABS         # value of digital silence


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=4)
def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
              fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """``(n_mels, n_fft//2 + 1)`` float32 Slaney mel filterbank (librosa's default).

    Triangles between band edges equally spaced on the Slaney mel scale, each scaled by
    ``2 / (f_hi - f_lo)`` so every band carries about the same energy. Defaults: Wav2Lip's
    ``(80, 401)`` bank.
    """
    fft_freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]   # Slaney: constant energy per band
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (scipy ``get_window('hann', 800)``)."""
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float64)


def preemphasis(wav: np.ndarray, prev: float = 0.0) -> np.ndarray:
    """``y[n] = x[n] - 0.97 x[n-1]`` (``prev`` is the sample before ``wav[0]``)."""
    x = np.asarray(wav, dtype=np.float64)
    out = x.copy()
    if len(x):
        out[1:] -= PREEMPHASIS * x[:-1]
        out[0] -= PREEMPHASIS * prev
    return out


def _frames_to_mel(frames: np.ndarray) -> np.ndarray:
    """``(T, 800)`` pre-emphasised samples -> ``(80, T)`` normalised mel, float32."""
    spec = np.abs(np.fft.rfft(frames * _hann()[None, :], axis=1))     # (T, 401) magnitude
    mel = mel_basis().astype(np.float64) @ spec.T                       # (80, T)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    return np.clip(2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS,
                   -MAX_ABS, MAX_ABS).astype(np.float32)


def _frame(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n_frames, 800)`` view of ``padded`` at hop 200."""
    return np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]


def _reflect(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """numpy reflect padding; signals too short to reflect are zero-padded instead."""
    if len(x) < 2:
        return np.pad(x, (left, right))
    return np.pad(x, (left, right), mode="reflect")


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """``(N,)`` float mono at 16 kHz -> ``(80, 1 + N // 200)`` float32 normalised mel.

    Digital silence maps to exactly -4 everywhere (no NaNs: the log is floored).
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    n_frames = 1 + len(wav) // HOP
    padded = _reflect(preemphasis(wav), N_FFT // 2, N_FFT // 2)
    return _frames_to_mel(_frame(padded, n_frames))


def window_starts(first: int, count: int, fps: float, n_mel: int) -> np.ndarray:
    """Mel start index of video frames ``first .. first+count-1``: ``int(i*80/fps)``.

    Windows past the end of ``n_mel`` available frames are right-aligned, and with fewer
    than 16 frames available every window starts at 0 (the caller pads with silence).
    """
    idx = np.arange(first, first + count, dtype=np.int64)
    starts = np.floor(idx * (MEL_FPS / fps) + 1e-9).astype(np.int64)
    return np.clip(starts, 0, max(0, n_mel - WINDOW))


def mel_windows(mel: np.ndarray, starts: np.ndarray, offset: int = 0) -> np.ndarray:
    """``(F, 1, 80, 16)`` float32 windows of ``mel`` (80, T) at ``starts - offset``.

    Columns beyond the end of ``mel`` read as silence (-4).
    """
    need = int(starts.max() - offset + WINDOW) if len(starts) else 0
    if mel.shape[1] < need:
        mel = np.pad(mel, ((0, 0), (0, need - mel.shape[1])), constant_values=FLOOR)
    cols = (starts - offset)[:, None] + np.arange(WINDOW)[None, :]       # (F, 16)
    return np.ascontiguousarray(mel[:, cols].transpose(1, 0, 2)[:, None])


class MelStream:
    """Streaming front end: push 16 kHz chunks, ask for the windows of video frames.

    Mel frame ``j`` is computed from the samples ``[200 j - 400, 200 j + 400)`` of the
    whole stream, exactly as :func:`melspectrogram` would on the audio received so far
    (reflect padding at the stream start and at the current end). Only the audio still
    needed by frames to come is kept, so memory stays bounded over a long session.
    Frame-level loudness (dBFS RMS of the raw audio under each mel frame) is returned
    with the windows so callers can skip silent frames.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all audio (a new turn)."""
        self._buf = np.zeros(0, dtype=np.float64)
        self._start = 0          # global index of _buf[0]
        self._prev = 0.0         # sample before _buf[0] (pre-emphasis continuity)
        self.total = 0           # samples received

    def push(self, wav16k: np.ndarray) -> None:
        """Append ``(N,)`` float audio at 16 kHz."""
        x = np.asarray(wav16k, dtype=np.float64).reshape(-1)
        self._buf = np.concatenate([self._buf, x])
        self.total += len(x)

    @property
    def n_mel(self) -> int:
        """Mel frames available for the audio received so far (``1 + total // 200``)."""
        return 1 + self.total // HOP

    def windows(self, first: int, count: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
        """Windows of video frames ``first .. first+count-1``.

        Returns ``(F, 1, 80, 16)`` float32 mel windows and ``(F,)`` float32 loudness: the
        loudest mel frame of each window in dBFS (RMS of the raw 800 samples).
        """
        if count <= 0:
            return np.zeros((0, 1, N_MELS, WINDOW), np.float32), np.zeros(0, np.float32)
        n_mel = self.n_mel
        starts = window_starts(first, count, fps, n_mel)
        j_lo, j_hi = int(starts.min()), min(int(starts.max()) + WINDOW, n_mel)
        a = j_lo * HOP - N_FFT // 2                 # first sample needed (may be < 0)
        b = (j_hi - 1) * HOP + N_FFT // 2           # one past the last sample needed
        lo, hi = max(a, 0), min(b, self.total)
        if lo < self._start:
            raise ValueError("MelStream: audio before the retained tail was requested")
        seg = self._buf[lo - self._start:hi - self._start]
        prev = self._buf[lo - self._start - 1] if lo > self._start else (self._prev if lo > 0 else 0.0)
        raw, emph = seg, preemphasis(seg, prev)
        left, right = lo - a, b - hi
        raw_p, emph_p = _reflect(raw, left, right), _reflect(emph, left, right)
        n = j_hi - j_lo
        mel = _frames_to_mel(_frame(emph_p, n))
        rms = np.sqrt(np.mean(np.square(_frame(raw_p, n)), axis=1))
        level = 20 * np.log10(np.maximum(rms, 1e-10))
        level = np.pad(level, (0, WINDOW), constant_values=-200.0)          # silence past the end
        cols = (starts - j_lo)[:, None] + np.arange(WINDOW)[None, :]
        loud = level[cols].max(axis=1).astype(np.float32)
        return mel_windows(mel, starts, offset=j_lo), loud

    def trim(self, next_frame: int, fps: float) -> None:
        """Drop audio no longer needed once frames before ``next_frame`` are rendered."""
        j = int(np.floor(next_frame * (MEL_FPS / fps) + 1e-9))
        # a later right-aligned window never starts before n_mel - 16 of the final audio,
        # which is >= the current n_mel - 16; keep from the earliest of the two
        j = max(0, min(j, self.n_mel - WINDOW))
        keep_from = max(0, j * HOP - N_FFT // 2)
        if keep_from > self._start:
            cut = keep_from - self._start
            self._prev = float(self._buf[cut - 1])
            self._buf = self._buf[cut:]
            self._start = keep_from

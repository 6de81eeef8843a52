"""Audio file and sample helpers shared by every stage.

Inside the pipeline audio is mono float32 in [-1, 1]. :func:`resample` is the one
resampling helper (soxr, high quality).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InputError

PIPELINE_RATE = 16000
MIN_AUDIO_S = 0.1  # shorter files are refused by load_audio (a 10 ms clip made a video of no frames)


def to_mono_float(pcm: np.ndarray) -> np.ndarray:
    """Any (N,) / (N, C) int or float array -> (N,) float32 in [-1, 1]."""
    arr = np.asarray(pcm)
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif arr.dtype == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    else:
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """(N,) float32 in [-1, 1] -> (N,) int16, clipped."""
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample(pcm: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float32 ``pcm`` from ``sr_in`` to ``sr_out`` Hz (soxr HQ)."""
    if sr_in == sr_out or len(pcm) == 0:
        return np.asarray(pcm, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(pcm, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = PIPELINE_RATE) -> np.ndarray:
    """Read any file soundfile understands (wav, flac, ogg, mp3) as mono float32 at ``sample_rate``.

    Raises :class:`InputError` (one line) for a missing, unreadable, corrupt or empty file,
    one shorter than :data:`MIN_AUDIO_S`, or one with NaN/inf samples.
    """
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise InputError(f"audio file {path} is a folder", hint="give the path of a wav, flac, ogg or mp3 file")
    if not path.is_file():
        raise InputError(f"audio file not found: {path}", hint="check the path")
    if path.stat().st_size == 0:
        raise InputError(f"audio file {path} is empty (0 bytes)", hint="record or choose a file with speech")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise InputError(
            f"cannot read audio file {path}: {detail}",
            hint="give a wav, flac, ogg or mp3 file",
        ) from None
    if data.size == 0:
        raise InputError(f"audio file {path} is empty", hint="record or choose a file with speech")
    if len(data) < MIN_AUDIO_S * sr:  # not one video frame of speech: nothing to answer or lip-sync
        raise InputError(f"audio file {path} is too short ({len(data) / sr:.3f} s, at least {MIN_AUDIO_S:g} s)",
                         hint="record or choose a file with speech")
    pcm = to_mono_float(data)
    if not np.isfinite(pcm).all():
        raise InputError(f"audio file {path} has invalid samples (NaN/inf)", hint="re-export the file")
    peak = float(np.abs(pcm).max())
    if peak > 1.0:  # float samples outside [-1, 1] (an un-normalised export): scale, not clip
        logging.getLogger(__name__).warning(
            "audio samples out of range, normalised", extra={"file": str(path), "peak": peak})
        pcm = pcm / peak
    return resample(pcm, int(sr), sample_rate)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> Path:
    """Write mono float32 ``pcm`` as 16-bit PCM wav; returns the path."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), to_int16(pcm), sample_rate, subtype="PCM_16")
    return path


def rms_db(pcm: np.ndarray) -> float:
    """RMS level of float32 audio in dBFS (-120 for digital silence)."""
    if len(pcm) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-6))

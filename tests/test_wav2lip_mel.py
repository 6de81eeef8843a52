"""Wav2Lip audio front end: shapes, rates, value range, silence, streaming = offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import get_window, lfilter

from avatar_agent.lipsync import mel


def _tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_shape_and_frame_rate():
    for n in (16000, 16000 * 3 + 123, 199, 0):
        m = mel.melspectrogram(np.zeros(n, np.float32))
        assert m.shape == (80, 1 + n // 200)
        assert m.dtype == np.float32
    # 80 mel frames per second of audio
    assert mel.melspectrogram(_tone(440, 2.0)).shape[1] == 161


def test_digital_silence_is_floor_without_nans():
    m = mel.melspectrogram(np.zeros(16000, np.float32))
    assert not np.isnan(m).any()
    assert np.all(m == -4.0)


def test_values_bounded_and_speech_above_silence(speak):
    pcm = speak("The quick brown fox jumps over the lazy dog.")
    loud = np.concatenate([np.zeros(8000, np.float32), pcm, np.zeros(8000, np.float32)])
    m = mel.melspectrogram(loud)
    assert np.isfinite(m).all()
    assert m.min() >= -4.0 and m.max() <= 4.0
    head = m[:, 5:35]                                   # 0.06..0.44 s: leading silence
    body = m[:, 60 + 20: 60 + 20 + len(pcm) // 200 - 40]
    assert head.mean() < -3.9
    assert body.mean() > head.mean() + 1.5
    # full-scale noise stays inside the range; only absurdly loud input clips at +4
    assert mel.melspectrogram(np.random.default_rng(0).uniform(-1, 1, 16000)).max() < 4.0
    assert mel.melspectrogram(_tone(3000, 0.5, amp=100.0)).max() == 4.0


def test_filterbank_matches_librosa_output():
    """Whisper ships ``mel_filters.npz`` made by librosa (sr 16k, n_fft 400, 80 mels, 0..8 kHz)."""
    whisper = pytest.importorskip("whisper")
    ref = np.load(Path(whisper.__file__).parent / "assets" / "mel_filters.npz")["mel_80"]
    ours = mel.mel_basis(16000, 400, 80, 0.0, 8000.0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


def test_wav2lip_filterbank_band_edges():
    fb = mel.mel_basis()
    assert fb.shape == (80, 401)
    freqs = np.linspace(0, 8000, 401)
    nonzero = np.nonzero(fb.sum(axis=0))[0]
    assert freqs[nonzero[0]] > 55 and freqs[nonzero[0] - 1] <= 55
    assert freqs[nonzero[-1]] < 7600 and freqs[nonzero[-1] + 1] >= 7600


def test_tone_lands_in_its_band():
    fb = mel.mel_basis()
    centres = np.linspace(0, 8000, 401)[fb.argmax(axis=1)]
    for f in (300.0, 1000.0, 3000.0):
        m = mel.melspectrogram(_tone(f, 1.0))
        band = int(np.argmax(m[:, 40]))
        assert abs(centres[band] - f) <= np.diff(centres)[max(0, band - 1)] * 1.5


def test_stft_matches_scipy_reference():
    """Pre-emphasis by lfilter, periodic Hann by scipy, centred reflect-padded frames."""
    rng = np.random.default_rng(1)
    wav = rng.normal(0, 0.1, 4000)
    emph = lfilter([1, -0.97], [1], wav)
    padded = np.pad(emph, 400, mode="reflect")
    win = get_window("hann", 800, fftbins=True)
    frames = np.stack([padded[j * 200:j * 200 + 800] * win for j in range(1 + len(wav) // 200)])
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    db = 20 * np.log10(np.maximum(1e-5, mel.mel_basis().astype(np.float64) @ mag)) - 20
    ref = np.clip(8 * (db + 100) / 100 - 4, -4, 4)
    np.testing.assert_allclose(mel.melspectrogram(wav), ref, atol=1e-4)


def test_window_starts_follow_the_original_schedule():
    s = mel.window_starts(0, 10, 25.0, 1000)
    assert list(s) == [int(i * 80.0 / 25) for i in range(10)]
    # the last windows are right-aligned on the available mel
    s = mel.window_starts(0, 40, 25.0, 100)
    assert s.max() == 100 - 16 and list(s[:20]) == [int(i * 3.2) for i in range(20)]


def test_stream_equals_offline(speak):
    pcm = speak("Streaming audio must give the same windows as the whole file.")
    offline = mel.melspectrogram(pcm)
    n_frames = round(len(pcm) * 25 / 16000)
    want = mel.mel_windows(offline, mel.window_starts(0, n_frames, 25.0, offline.shape[1]))

    # whole file at once
    s = mel.MelStream()
    s.push(pcm)
    got, _ = s.windows(0, n_frames, 25.0)
    np.testing.assert_allclose(got, want, atol=1e-5)

    # uneven chunks with trimming: frames whose window lies fully inside the audio
    # received so far must equal the offline ones
    s = mel.MelStream()
    rng = np.random.default_rng(2)
    done, pos, checked = 0, 0, 0
    while pos < len(pcm):
        step = int(rng.integers(300, 20000))
        s.push(pcm[pos:pos + step])
        pos = min(len(pcm), pos + step)
        target = round(pos * 25 / 16000)
        win, _ = s.windows(done, target - done, 25.0)
        for k in range(target - done):
            i = done + k
            start = int(i * 3.2)
            if (start + 15) * 200 + 400 <= pos and start + 16 <= offline.shape[1]:
                np.testing.assert_allclose(win[k], want[i], atol=1e-5)
                checked += 1
        done = target
        s.trim(done, 25.0)
    assert done == n_frames and checked > n_frames * 0.4
    assert len(s._buf) < 16000                  # the tail is bounded, not the whole turn


def test_stream_loudness_marks_silence(speak):
    pcm = speak("Hello there.")
    audio = np.concatenate([np.zeros(16000, np.float32), pcm, np.zeros(16000, np.float32)])
    s = mel.MelStream()
    s.push(audio)
    n = round(len(audio) * 25 / 16000)
    _, loud = s.windows(0, n, 25.0)
    assert loud[:15].max() < -100                   # digital silence
    speech = slice(25 + 5, 25 + len(pcm) * 25 // 16000 - 5)
    assert np.median(loud[speech]) > -40
    assert loud[-15:].max() < -100

"""Audio files with out-of-range float samples are scaled into range, not clipped to noise."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from avatar_agent.audio.io import load_audio


def test_unnormalised_float_wav_is_scaled_not_clipped(tmp_path, speak):
    pcm = speak("Is it going to rain tomorrow?")
    path = tmp_path / "loud.wav"
    sf.write(str(path), (pcm * 1e6).astype(np.float32), 16000, subtype="FLOAT")
    got = load_audio(path)
    assert np.abs(got).max() <= 1.0 + 1e-6
    expected = pcm / np.abs(pcm).max()
    assert np.corrcoef(got, expected)[0, 1] > 0.999
    # clipping would have turned speech into a square wave: most samples at the rails
    assert np.mean(np.abs(got) > 0.99) < 0.01

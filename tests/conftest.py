"""Shared fixtures: the real model store, real portraits, real speech.

Models are pulled once per session through the real model store (the same code path
``make test`` and ``make demo`` use). Speech is synthesized with the bundled Piper
voice and cached per text.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from avatar_agent.audio.io import resample
from avatar_agent.config import Config
from avatar_agent.models import DEFAULT_MODELS, ModelStore

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)  # config paths are relative to the project root


@pytest.fixture(scope="session")
def store() -> ModelStore:
    """The real model store with the default models pulled."""
    s = ModelStore(progress=False)
    for name in DEFAULT_MODELS:
        s.pull(name)
    return s


@pytest.fixture(scope="session")
def cfg() -> Config:
    """The default config (offline embedded stack)."""
    return Config()


@functools.lru_cache(maxsize=4)
def _portrait(which: str) -> np.ndarray:
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    from make_assets import portrait

    return portrait(which)


@pytest.fixture(scope="session")
def face_bgr() -> np.ndarray:
    """NASA astronaut portrait (public domain, scikit-image), 512x512 BGR uint8."""
    return _portrait("astronaut").copy()


@pytest.fixture(scope="session")
def hopper_bgr() -> np.ndarray:
    """Grace Hopper portrait (public domain, matplotlib), BGR uint8."""
    return _portrait("hopper").copy()


@functools.lru_cache(maxsize=1)
def _voice():
    from piper import PiperVoice

    return PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")))


@functools.lru_cache(maxsize=64)
def _speak(text: str, length_scale: float) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _voice()
    parts = [c.audio_float_array for c in voice.synthesize(text, SynthesisConfig(length_scale=length_scale))]
    pcm = np.concatenate(parts).astype(np.float32)
    return pcm, voice.config.sample_rate


@pytest.fixture(scope="session")
def speak(store):
    """``speak(text, sr=16000, length_scale=1.0) -> (N,) float32`` real Piper speech."""

    def _fn(text: str, sr: int = 16000, length_scale: float = 1.0) -> np.ndarray:
        pcm, rate = _speak(text, length_scale)
        return resample(pcm, rate, sr)

    return _fn

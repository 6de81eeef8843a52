"""The STT fixture set: spoken questions in voices that are not Piper's.

Each question is spoken by espeak-ng (installed with the Debian test packages) in one of
several voices and speeds, then degraded in a fixed way: white noise at 20 or 10 dB SNR,
a quiet (-38 dBFS) or loud (-4 dBFS peak) level. Everything is deterministic (seeded
noise, fixed table), made at run time, never committed as audio.

    python benchmarks/make_questions.py OUTDIR      # writes OUTDIR/*.wav + manifest.json

Used by ``benchmarks/bench_stt.py`` (word error rate and latency per STT provider) and
by the tests (``tests/test_moonshine_stt.py``) through :func:`fixture_set` / :func:`espeak`.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RATE = 16000

# (text, voice, words per minute, condition)
TABLE = [
    ("What is the capital of Italy?", "en-us", 150, "clean"),
    ("Is it going to rain tomorrow?", "en-gb", 170, "clean"),
    ("How far away is the moon?", "en-us+f3", 130, "noise20"),
    ("Who wrote Romeo and Juliet?", "en-gb-x-rp", 190, "quiet"),
    ("What should I eat for lunch today?", "en-us+m3", 160, "loud"),
    ("Why is the sea salty?", "en-gb-scotland", 140, "noise10"),
    ("How many legs does a spider have?", "en-us", 200, "noise20"),
    ("Can you tell me a joke about cats?", "en-029", 150, "clean"),
    ("Where do penguins live in the wild?", "en-gb+f2", 120, "quiet"),
    ("What is the biggest animal on earth?", "en-us+f4", 175, "loud"),
    ("How do I make a cup of tea?", "en-gb-x-gbclan", 150, "noise10"),
    ("What time is it in Tokyo right now?", "en-us+m5", 185, "clean"),
    ("Please explain what a black hole is.", "en-gb", 135, "noise20"),
    ("Do you like listening to music?", "en-us+f3", 165, "quiet"),
    ("Where is the Eiffel Tower?", "en-gb-x-rp", 145, "clean"),
    ("How old is the universe?", "en-us", 120, "loud"),
    ("What is two plus two?", "en-gb+f3", 190, "noise10"),
    ("Tell me about the history of Rome.", "en-us+m3", 155, "noise20"),
    ("Which planet is closest to the sun?", "en-029", 170, "quiet"),
    ("Can you help me with my homework?", "en-gb-scotland", 160, "clean"),
]


@dataclass(frozen=True)
class Question:
    name: str
    text: str
    voice: str
    wpm: int
    condition: str


@functools.lru_cache(maxsize=128)
def _espeak(text: str, voice: str, wpm: int, ssml: bool = False) -> np.ndarray:
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "q.wav"
        subprocess.run(["espeak-ng", *(["-m"] if ssml else []), "-v", voice, "-s", str(wpm),
                        "-w", str(wav), text], check=True, capture_output=True)
        pcm, rate = sf.read(str(wav), dtype="float32")
    if pcm.ndim > 1:
        pcm = pcm.mean(axis=1)
    return soxr.resample(pcm, rate, RATE).astype(np.float32)


def espeak(text: str, voice: str = "en-us", wpm: int = 150, ssml: bool = False) -> np.ndarray:
    """``text`` spoken by espeak-ng as (N,) float32 mono at 16 kHz (a copy); ``ssml``:
    ``text`` is SSML (``<break time="400ms"/>`` ...)."""
    return _espeak(text, voice, wpm, ssml).copy()


def degrade(pcm: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """Apply a fixed condition: clean, noise20/noise10 (white noise, SNR in dB), quiet
    (-38 dBFS RMS) or loud (-4 dBFS peak). Adds 0.3 s of lead and 0.4 s of tail room."""
    pad = lambda n: np.zeros(int(n * RATE), np.float32)  # noqa: E731
    pcm = np.concatenate([pad(0.3), pcm.astype(np.float32), pad(0.4)])
    rms = float(np.sqrt(np.mean(pcm[np.abs(pcm) > 1e-4] ** 2)) or 1e-4)
    rng = np.random.default_rng(seed)
    if condition.startswith("noise"):
        snr = float(condition.removeprefix("noise"))
        pcm = pcm + rng.standard_normal(len(pcm)).astype(np.float32) * rms / 10 ** (snr / 20)
    elif condition == "quiet":
        pcm = pcm * (10 ** (-38 / 20) / rms)
    elif condition == "loud":
        pcm = pcm * (10 ** (-4 / 20) / float(np.max(np.abs(pcm))))
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}")
    return np.clip(pcm, -1.0, 1.0).astype(np.float32)


def fixture_set() -> list[tuple[Question, np.ndarray]]:
    """The whole set: (question, 16 kHz float32 audio), in :data:`TABLE` order."""
    out = []
    for k, (text, voice, wpm, cond) in enumerate(TABLE):
        q = Question(f"q{k:02d}", text, voice, wpm, cond)
        out.append((q, degrade(espeak(text, voice, wpm), cond, seed=k)))
    return out


def write(outdir: Path) -> Path:
    """Write the set as 16 kHz wavs plus ``manifest.json``; returns the manifest path."""
    import soundfile as sf

    outdir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for q, pcm in fixture_set():
        sf.write(str(outdir / f"{q.name}.wav"), pcm, RATE, subtype="PCM_16")
        manifest.append({**asdict(q), "file": f"{q.name}.wav", "seconds": round(len(pcm) / RATE, 2)})
    path = outdir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "out/questions")))

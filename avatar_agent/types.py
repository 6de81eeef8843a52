"""The small typed vocabulary that flows between pipeline stages.

Audio inside the pipeline is always mono ``float32`` in [-1, 1] with its sample rate
attached; video frames are ``uint8`` BGR ``(H, W, 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AudioBlock:
    """A block of captured audio. ``pcm``: (N,) float32 mono; ``t``: monotonic capture time (s)."""

    pcm: np.ndarray
    sample_rate: int
    t: float


@dataclass(frozen=True)
class Utterance:
    """One VAD-gated user utterance: (N,) float32 mono at ``sample_rate`` (16 kHz)."""

    pcm: np.ndarray
    sample_rate: int
    t_start: float = 0.0
    t_end: float = 0.0

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.pcm) / float(self.sample_rate)


@dataclass(frozen=True)
class Word:
    """A recognised word with times in seconds from the utterance start."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """Speech-to-text result for one utterance."""

    text: str
    language: str = "en"
    audio_s: float = 0.0
    words: tuple[Word, ...] = ()
    proc_s: float = 0.0
    done_t: float = 0.0  # time.monotonic() when decoded (a prefetch may end before it is asked for)


@dataclass(frozen=True)
class TextDelta:
    """A piece of streamed LLM text."""

    text: str


@dataclass(frozen=True)
class Sentence:
    """A speakable piece of the reply, in order (``index`` from 0)."""

    text: str
    index: int = 0


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme with its start and end time in seconds within a speech chunk."""

    phoneme: str
    start: float
    end: float


@dataclass(frozen=True)
class SpeechChunk:
    """Synthesized speech for one sentence: (N,) float32 mono at ``sample_rate``."""

    pcm: np.ndarray
    sample_rate: int
    text: str = ""
    phonemes: tuple[PhonemeTiming, ...] | None = None

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.pcm) / float(self.sample_rate)


@dataclass(frozen=True)
class FrameChunk:
    """Lip-synced video for one speech chunk.

    ``frames``: (F, H, W, 3) uint8 BGR at ``fps``; frame k is shown at ``k / fps`` seconds
    after the chunk's audio starts. ``audio``: the chunk's (N,) float32 mono PCM.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray
    sample_rate: int
    text: str = ""

    @property
    def duration_s(self) -> float:
        """Audio length in seconds."""
        return len(self.audio) / float(self.sample_rate)


@dataclass
class TurnMetrics:
    """Timings of one conversational turn, seconds from the end of user speech."""

    stt_s: float | None = None
    first_token_s: float | None = None
    first_sentence_s: float | None = None
    first_audio_s: float | None = None
    first_frame_s: float | None = None
    total_s: float | None = None
    frames_dropped: int = 0
    av_offsets_ms: list[float] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    guards: list[str] = field(default_factory=list)  # why the reply guard stopped a reply ("copy", "language again", ...)

    def as_dict(self) -> dict:
        """Plain dict for JSONL / logs (rounded to ms)."""
        out: dict = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
            elif isinstance(value, dict):
                out[key] = {k: round(v, 4) for k, v in value.items()}
            elif isinstance(value, list):
                out[key] = [round(v, 2) if isinstance(v, float) else v for v in value]
            else:
                out[key] = value
        return out

"""Voice activity detection: 16 kHz mono blocks in, :class:`Utterance` s out (webrtcvad).

:class:`VadSegmenter` is plain, synchronous state (no threads, no asyncio): feed it any
block size with :meth:`VadSegmenter.push`; it slices 10/20/30 ms frames, classifies each
with webrtcvad and emits events:

* :class:`SpeechStart` as soon as ``onset_ms`` of consecutive voiced frames were heard
  (the orchestrator uses it for barge-in, so it must come early: 60 ms by default);
* :class:`SpeechPause` / :class:`SpeechResume` (only with ``early_ms``) when the speaker
  pauses briefly / goes on, so an answer can start before the hangover is over;
* :class:`Utterance` when ``hangover_ms`` of silence follow the speech (or the utterance
  reaches ``max_utterance_s``). The utterance keeps ``preroll_ms`` of audio before the
  onset, so soft first consonants are not clipped. Speech shorter than
  ``min_utterance_ms`` (a cough, a click) is dropped and reported as :class:`SpeechDrop`;
* :class:`SpeechRejoin` instead of :class:`SpeechStart` (only with ``merge_s``) when speech
  starts again within ``merge_s`` of the last utterance's commit: the speaker paused
  longer than the hangover but goes on ("Hello! … My name is Anna"). The utterance in
  progress is then the last one, the pause and the new speech, one utterance: its
  :class:`SpeechPause` and :class:`Utterance` hold all of it, and a streaming STT fed
  from :meth:`VadSegmenter.speech_audio` just goes on with the same stream.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from ..config import VADConfig
from ..types import Utterance
from .io import rms_db, to_int16

VAD_RATES = (8000, 16000, 32000, 48000)  # what webrtcvad accepts
_FLOOR_MIN_DB = -75.0  # digital silence must not make every faint sound "speech"
_FLOOR_RISE = 0.004    # per frame: ~5 s to follow a louder room, pauses pull it down at once
_KEEP_TAIL = 10        # frames of trailing silence an utterance keeps (Whisper likes a soft ending)


@dataclass(frozen=True)
class SpeechStart:
    """Speech onset detected; ``t``: capture time (monotonic s) of the first voiced frame."""

    t: float


@dataclass(frozen=True)
class SpeechDrop:
    """Speech that started was too short to be an utterance; ``t``: when it ended."""

    t: float


@dataclass(frozen=True)
class SpeechPause:
    """The speaker paused for ``early_ms``: ``utterance`` is the speech so far.

    The orchestrator may start answering now (saving most of the hangover) and must drop
    that answer on :class:`SpeechResume`. If no resume comes, the final
    :class:`Utterance` of the same speech follows after the hangover.
    """

    utterance: Utterance


@dataclass(frozen=True)
class SpeechResume:
    """Speech went on after a :class:`SpeechPause`; ``t``: monotonic time of the onset."""

    t: float


@dataclass(frozen=True)
class SpeechRejoin:
    """Speech started again within ``merge_s`` of the last :class:`Utterance`'s commit;
    ``t``: monotonic time of the onset. The utterance in progress continues that one
    (same ``t_start``, its audio, the pause, the new speech): the turn that answers the
    old one is to be dropped, and the joined utterance answered instead."""

    t: float


VadEvent = SpeechStart | SpeechDrop | SpeechPause | SpeechResume | SpeechRejoin | Utterance


class VadSegmenter:
    """Cuts a continuous 16 kHz mono float32 stream into utterances.

    Times are taken from the ``t`` given to :meth:`push` (capture time of the block's
    first sample) plus the sample offset inside the stream, so they are exact even
    when blocks arrive late.
    """

    def __init__(self, *, sample_rate: int = 16000, frame_ms: int = 20, aggressiveness: int = 2,
                 preroll_ms: int = 300, hangover_ms: int = 600, min_utterance_ms: int = 300,
                 max_utterance_s: float = 20.0, onset_ms: int = 60,
                 energy_margin_db: float = 9.0, early_ms: int = 0, merge_s: float = 0.0) -> None:
        import webrtcvad

        if sample_rate not in VAD_RATES:
            raise ValueError(f"webrtcvad needs one of {VAD_RATES} Hz, got {sample_rate}")
        self.sample_rate = sample_rate
        self.frame_len = sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)
        self._margin_db = energy_margin_db
        self._floor: float | None = None
        self._frame_s = frame_ms / 1000.0
        self._onset_frames = max(1, round(onset_ms / frame_ms))
        self._hangover_frames = max(1, round(hangover_ms / frame_ms))
        # 0 = off; never at or after the hangover (the final utterance comes then anyway)
        early = round(early_ms / frame_ms)
        self._early_frames = early if 0 < early < self._hangover_frames else 0
        self._min_frames = round(min_utterance_ms / frame_ms)
        self._max_frames = max(1, round(max_utterance_s * 1000 / frame_ms))
        self._preroll: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(1, round(preroll_ms / frame_ms)))
        self._merge_s = max(0.0, merge_s)
        self._pending = np.zeros(0, np.float32)
        self._pending_t = 0.0
        self.reset()

    @classmethod
    def from_config(cls, vad: VADConfig, sample_rate: int = 16000) -> VadSegmenter:
        """Build from the ``audio.vad`` config section."""
        return cls(sample_rate=sample_rate, frame_ms=vad.frame_ms, aggressiveness=vad.aggressiveness,
                   preroll_ms=vad.preroll_ms, hangover_ms=vad.hangover_ms,
                   min_utterance_ms=vad.min_utterance_ms, max_utterance_s=vad.max_utterance_s,
                   onset_ms=vad.onset_ms, energy_margin_db=vad.energy_margin_db,
                   early_ms=vad.early_ms, merge_s=vad.merge_s)

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and the end of that utterance."""
        return self._triggered

    @property
    def voiced_frames(self) -> int:
        """Voiced frames in the current utterance (kept after it ends, until the next
        onset): it changes exactly when new speech was heard."""
        return self._speech_voiced

    @property
    def silent_frames(self) -> int:
        """Frames of silence since the last voiced one in the current utterance."""
        return self._silent_run if self._triggered else 0

    @property
    def speech_samples(self) -> int:
        """Samples of the utterance in progress so far (pre-roll included; 0 outside one)."""
        return len(self._speech) * self.frame_len if self._triggered else 0

    def speech_audio(self, start: int = 0) -> np.ndarray:
        """The utterance in progress from sample ``start`` on (for a streaming STT)."""
        if not self._triggered or start >= self.speech_samples:
            return np.zeros(0, np.float32)
        first, skip = divmod(start, self.frame_len)
        return np.concatenate(self._speech[first:])[skip:].astype(np.float32, copy=False)

    def loud(self, pcm: np.ndarray) -> bool:
        """Is ``pcm`` clearly above the tracked noise floor (speech-like energy)?"""
        floor = _FLOOR_MIN_DB if self._floor is None else self._floor
        return rms_db(pcm) >= floor + self._margin_db

    def reset(self) -> None:
        """Forget any partial utterance and the pre-roll (e.g. after the avatar spoke)."""
        self._triggered = False
        self._voiced_run = 0
        self._silent_run = 0
        self._speech: list[np.ndarray] = []
        self._speech_voiced = 0
        self._pause_sent = False
        self._t_start = 0.0
        self._preroll.clear()
        self._pending = np.zeros(0, np.float32)
        self._sealed = True
        self._tail: list[np.ndarray] | None = None  # the last utterance + the pause since
        self.seal()

    def seal(self, t_start: float | None = None) -> None:
        """The speech that started at ``t_start`` (any, when None) was answered: no later
        speech rejoins it, whether it is still in progress or the last utterance. Call
        when a turn ran to its end."""
        current = self._t_start if self._triggered else self._tail_t_start if self._tail else None
        if t_start is not None and current != t_start:
            return  # a newer utterance is not sealed by an older turn
        self._tail = None
        self._tail_gap = 0  # frames of silence after ``_tail``: the pause so far
        self._tail_voiced = 0
        self._tail_t_start = 0.0
        self._tail_until = 0.0  # monotonic: an onset up to here rejoins
        self._sealed = True

    def is_speech(self, frame: np.ndarray) -> bool:
        """Speech decision for one frame of ``frame_len`` float32 samples.

        webrtcvad alone calls steady noise "speech" for seconds after real speech (and
        for the first frames of a stream; measured on Piper speech + white noise), so a
        frame must also stand ``energy_margin_db`` above a tracked noise floor.
        """
        level = rms_db(frame)
        floor = max(level, _FLOOR_MIN_DB) if self._floor is None else self._floor
        if level < floor:
            self._floor = max(level, _FLOOR_MIN_DB)  # falls at once
        else:
            self._floor = floor + (level - floor) * _FLOOR_RISE  # rises over seconds
        if level < floor + self._margin_db:
            return False
        return self._vad.is_speech(to_int16(frame).tobytes(), self.sample_rate)

    def push(self, pcm: np.ndarray, t: float, *, gate: bool = False) -> list[VadEvent]:
        """Feed (N,) float32 mono captured at monotonic time ``t``; returns the events.

        ``gate=True`` treats every frame as silence (echo gate while the avatar speaks):
        audio still flows through the pre-roll, but nothing can start.
        """
        if len(self._pending) == 0:
            self._pending_t = t
        self._pending = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        events: list[VadEvent] = []
        n = self.frame_len
        while len(self._pending) >= n:
            frame, self._pending = self._pending[:n], self._pending[n:]
            t_frame = self._pending_t
            self._pending_t += self._frame_s
            voiced = (not gate) and self.is_speech(frame)
            events.extend(self._step(frame, voiced, t_frame))
        return events

    def _step(self, frame: np.ndarray, voiced: bool, t: float) -> list[VadEvent]:
        if not self._triggered:
            self._preroll.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            run_start = t - max(0, self._voiced_run - 1) * self._frame_s  # of the voiced run so far
            if self._tail is not None:
                if run_start > self._tail_until or len(self._tail) + self._tail_gap >= self._max_frames:
                    self.seal()  # too late (or too long) to go on with it
                else:
                    self._tail_gap += 1
            if self._voiced_run < self._onset_frames:
                return []
            self._triggered = True
            self._sealed = False
            self._silent_run = 0
            if self._tail is not None:  # the last utterance goes on: pause and all
                # the pause as digital silence, but the pre-roll (soft first consonants):
                # while the avatar speaks the mic holds its echo, which the STT must not hear
                pre = list(self._preroll)
                self._preroll.clear()
                silence = [np.zeros(self.frame_len, np.float32)] * (self._tail_gap - len(pre))
                self._speech, self._t_start = [*self._tail, *silence, *pre], self._tail_t_start
                self._speech_voiced = self._tail_voiced + self._voiced_run
                self._tail = None
                return [SpeechRejoin(run_start)]
            # onset: the utterance starts with the pre-roll (which holds the voiced run)
            self._speech = list(self._preroll)
            self._preroll.clear()
            self._speech_voiced = self._voiced_run
            self._t_start = run_start
            return [SpeechStart(self._t_start)]
        self._speech.append(frame)
        events: list[VadEvent] = []
        if voiced:
            self._speech_voiced += 1
            self._voiced_run += 1
            if self._pause_sent and self._voiced_run >= self._onset_frames:
                self._pause_sent = False
                self._silent_run = 0
                events.append(SpeechResume(t - (self._onset_frames - 1) * self._frame_s))
            if not self._pause_sent:
                self._silent_run = 0
        else:
            self._voiced_run = 0
            self._silent_run += 1
        if (self._early_frames and self._silent_run == self._early_frames and not self._pause_sent
                and self._speech_voiced >= self._min_frames):
            self._pause_sent = True
            events.append(SpeechPause(self._utterance(t + self._frame_s)))
        if self._silent_run >= self._hangover_frames or len(self._speech) >= self._max_frames:
            events.append(self._finish(t + self._frame_s))
        return events

    def _utterance(self, t_end: float) -> Utterance:
        # keep a little of the trailing silence (Whisper likes a soft ending), not all of it
        keep_tail = min(self._silent_run, _KEEP_TAIL)
        frames = self._speech[: len(self._speech) - self._silent_run + keep_tail]
        return Utterance(pcm=np.concatenate(frames).astype(np.float32), sample_rate=self.sample_rate,
                         t_start=self._t_start, t_end=t_end - self._silent_run * self._frame_s)

    def _finish(self, t_end: float) -> VadEvent:
        enough = self._speech_voiced >= self._min_frames
        utt = self._utterance(t_end) if enough else None
        if utt is not None and self._merge_s > 0 and not self._sealed:
            # kept for ``merge_s``: speech starting by then continues this utterance; its
            # trailing silence, as in ``utt``, then a count of the frames of the pause
            keep = len(self._speech) - self._silent_run + min(self._silent_run, _KEEP_TAIL)
            self._tail, self._tail_gap = self._speech[:keep], len(self._speech) - keep
            self._tail_voiced, self._tail_t_start = self._speech_voiced, self._t_start
            self._tail_until = t_end + self._merge_s
        self._triggered = False
        self._pause_sent = False
        self._voiced_run = 0
        self._silent_run = 0
        self._speech = []
        return utt if utt is not None else SpeechDrop(t_end)

    def flush(self, t: float) -> VadEvent | None:
        """End a running utterance now (stream closed); returns it or ``None``."""
        if not self._triggered:
            return None
        return self._finish(t)

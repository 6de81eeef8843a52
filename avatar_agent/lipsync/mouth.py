"""Audio (and phoneme timings) -> per-frame mouth parameters, streamed across chunks.

Frame k is shown at ``k/fps``. Its loudness is the RMS (dBFS) of the audio one frame
long centred ``LOOKAHEAD_S`` after that instant: the smoother below makes the mouth trail
its target, and without the look-ahead it trailed the sound by a frame (best lag +1
against the speech envelope; with it: lag 0). The look-ahead only ever reads audio that
has arrived: the last frame or two of a chunk, whose window reaches past it, are drawn
provisionally (as if the level went on), and the smoother's state is committed only up
to the last frame whose window was complete, so the next chunk re-runs it from there and
every later frame equals one-shot rendering; a chunk that ends in a pause (a TTS
sentence) changes nothing at all. The total frame count stays ``round(samples*fps/sr)``.

Loudness maps to openness by a power law of the RMS (``loudness_open``: shut below
``FLOOR_DB``, wide open from ``TOP_DB``), which follows the speech energy more closely
than a linear-in-dB map (see benchmarks/RESULTS.md, issue 12). When the TTS
gives phoneme timings, the sounds shape the mouth (``_shape``): the one under the frame
(``PHONEME_LEAD_S`` ahead: lips shape a sound before it is heard) sets how far the jaw
opens (closed for m/b/p), and the sounds within ±``BLEND_S`` blend the lips' shape
(``round`` pursed, ``wide`` spread, ``bite`` lower lip on the upper teeth). A one-pole
smoother with separate attack and release time constants, a slew limit per frame and an
acceleration limit (no full-speed reversal within one frame) keep the mouth from
fluttering or snapping (a real mouth takes two or three frames to open wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..types import PhonemeTiming

FLOOR_DB = -45.0  # below this the mouth is shut (Piper/TTS speech frames sit at -35..-9 dBFS)
TOP_DB = -12.0  # this loud (RMS, dBFS) or louder: wide open
# above the floor, openness = VOICED_OPEN + (1 - VOICED_OPEN) * (RMS / TOP)^LOUD_GAMMA: a
# compressive power law follows the speech energy more faithfully than the former
# linear-in-dB map (engine openness vs the linear-RMS envelope: r 0.75-0.79 -> 0.81-0.85),
# and the small lift keeps quiet voiced frames visibly parted on the smiling portrait
LOUD_GAMMA = 0.6
VOICED_OPEN = 0.08
CLOSED = 0.01  # below this the mouth is exactly closed (frame = photo)
# in true silence a slit this narrow closes at once: on a smiling portrait even a 0.05
# slit moves the mesh's lip gap by ~0.03 inter-ocular, a mouth visibly not at rest
# three frames into a pause (measured on the astronaut portrait)
SILENT_CLOSE = 0.08
# fastest opening per second (openness units): closed -> wide takes >= ~140 ms, as real jaws do
MAX_RATE = 7.0
_WIDEN_S = 0.010
# lips shape a sound ahead of hearing it (coarticulation); timings are known per chunk
PHONEME_LEAD_S = 0.06  # measured with the look-ahead below (noise-free Piper, both portraits)
# frame k's loudness window is centred LOOKAHEAD_S after its instant: the smoother and the
# slew limits make the mouth trail its target by about that much (measured: best lag +1
# frame, r at lag 0 0.56-0.66 without it; lag 0, r 0.72-0.85 with 50 ms and the former
# dB map and slower smoother; 40 ms with the power law and the 10/40 ms smoother: r at lag
# 0 0.80-0.87 in render's mp4, Piper and espeak-ng, both portraits; 35 ms: 0.80-0.87 too,
# with r(+1) higher than r(-1), i.e. still a little late)
LOOKAHEAD_S = 0.04
# the audio viseme model reads the audio up to (k + 0.5)/fps + MODEL_LOOKAHEAD_S: the offset
# it was trained with (``train-visemes``, when the loudness looked 50 ms ahead). Reading it
# at the loudness's 35 ms instead cost it 9-11 points of frame accuracy on held-out espeak-ng
# voices (0.76/0.83/0.80 -> 0.65/0.74/0.71) and half its M/B/P recall on one of them
MODEL_LOOKAHEAD_S = 0.05
# How open the mouth looks (to the face mesh, and to people) against the warp's openness,
# normalised: a narrow slit reads as nearly closed, the lips read as parted from ~0.3 on
# (measured on Grace Hopper's closed-lips portrait: inner-lip gap / inter-ocular distance).
_OPENNESS = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0])
_VISIBLE = np.array([0.0, 0.085, 0.16, 0.23, 0.55, 0.74, 1.0, 2.0])
# largest change of the *visible* opening per 1/25 s: a real mouth takes about two to three
# frames to open wide, and the mesh then sees a jump of at most ~0.11 × inter-ocular (range
# ~0.22; measured on Hopper with Piper speech; 0.35/0.38 gave 0.136, over the tests' 0.13)
SLEW_OPEN = 0.3
SLEW_CLOSE = 0.32
# largest change of that per-frame velocity from one frame to the next (visible units):
# a jaw has mass, it cannot swing from opening at full speed to closing at full speed
# within one frame. Without it a short syllable between two stops ("the" in "the quick")
# gave open-shut-open flutter at full slew, 80 ms a swing (measured on Piper speech; 0.5
# with the slews above: at most one big reversal per paragraph, as with 0.36 before).
MAX_ACCEL = 0.5

# IPA phoneme -> (openness 0..1, rounding 0..1); anything else: (0.35, 0)
_BILABIAL = set("mbpɱ")
_LABIODENTAL = set("fv")
_VOWELS = {
    "a": (1.0, 0.0), "ɑ": (1.0, 0.1), "æ": (0.9, 0.0), "ʌ": (0.75, 0.0), "ɐ": (0.7, 0.0),
    "e": (0.6, 0.0), "ɛ": (0.7, 0.0), "ə": (0.5, 0.0), "ɚ": (0.45, 0.3), "ɜ": (0.55, 0.2),
    "i": (0.35, 0.0), "ɪ": (0.45, 0.0), "o": (0.7, 0.8), "ɔ": (0.8, 0.6), "u": (0.4, 1.0),
    "ʊ": (0.45, 0.8), "w": (0.3, 1.0), "ɒ": (0.85, 0.5),
}
# lips also round for the post-alveolars and "r"
_ROUND_MORE = {"ʃ": 0.55, "ʒ": 0.55, "ɹ": 0.35, "r": 0.3}
# spread lips (corners drawn out): front vowels, "y", and "s"/"z" (teeth together)
_WIDE = {"i": 1.0, "ɪ": 0.75, "e": 0.8, "ɛ": 0.55, "æ": 0.45, "j": 0.7, "s": 0.45, "z": 0.45,
         "ɛ̃": 0.5}
# viseme classes (the contact sheet, the docs, and the audio model's outputs in this order):
# name -> example phoneme; ``viseme_class`` maps every sound to one of them
VISEMES = {"rest": "", "M B P": "m", "F V": "f", "O U W": "u", "E I": "i", "A": "a"}
VISEME_CLASSES = tuple(VISEMES)
BLEND_S = 0.05  # a sound's shape blends over ±50 ms around its span (coarticulation)
SHAPE_CLOSED = 0.01  # below this a shape parameter is exactly zero (the photo returns)


def loudness_open(power: float) -> float:
    """Mean power of a frame's window -> target openness 0..1: shut below ``FLOOR_DB``,
    else a power law of the RMS (``LOUD_GAMMA``), lifted by ``VOICED_OPEN``, 1 at ``TOP_DB``."""
    if power < 10 ** (FLOOR_DB / 10):
        return 0.0
    x = (power / 10 ** (TOP_DB / 10)) ** (LOUD_GAMMA / 2)
    return float(min(1.0, VOICED_OPEN + (1.0 - VOICED_OPEN) * x))


@dataclass
class MouthParams:
    """Per-frame mouth: ``open`` 0..~1, ``round`` 0..1 (pursed, narrower lips), ``wide``
    0..1 (spread lips), ``bite`` 0..1 (lower lip against the upper teeth)."""

    open: np.ndarray
    round: np.ndarray
    wide: np.ndarray = None  # type: ignore[assignment]
    bite: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        zeros = np.zeros_like(self.open)
        self.wide = zeros if self.wide is None else self.wide
        self.bite = zeros.copy() if self.bite is None else self.bite


@dataclass
class MouthTracker:
    """Streaming state: audio tail, counters and the smoother's committed values.

    Frame k's target looks ``LOOKAHEAD_S`` into the audio. A frame whose look-ahead
    reaches past the audio received so far (the last one or two of a chunk) is drawn
    *provisionally*, as if silence followed; the smoother's state is committed only up to
    the last frame whose audio was complete, and the next chunk re-runs the smoother from
    there. So every frame whose look-ahead lay inside the known audio equals one-shot
    rendering exactly, and a chunk that ends in a pause (as a TTS sentence does) changes
    nothing at all.
    """

    fps: float
    gain: float = 1.0
    max_open: float = 1.0
    attack_s: float = 0.01
    release_s: float = 0.04
    # audio -> viseme model (``audio_visemes.VisemeModel``): shapes the lips of frames that
    # have no phoneme timings; None: loudness only there
    model: object = None
    samples: int = 0
    frames: int = 0
    sample_rate: int = 0
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    tail_start: int = 0  # absolute sample index of tail[0]
    sounds: list = field(default_factory=list)  # speech sounds, absolute times (s)
    timed: list = field(default_factory=list)  # (start, end) s of chunks that had timings
    committed: int = 0  # frames < committed used complete audio; state below is after them
    value: float = 0.0
    velocity: float = 0.0  # last per-frame change of the visible opening
    shape: tuple = (0.0, 0.0, 0.0)  # smoothed (round, wide, bite)

    def reset(self) -> None:
        """Forget everything (interrupted turn): the mouth closes immediately."""
        self.samples = self.frames = self.committed = self.tail_start = 0
        self.tail = np.zeros(0, np.float32)
        self.sounds = []
        self.timed = []
        self.value = self.velocity = 0.0
        self.shape = (0.0, 0.0, 0.0)

    def _window(self, k: int, sample_rate: int) -> tuple[int, int]:
        lead = LOOKAHEAD_S * sample_rate
        a = int((k - 0.5) * sample_rate / self.fps + lead) - int(_WIDEN_S * sample_rate)
        b = int((k + 0.5) * sample_rate / self.fps + lead)
        return a, b

    def _model_end(self, k: int, sample_rate: int) -> int:
        """Sample index where frame k's audio model input ends (``MODEL_LOOKAHEAD_S``)."""
        return int((k + 0.5) * sample_rate / self.fps + MODEL_LOOKAHEAD_S * sample_rate)

    def step(self, pcm: np.ndarray, sample_rate: int,
             phonemes: tuple[PhonemeTiming, ...] | None = None,
             ahead: tuple[np.ndarray, tuple[PhonemeTiming, ...] | None] | None = None) -> MouthParams:
        """Mouth parameters for the frames this chunk completes (no drift across chunks).

        ``ahead``: the audio (and phoneme timings, relative to its start) that the next
        chunk will bring, already known (the reply's first chunk is drawn in two parts to
        start the speaker sooner): read for this chunk's look-ahead only, so its last frames
        are final instead of provisional and the two parts draw what the whole would."""
        if self.sample_rate and sample_rate != self.sample_rate:
            # a new voice/rate: convert counters so frame timing stays continuous; the
            # frames drawn so far stay as they are
            self.samples = int(round(self.samples * sample_rate / self.sample_rate))
            self.tail, self.tail_start = np.zeros(0, np.float32), self.samples
            self.committed = self.frames
        self.sample_rate = sample_rate
        start_s = self.samples / sample_rate
        self.samples += len(pcm)
        end = int(round(self.samples * self.fps / sample_rate))  # frames due after this chunk
        if phonemes:
            self.sounds.extend(PhonemeTiming(p.phoneme, p.start + start_s, p.end + start_s)
                               for p in clean_phonemes(phonemes))
            self.timed.append((start_s, self.samples / sample_rate))
        later = np.zeros(0, np.float32) if ahead is None else np.asarray(ahead[0], np.float32)
        known = self.samples + len(later)  # samples readable now (this chunk's and ``ahead``)
        sounds, timed_spans = self.sounds, self.timed
        if ahead is not None and ahead[1]:
            at = self.samples / sample_rate
            sounds = sounds + [PhonemeTiming(p.phoneme, p.start + at, p.end + at) for p in clean_phonemes(ahead[1])]
            timed_spans = timed_spans + [(at, known / sample_rate)]
        audio = np.concatenate([self.tail, np.asarray(pcm, np.float32), later])
        first = self.committed  # re-run the smoother from the last committed frame
        n = end - first
        # frames shaped by the phoneme timings (their chunk had them); the others by the
        # audio model when there is one, else by loudness alone
        t_mids = np.arange(first, end) / self.fps + PHONEME_LEAD_S
        timed = np.array([any(a <= t < b for a, b in timed_spans) for t in t_mids], bool)
        probs = None
        if self.model is not None and not timed.all():
            from .audio_visemes import features

            # the model reads the audio up to its frame's model end (or, for a provisional
            # frame, up to what has arrived); a frame is final only once that has arrived too
            ends = np.array([min(self._model_end(k, sample_rate), known)
                             for k in range(first, end)], np.int64)[~timed]
            got = self.model.probs(features(audio, self.tail_start, ends, sample_rate))
            probs = np.zeros((n, got.shape[1]), np.float32)
            probs[~timed] = got
        targets = np.zeros(n, np.float32)
        shapes = np.zeros((n, 3), np.float32)  # round, wide, bite
        snap = np.zeros(n, bool)
        final = first
        hop = int(sample_rate / self.fps)
        recent = audio[max(len(audio) - hop, 0):].astype(np.float64)
        last_power = float(np.mean(recent ** 2)) if len(recent) else 0.0
        for i in range(n):
            k = first + i
            a, b = self._window(k, sample_rate)
            # final once its loudness window (and the model's input) has arrived, and, when
            # shaped by phonemes, the sounds its shape blends (±BLEND_S) are known: a chunk
            # cut inside a word (the reply's first chunk is played in two) then re-runs them
            # with the next chunk
            need = b if self.model is None else max(b, self._model_end(k, sample_rate))
            complete = need <= known and (not timed[i] or t_mids[i] + BLEND_S <= known / sample_rate)
            if complete and final == k:
                final = k + 1
            # audio before the start counts as silence; audio not yet arrived (a provisional
            # frame) as the last known frame's level going on
            seg = audio[max(a - self.tail_start, 0):max(min(b, known) - self.tail_start, 0)]
            energy = float(np.sum(seg.astype(np.float64) ** 2))
            if b > known:
                energy += (b - max(a, known)) * last_power
            energy /= max(b - a, 1)
            targets[i] = loudness_open(energy)
            if timed[i] or probs is not None:
                open_before = targets[i]
                if timed[i]:
                    targets[i], shapes[i] = _shape(targets[i], float(t_mids[i]), sounds)
                else:
                    targets[i], shapes[i] = _shape_from_probs(targets[i], probs[i])
                snap[i] = targets[i] < 0.5 * open_before  # a lip closure (m, b, p): close fast
        opens = self._smooth(targets * self.gain, snap, final - first)
        shaped = self._smooth_shape(shapes, final - first)
        skip = self.frames - first  # frames already shown (provisionally) last time
        self.committed = final
        # keep the audio the next re-run can need: from the first uncommitted window on
        keep_from = min(self._window(final, sample_rate)[0], self.samples)
        if self.model is not None:
            from .audio_visemes import context_samples

            keep_from = min(keep_from, min(self._model_end(final, sample_rate), self.samples)
                            - context_samples(sample_rate))
        keep_from = max(keep_from, self.tail_start)
        self.tail = audio[keep_from - self.tail_start:self.samples - self.tail_start].copy()  # not ``ahead``
        self.tail_start = keep_from
        horizon = final / self.fps - 1.0
        self.sounds = [p for p in self.sounds if p.end >= horizon]
        self.timed = [(a, b) for a, b in self.timed if b >= horizon]
        self.frames = end
        return MouthParams(opens[skip:], shaped[skip:, 0], shaped[skip:, 1], shaped[skip:, 2])

    def _smooth(self, targets: np.ndarray, snap: np.ndarray, commit: int) -> np.ndarray:
        """Smooth from the committed state; the state after ``commit`` frames is kept."""
        dt = 1.0 / self.fps
        up = 1.0 - np.exp(-dt / max(self.attack_s, 1e-4))
        down = 1.0 - np.exp(-dt / max(self.release_s, 1e-4))
        out = np.empty_like(targets)
        v, vel = self.value, self.velocity
        hush = 1.0 - np.exp(-dt / max(self.release_s / 2, 1e-4))
        rise, fall = SLEW_OPEN * 25.0 / self.fps, SLEW_CLOSE * 25.0 / self.fps
        accel = MAX_ACCEL * (25.0 / self.fps) ** 2
        for i, target in enumerate(np.minimum(targets, self.max_open)):
            if i == commit:
                self.value, self.velocity = v, vel
            # true silence (below the floor) closes twice as fast as a dip between syllables
            rate = up if target > v or snap[i] else hush if target <= 0.0 else down
            want = v + (target - v) * rate
            # slew and acceleration limits in visible units (the slit-to-open range
            # changes look fastest); a lip closure (m, b, p) and true silence may stop
            # the jaw at once (silence must close the mouth within the release time)
            seen = float(np.interp(v, _OPENNESS, _VISIBLE))
            lo_d, hi_d = -fall, rise
            if not snap[i] and target > 0.0:
                lo_d, hi_d = max(lo_d, vel - accel), min(hi_d, vel + accel)
            lo = float(np.interp(seen + lo_d, _VISIBLE, _OPENNESS))
            hi = float(np.interp(seen + hi_d, _VISIBLE, _OPENNESS))
            v = float(np.clip(want, lo, hi))
            if (v < CLOSED and target < CLOSED) or (v < SILENT_CLOSE and target <= 0.0):
                v = 0.0
            vel = float(np.interp(v, _OPENNESS, _VISIBLE)) - seen
            out[i] = v
        if commit >= len(targets):
            self.value, self.velocity = v, vel
        return out

    def _smooth_shape(self, targets: np.ndarray, commit: int) -> np.ndarray:
        """Lip shape (round, wide, bite) eased halfway to its target each frame; the state
        after ``commit`` frames is kept."""
        out = np.empty_like(targets)
        r = np.array(self.shape, np.float32)
        for i, target in enumerate(targets):
            if i == commit:
                self.shape = tuple(float(x) for x in r)
            r = r + (target - r) * 0.5
            r[r < SHAPE_CLOSED] = 0.0
            out[i] = r
        if commit >= len(targets):
            self.shape = tuple(float(x) for x in r)
        return out


# Piper/espeak symbols that are not sounds: stress marks belong to the next phoneme, the
# length mark to the previous one; pauses and punctuation carry no mouth shape
_STRESS = set("ˈˌ")
_LENGTH = set("ːˑ")


def clean_phonemes(phonemes: tuple[PhonemeTiming, ...]) -> tuple[PhonemeTiming, ...]:
    """Only the speech sounds, with stress/length marks' time given to their sound."""
    out: list[PhonemeTiming] = []
    pending = None  # start of a stress mark waiting for its phoneme
    for ph in phonemes:
        sym = ph.phoneme[:1]
        if sym in _STRESS:
            pending = ph.start if pending is None else pending
        elif sym in _LENGTH:
            if out and abs(out[-1].end - ph.start) < 1e-6:
                out[-1] = PhonemeTiming(out[-1].phoneme, out[-1].start, ph.end)
        elif sym.isalpha():
            out.append(PhonemeTiming(ph.phoneme, ph.start if pending is None else pending, ph.end))
            pending = None
        else:  # a pause, a word space, punctuation, sentence marks
            pending = None
    return tuple(out)


def _shape(level_open: float, t: float, phonemes: list[PhonemeTiming] | tuple[PhonemeTiming, ...],
           ) -> tuple[float, np.ndarray]:
    """Loudness and the speech sounds around time ``t`` (s) -> (opening, [round, wide,
    bite]). The opening follows the sound under ``t`` (a lip closure closes at once); the
    lips' shape blends the sounds within ±``BLEND_S`` by their overlap, and fades with the
    loudness (no pursed lips in a pause)."""
    opened = level_open
    blend = np.zeros(3, np.float32)
    lo, hi = t - BLEND_S, t + BLEND_S
    for ph in phonemes:
        if ph.end <= lo or ph.start >= hi:
            continue
        sym = ph.phoneme[:1]
        if ph.start <= t < ph.end:
            if sym in _BILABIAL:  # the lips meet: the clearest cue a lip-reader has
                opened = 0.0
            elif sym in _LABIODENTAL:
                opened = level_open * 0.35
            else:
                opened = level_open * (0.5 + 0.5 * _VOWELS.get(sym, (0.35, 0.0))[0])
        weight = (min(hi, ph.end) - max(lo, ph.start)) / (hi - lo)
        rounding = _VOWELS.get(sym, (0.0, 0.0))[1] or _ROUND_MORE.get(sym, 0.0)
        blend += weight * np.array([rounding, _WIDE.get(sym, 0.0), 1.0 if sym in _LABIODENTAL else 0.0],
                                   np.float32)
    presence = min(1.0, 4.0 * level_open)
    return opened, blend * presence


def viseme_class(symbol: str) -> int:
    """Index in :data:`VISEME_CLASSES` of a speech sound, from the tables ``_shape`` draws
    with (the audio model is trained on these labels): lips closed (m b p), lip on teeth
    (f v), rounded (rounding >= 0.5), spread (width >= 0.5), open vowel (opening >= 0.5),
    else rest (other consonants, silence)."""
    sym = symbol[:1]
    if sym in _BILABIAL:
        return 1
    if sym in _LABIODENTAL:
        return 2
    if (_VOWELS.get(sym, (0.0, 0.0))[1] or _ROUND_MORE.get(sym, 0.0)) >= 0.5:
        return 3
    if _WIDE.get(sym, 0.0) >= 0.5:
        return 4
    if _VOWELS.get(sym, (0.0, 0.0))[0] >= 0.5:
        return 5
    return 0


def _class_shapes() -> tuple[np.ndarray, np.ndarray]:
    """Per class: the opening factor (lip closure and lip-bite only: loudness keeps driving
    the jaw) and the (round, wide, bite) of its example sound, as ``_shape`` draws them."""
    factor, lips = [], []
    for name, sym in VISEMES.items():
        opened, blend = _shape(1.0, 0.5, (PhonemeTiming(sym, 0.0, 1.0),))
        factor.append(opened if name in ("M B P", "F V") else 1.0)
        lips.append(blend)
    return np.array(factor, np.float32), np.array(lips, np.float32)


_CLASS_OPEN, _CLASS_LIPS = _class_shapes()
SURE_LO, SURE_HI = 0.5, 0.9  # audio model: class probability from which a closure starts, is full


def _shape_from_probs(level_open: float, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """Loudness and the audio model's class probabilities -> (opening, [round, wide, bite]):
    the lips' shape is the classes' shapes weighted by their probability, faded with the
    loudness as in ``_shape``; the lips close (m b p) or meet the teeth (f v) only as far
    as the model is sure (probability 0.5 -> 0.9: not at all -> fully; was 0.4 -> 0.8),
    since a closure it imagines during a vowel is worse than one it misses (on Piper speech
    with alignments: as many true M/B/P frames closed, fewer loud frames shut; r at lag 0
    +0.01-0.02 on the smiling portrait)."""
    p = np.asarray(probs, np.float32)
    sure = np.clip((p - SURE_LO) / (SURE_HI - SURE_LO), 0.0, 1.0)
    opened = level_open * float(np.prod(1.0 - sure * (1.0 - _CLASS_OPEN)))
    presence = min(1.0, 4.0 * level_open)
    return opened, (p @ _CLASS_LIPS) * presence

"""The default, weight-free lip-sync engine: audio-driven mesh warp of lips and jaw.

``prepare`` finds the face (MediaPipe detector + mesh on OpenVINO, cached per image) and
builds the warp; ``render`` turns speech into frames through :class:`MouthTracker`
(loudness and phoneme timings -> smoothed openness/rounding) and :class:`FaceWarp`
(lips, jaw, synthesized mouth interior); ``idle`` gives the listening face with natural
blinks and, when enabled, a slight breathing head motion. With the mouth closed, no
blink and no head motion, a frame is the photo itself.

A video avatar (``prepare`` given (T, H, W, 3) frames) is played as a loop: the face is
tracked through it once (``face.track``, smoothed landmarks), and each output frame is
warped from the next video frame with that frame's landmarks; speech and idle frames
continue the loop from where the other left off, so turns join without a jump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..config import Config
from ..face.analyzer import FaceAnalyzer, FaceLandmarks
from ..face.track import track_faces
from ..models import ModelStore
from ..types import PhonemeTiming
from .base import LipSyncEngine
from .mouth import MouthTracker
from .warp import FaceWarp

BLINK_S = 0.22  # closing 40 %, opening 60 % of it
BLINK_GAP_S = (2.2, 6.5)  # uniform random interval between blinks


@dataclass
class VisemeState:
    """Everything ``render``/``idle`` need for one avatar."""

    image: np.ndarray
    face: FaceLandmarks
    warp: FaceWarp
    mouth: MouthTracker
    blinks: np.ndarray  # blink start times (s), sorted
    speech_t0: float = 0.0  # seconds of speech rendered before this turn (blink clock)
    extra: dict = field(default_factory=dict)
    video: np.ndarray | None = None  # (T, H, W, 3) loop for a video avatar, else None
    faces: list[FaceLandmarks] | None = None  # tracked landmarks per video frame
    video_pos: int = -1  # index (unwrapped) of the last video frame shown
    idle_offset: int | None = None  # idle index = round(t * fps) + idle_offset
    warps: dict[int, FaceWarp] = field(default_factory=dict)  # small cache per video frame

    def base(self, index: int) -> tuple[np.ndarray, FaceWarp, FaceLandmarks]:
        """The source image, its warp and landmarks for output frame ``index`` (video: looped)."""
        if self.video is None or self.faces is None:
            return self.image, self.warp, self.face
        k = index % len(self.video)
        warp = self.warps.get(k)
        if warp is None:
            if len(self.warps) >= 8:  # played in order: the oldest entry is not needed again soon
                self.warps.pop(next(iter(self.warps)))
            warp = self.warps[k] = FaceWarp(self.video[k], self.faces[k])
        return self.video[k], warp, self.faces[k]


class VisemeEngine(LipSyncEngine):
    """Weight-free mouth warp driven by audio features and phoneme timings."""

    name = "viseme"
    reads_ahead = True

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self.cfg = cfg
        self.fps = float(cfg.lipsync.fps)
        self.analyzer = FaceAnalyzer(cfg=cfg, store=store)

    def prepare(self, image_bgr: np.ndarray) -> VisemeState:
        """Analyse the portrait (largest face) and precompute the warp."""
        video = faces = None
        if image_bgr.ndim == 4 and len(image_bgr) > 1:
            video = np.ascontiguousarray(image_bgr)
            faces = track_faces(self.analyzer, video)
        image = np.ascontiguousarray(image_bgr[0] if image_bgr.ndim == 4 else image_bgr)
        face = faces[0] if faces else self.analyzer.analyze(image)
        vc = self.cfg.lipsync.viseme
        model = None
        if vc.audio_model:  # lip shapes from the sound when the TTS gives no phoneme timings
            from .audio_visemes import default_model

            model = default_model()
        mouth = MouthTracker(fps=self.fps, gain=vc.gain, max_open=vc.max_open,
                             attack_s=vc.attack_ms / 1000, release_s=vc.release_ms / 1000,
                             model=model)
        rng = np.random.default_rng(self.cfg.lipsync.seed)
        gaps = rng.uniform(*BLINK_GAP_S, size=2000)
        return VisemeState(image=image, face=face, warp=FaceWarp(image, face), mouth=mouth,
                           blinks=np.cumsum(gaps) - gaps[0] * 0.5, video=video, faces=faces)

    def render(self, state: VisemeState, pcm: np.ndarray, sample_rate: int,
               phonemes: tuple[PhonemeTiming, ...] | None = None,
               ahead: tuple[np.ndarray, tuple[PhonemeTiming, ...] | None] | None = None) -> np.ndarray:
        """(N,) float32 speech -> (F, H, W, 3) uint8 BGR; continues the previous chunk
        (``ahead``: see :meth:`MouthTracker.step`)."""
        first = state.mouth.frames
        params = state.mouth.step(pcm, sample_rate, phonemes, ahead)
        h, w = state.image.shape[:2]
        frames = np.empty((len(params.open), h, w, 3), np.uint8)
        teeth = self.cfg.lipsync.viseme.teeth
        shapes = zip(params.open, params.round, params.wide, params.bite, strict=True)
        for i, (openness, rounding, wide, bite) in enumerate(shapes):
            state.video_pos += 1
            image, warp, face = state.base(state.video_pos)
            frame = frames[i]
            frame[:] = image
            warp.mouth(frame, float(openness), float(rounding), teeth, float(wide), float(bite))
            t = state.speech_t0 + (first + i) / self.fps
            self._alive(warp, face, frame, t, state.blinks)
        state.idle_offset = None  # the next idle frame continues the loop from here
        return frames

    def idle(self, state: VisemeState, t: float) -> np.ndarray:
        """The listening face at ``t`` seconds: mouth closed, blinks, optional head motion."""
        step = int(round(t * self.fps))
        if state.idle_offset is None:
            state.idle_offset = state.video_pos + 1 - step
        state.video_pos = step + state.idle_offset
        image, warp, face = state.base(state.video_pos)
        return self._alive(warp, face, image.copy(), t, state.blinks)

    def reset(self, state: VisemeState) -> None:
        """Close the mouth now and restart the speech counters (turn interrupted or done)."""
        state.speech_t0 += state.mouth.frames / self.fps
        state.mouth.reset()

    def _alive(self, warp: FaceWarp, face: FaceLandmarks, frame: np.ndarray, t: float,
               blinks: np.ndarray) -> np.ndarray:
        if self.cfg.lipsync.blink:
            amount = blink_amount(blinks, t)
            if amount > 0.02:
                warp.blink(frame, amount)
        if self.cfg.lipsync.head_motion:
            frame[:] = head_motion(frame, t, face)
        return frame


def blink_amount(starts: np.ndarray, t: float) -> float:
    """Eyelid closure 0..1 at time ``t`` for blinks starting at ``starts`` (s)."""
    i = int(np.searchsorted(starts, t, side="right")) - 1
    if i < 0:
        return 0.0
    dt = t - starts[i]
    if dt >= BLINK_S:
        return 0.0
    close = 0.4 * BLINK_S
    return float(dt / close if dt < close else 1.0 - (dt - close) / (BLINK_S - close))


def head_motion(frame: np.ndarray, t: float, face: FaceLandmarks) -> np.ndarray:
    """A slight breathing sway: ±0.6 % of the face size shift, ±0.5° roll, slow and smooth."""
    iod = face.inter_ocular
    cx, cy = np.asarray(face.points[:, :2].mean(0), np.float64)
    angle = 0.5 * np.sin(2 * np.pi * t / 5.3)
    dx = 0.025 * iod * np.sin(2 * np.pi * t / 7.1)
    dy = 0.03 * iod * np.sin(2 * np.pi * t / 4.1 + 1.0)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)

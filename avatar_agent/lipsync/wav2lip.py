"""The ``wav2lip`` engine: Wav2Lip (user-supplied weights) run by OpenVINO on a still photo.

Pipeline per speech chunk (as the original Rudrabha/Wav2Lip ``inference.py`` runs it):
audio -> 16 kHz -> :class:`~.mel.MelStream` (exact original front end, one 16-frame mel
window per video frame) -> batched OpenVINO inference on ``(B,1,80,16)`` mel and the
photo's ``(B,6,96,96)`` face input (computed once: masked crop + crop, BGR, 0..1) ->
``(B,3,96,96)`` BGR in 0..1 -> resized to the padded face box and pasted back with a thin
feather. Frames whose audio window is silent skip inference and are the photo itself
(closed mouth, no blur pop, and the speed that makes 40 fps reachable on 2 cores).

The prototype's lessons kept here: the network works in BGR and returns BGR (no RGB
round trip: that was the "brown lips" bug), the crop is pasted back directly, and one
photo is repeated for every frame. No torch at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..audio.io import resample
from ..config import Config
from ..errors import ConfigError, ModelError, NoFaceError
from ..models import ModelStore
from ..types import PhonemeTiming
from . import mel as melfe
from .base import LipSyncEngine

log = logging.getLogger(__name__)

FACE = 96                 # network input/output side (pixels)
FEATHER = 0.04            # feather width as a fraction of the box side ("at most thin")
MIN_BOX = 24              # pixels; smaller faces cannot be rendered meaningfully

# optional hook: (N, 96, 96, 3) uint8 BGR generated faces -> (N, h, w, 3) uint8 BGR (any
# size, e.g. a face restorer's 512 px output); the result is resized to the box and pasted
FaceEnhancer = Callable[[np.ndarray], np.ndarray]


@dataclass
class Wav2LipState:
    """Per-avatar state: the photo, its padded face box, the network's face input, counters."""

    image: np.ndarray                     # (H, W, 3) uint8 BGR, the avatar photo
    box: tuple[int, int, int, int]        # padded, clipped x1, y1, x2, y2 (pixels)
    face: np.ndarray                      # (6, 96, 96) float32: [masked crop, crop] / 255
    alpha: np.ndarray                     # (h, w, 1) float32 paste-back weights (feather)
    stream: melfe.MelStream = field(default_factory=melfe.MelStream)
    seconds: Fraction = Fraction(0)       # audio received this turn (exact)
    frames: int = 0                       # frames emitted this turn


def padded_box(box: tuple[int, int, int, int], pads: tuple[int, int, int, int],
               shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Face box ``x1,y1,x2,y2`` grown by pads ``top,bottom,left,right`` and clipped to the image."""
    top, bottom, left, right = pads
    h, w = shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return max(0, x1 - left), max(0, y1 - top), min(w, x2 + right), min(h, y2 + bottom)


def face_input(crop_bgr: np.ndarray) -> np.ndarray:
    """Face crop (h, w, 3) uint8 BGR -> ``(6, 96, 96)`` float32 network input.

    Channels 0..2: the crop with its lower half (rows 48..95) zeroed, the part the network
    must draw from the audio; channels 3..5: the whole crop (the identity reference).
    Both BGR, as cv2 reads images and as Wav2Lip was trained; scaled to 0..1.
    """
    ref = cv2.resize(crop_bgr, (FACE, FACE), interpolation=cv2.INTER_LINEAR)
    masked = ref.copy()
    masked[FACE // 2:] = 0
    both = np.concatenate([masked, ref], axis=2).astype(np.float32) / 255.0
    return np.ascontiguousarray(both.transpose(2, 0, 1))


def output_faces(pred: np.ndarray) -> np.ndarray:
    """Network output ``(B, 3, 96, 96)`` BGR 0..1 -> ``(B, 96, 96, 3)`` uint8 BGR (no channel swap)."""
    return np.clip(pred.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def feather_alpha(h: int, w: int, frac: float = FEATHER) -> np.ndarray:
    """``(h, w, 1)`` float32: 1 inside, a linear ramp over the outer ``frac`` of the box."""
    width = max(1, int(round(frac * min(h, w))))
    ramp_y = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
    ramp_x = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
    a = np.minimum.outer(ramp_y, ramp_x)
    return np.clip((a + 1) / (width + 1), 0, 1)[..., None].astype(np.float32)


def paste(frame: np.ndarray, face96: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray) -> None:
    """Resize a ``(96, 96, 3)`` face to ``box`` and blend it into ``frame`` in place."""
    x1, y1, x2, y2 = box
    face = cv2.resize(face96, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    region = frame[y1:y2, x1:x2]
    blended = region + alpha * (face.astype(np.float32) - region)
    frame[y1:y2, x1:x2] = (blended + 0.5).astype(np.uint8)


def _check_model_file(path: Path) -> None:
    """Refuse a file that is no OpenVINO IR (``<net>`` XML) before OpenVINO reads it: its
    fallback readers (TensorFlow text format, ...) print native log lines on garbage."""
    if path.suffix.lower() != ".xml":
        return
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()  # an IR's XML is small (the weights are in .bin)
        ok = root.tag == "net" and root.find("layers") is not None
    except (ET.ParseError, OSError):
        ok = False
    if not ok:
        raise ModelError(f"lipsync.wav2lip.model: {path.name} is not an OpenVINO IR (.xml with a <net>)",
                         hint="convert it again: avatar-agent models convert-wav2lip CHECKPOINT.pth")


class _Network:
    """The compiled OpenVINO model and one reusable infer request."""

    def __init__(self, path: Path, device: str, precision: str) -> None:
        import openvino as ov

        _check_model_file(path)
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        try:
            model = core.read_model(str(path))
            if device.upper().startswith("CPU"):
                caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
                bf16 = precision == "bf16" or (precision == "auto" and "BF16" in caps)
                config["INFERENCE_PRECISION_HINT"] = "bf16" if bf16 else "f32"
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:  # not an IR/ONNX OpenVINO reads, or a device it lacks
            first = (str(exc).strip().splitlines() or ["unreadable"])[-1][:120]
            raise ModelError(f"lipsync.wav2lip.model: cannot load {path.name} on {device}: {first}",
                             hint="convert it again: avatar-agent models convert-wav2lip CHECKPOINT.pth") from None
        self.precision = config.get("INFERENCE_PRECISION_HINT", "device default")
        ports = list(self.compiled.inputs)
        names = [p.get_any_name() for p in ports]
        # our IR names its ports; an ONNX export keeps the forward() order (mel, face)
        self._mel = ports[names.index("mel")] if "mel" in names else ports[0]
        self._face = ports[names.index("face")] if "face" in names else ports[1]
        self._request = self.compiled.create_infer_request()

    def __call__(self, mel: np.ndarray, face: np.ndarray) -> np.ndarray:
        """``(B,1,80,16)``, ``(B,6,96,96)`` float32 -> ``(B,3,96,96)`` float32."""
        result = self._request.infer({self._mel: mel, self._face: face})
        return np.asarray(result[self.compiled.outputs[0]])


class Wav2LipEngine(LipSyncEngine):
    """Wav2Lip on OpenVINO: speech chunks -> lip-synced BGR frames of one photo."""

    name = "wav2lip"

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self.cfg = cfg
        self.store = store
        self.opts = cfg.lipsync.wav2lip
        self.fps = float(cfg.lipsync.fps)
        self._fps = Fraction(cfg.lipsync.fps)
        self.enhance: FaceEnhancer | None = None     # optional hook, e.g. a face restorer
        self.model_path = self._find_model(Path(self.opts.model))
        self._net: _Network | None = None

    def _find_model(self, path: Path) -> Path:
        """The IR/ONNX file; relative names are also looked up in the model store folder."""
        candidates = [path] if path.is_absolute() else [path, self.store.root / path.name]
        for p in candidates:
            if p.is_file():
                return p
        raise ModelError(f"Wav2Lip model not found: {path}",
                         hint="convert your checkpoint with: avatar-agent models convert-wav2lip PATH.pth")

    @property
    def network(self) -> _Network:
        """The compiled network (compiled on first use)."""
        if self._net is None:
            self._net = _Network(self.model_path, self.opts.device, self.opts.precision)
            log.info("wav2lip network compiled", extra={"device": self.opts.device,
                                                       "precision": self._net.precision})
        return self._net

    # ---------------------------------------------------------------- avatar
    def _face_box(self, image: np.ndarray) -> tuple[int, int, int, int]:
        """``cfg.avatar.box`` when set, else the project's face analysis."""
        if self.cfg.avatar.box is not None:
            x1, y1, x2, y2 = self.cfg.avatar.box
            h, w = image.shape[:2]
            if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                raise ConfigError(f"avatar.box {self.cfg.avatar.box} is not inside the {w}x{h} image",
                                  hint="give x1,y1,x2,y2 in pixels with x1<x2<=width, y1<y2<=height")
            return x1, y1, x2, y2
        from ..face.analyzer import FaceAnalyzer

        # the detector's box plays the part of the original's S3FD box (cached per image)
        box = FaceAnalyzer(cfg=self.cfg, store=self.store).analyze(image).box
        return tuple(int(round(v)) for v in box)  # type: ignore[return-value]

    def prepare(self, image_bgr: np.ndarray) -> Wav2LipState:
        """Find the face box once, build the network's face input and the feather mask."""
        image = np.ascontiguousarray(image_bgr)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise NoFaceError("the avatar must be an (H, W, 3) uint8 BGR image")
        box = padded_box(self._face_box(image), tuple(self.opts.pads), image.shape)
        x1, y1, x2, y2 = box
        if min(x2 - x1, y2 - y1) < MIN_BOX:
            raise NoFaceError(f"face box {box} is too small for Wav2Lip (< {MIN_BOX} px)",
                              hint="use a larger portrait or set avatar.box")
        self.network  # noqa: B018 - compile now, not on the first spoken frame
        return Wav2LipState(image=image, box=box, face=face_input(image[y1:y2, x1:x2]),
                            alpha=feather_alpha(y2 - y1, x2 - x1))

    # ---------------------------------------------------------------- frames
    def render(self, state: Wav2LipState, pcm: np.ndarray, sample_rate: int,
               phonemes: tuple[PhonemeTiming, ...] | None = None) -> np.ndarray:
        """``(N,)`` float32 speech at ``sample_rate`` -> ``(F, H, W, 3)`` uint8 BGR frames.

        ``F`` keeps the turn's total at ``round(total_seconds * fps)``; the mel stream
        carries the audio tail, so chunk boundaries leave no seam. ``phonemes`` unused.
        """
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        state.seconds += Fraction(len(pcm), int(sample_rate))
        state.stream.push(resample(pcm, int(sample_rate), melfe.SAMPLE_RATE))
        count = round(state.seconds * self._fps) - state.frames
        frames = np.empty((max(count, 0), *state.image.shape), dtype=np.uint8)
        frames[:] = state.image
        if count > 0:
            windows, loudness = state.stream.windows(state.frames, count, self.fps)
            speaking = np.ones(count, bool)
            if self.opts.skip_silence:
                speaking = loudness > self.opts.silence_db
            self._draw(state, frames, windows, np.nonzero(speaking)[0])
            state.frames += count
            state.stream.trim(state.frames, self.fps)
        return frames

    def _draw(self, state: Wav2LipState, frames: np.ndarray, windows: np.ndarray, which: np.ndarray) -> None:
        """Run the network on the frames ``which`` in batches and paste the faces back."""
        batch = self.opts.batch_size
        for lo in range(0, len(which), batch):
            idx = which[lo:lo + batch]
            faces = np.broadcast_to(state.face, (len(idx), *state.face.shape))
            pred = output_faces(self.network(windows[idx], np.ascontiguousarray(faces)))
            if self.enhance is not None:
                pred = self.enhance(pred)
            for k, i in enumerate(idx):
                paste(frames[i], pred[k], state.box, state.alpha)

    def idle(self, state: Wav2LipState, t: float) -> np.ndarray:
        """The photo itself (mouth closed); Wav2Lip has no idle animation."""
        return state.image.copy()

    def reset(self, state: Wav2LipState) -> None:
        """Start a new turn: forget the audio tail and the counters."""
        state.stream.reset()
        state.seconds = Fraction(0)
        state.frames = 0

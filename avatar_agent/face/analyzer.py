"""Face analysis for the avatar: detector + 468-point mesh, with a per-image disk cache.

``FaceAnalyzer(cfg=cfg, store=store).analyze(image_bgr)`` returns the largest face's
:class:`FaceLandmarks` (documented choice when several faces are present) or raises a
one-line :class:`NoFaceError`. A fixed ``avatar.box`` skips detection (the mesh still runs
inside it). Results are cached under ``<model home>/.cache/face/<sha1>.npz``, keyed by the
image bytes and the settings, so a photo is analysed once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import ConfigError, NoFaceError
from ..models import ModelStore
from .detector import Detection, FaceDetector
from .mesh import LOWER_INNER_LIP, UPPER_INNER_LIP, FaceMesh, Roi, roi_from_detection

log = logging.getLogger(__name__)

# landmark indices used by the engines (MediaPipe face mesh topology)
RIGHT_EYE_CENTRE = (33, 133)  # outer, inner corner (subject's right = image left)
LEFT_EYE_CENTRE = (362, 263)
MOUTH_CORNERS = (61, 291)
NOSE_BOTTOM = 2
CHIN = 152
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
RIGHT_EYE_LIDS = (159, 145)  # upper, lower lid centre
LEFT_EYE_LIDS = (386, 374)
RIGHT_BROW, LEFT_BROW = 105, 334
MIN_MESH_SCORE = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: ``points`` (468, 3) float32 image pixels (z relative), ``box`` x1,y1,x2,y2 px."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    score: float

    @property
    def inter_ocular(self) -> float:
        """Distance between the eye centres in pixels."""
        r = self.points[list(RIGHT_EYE_CENTRE), :2].mean(0)
        l = self.points[list(LEFT_EYE_CENTRE), :2].mean(0)  # noqa: E741
        return float(np.linalg.norm(l - r))

    @property
    def roll(self) -> float:
        """Head roll in radians (0 = eyes level)."""
        r = self.points[list(RIGHT_EYE_CENTRE), :2].mean(0)
        l = self.points[list(LEFT_EYE_CENTRE), :2].mean(0)  # noqa: E741
        return float(np.arctan2(l[1] - r[1], l[0] - r[0]))

    def mouth_aperture(self) -> float:
        """Inner-lip gap (points 13–14) divided by the inter-ocular distance."""
        gap = np.linalg.norm(self.points[UPPER_INNER_LIP, :2] - self.points[LOWER_INNER_LIP, :2])
        return float(gap / max(self.inter_ocular, 1e-6))

    def lower_face_box(self, margin: float = 0.6) -> tuple[int, int, int, int]:
        """x1, y1, x2, y2 of the region the lip-sync may change: nose base to below the chin,
        jaw to jaw, grown by ``margin`` × inter-ocular distance below and at the sides."""
        iod = self.inter_ocular
        pts = self.points[:, :2]
        y1 = pts[NOSE_BOTTOM, 1]
        y2 = pts[CHIN, 1] + margin * iod
        below = pts[pts[:, 1] >= y1]
        x1, x2 = below[:, 0].min() - margin * iod * 0.5, below[:, 0].max() + margin * iod * 0.5
        return int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))


class FaceAnalyzer:
    """Detect the largest face and fit the 468-point mesh (OpenVINO on MediaPipe .tflite)."""

    def __init__(self, *, cfg: Config, store: ModelStore) -> None:
        self.cfg = cfg
        self.store = store
        self._detector: FaceDetector | None = None
        self._mesh: FaceMesh | None = None

    def _models(self) -> tuple[FaceDetector, FaceMesh]:
        if self._detector is None or self._mesh is None:
            folder = self.store.path("mediapipe-face").parent  # checks every file's hash
            precision = self.cfg.face.precision
            self._detector = FaceDetector(folder, self.cfg.face.detector, min_score=self.cfg.face.min_score,
                                          precision=precision)
            self._mesh = FaceMesh(folder, precision=precision)
        return self._detector, self._mesh

    def landmarks(self, image_bgr: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Mesh points (468, 3) px and score for a given ROI (no detection, no cache)."""
        return self._models()[1].refine(image_bgr, roi)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All detected faces, best first."""
        return self._models()[0].detect(image_bgr)

    def analyze(self, image_bgr: np.ndarray, *, name: str = "the avatar image") -> FaceLandmarks:
        """The largest face of ``image_bgr``; :class:`NoFaceError` when there is none usable."""
        cache = self._cache_path(image_bgr)
        if cache is not None and cache.is_file():
            cached = _read_cache(cache)
            if cached is not None:
                return cached
        face = self._analyze(image_bgr, name)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp.npz")
                np.savez(tmp, points=face.points, box=np.array(face.box), score=np.array(face.score))
                tmp.replace(cache)
            except OSError as exc:  # a read-only or full disk only costs the next start time
                log.warning("face cache not written", extra={"error": exc.strerror or str(exc)})
        return face

    def _analyze(self, image_bgr: np.ndarray, name: str) -> FaceLandmarks:
        h, w = image_bgr.shape[:2]
        hint = "use a frontal portrait with one clear face, or set avatar.box to x1,y1,x2,y2"
        if self.cfg.avatar.box is not None:
            x1, y1, x2, y2 = self.cfg.avatar.box
            if x2 > w or y2 > h:
                raise ConfigError(f"avatar.box {list(self.cfg.avatar.box)} lies outside {name} ({w}x{h})",
                                  hint="give x1,y1,x2,y2 inside the image, or remove avatar.box "
                                       "to detect the face")
            hint = ("check avatar.box: x1,y1,x2,y2 around the whole face, or remove it to "
                    "detect the face")
            name = f"avatar.box {list(self.cfg.avatar.box)} of {name}"
            roi = Roi((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.5, 0.0)
            box = (float(x1), float(y1), float(x2), float(y2))
        else:
            faces = self.detect(image_bgr)
            if not faces:
                raise NoFaceError(f"no face found in {name}", hint=hint)
            det = max(faces, key=lambda d: d.area)  # several faces: the largest one speaks
            x1, y1, x2, y2 = det.box  # clipped to the image by the detector
            if min(x1, y1) <= 1 or x2 >= w - 1 or y2 >= h - 1:
                raise NoFaceError(f"the face in {name} is cut by the image border",
                                  hint="use a photo that shows the whole face with some margin")
            if min(det.width, det.height) < self.cfg.face.min_face_px:
                raise NoFaceError(
                    f"the face in {name} is too small ({det.width:.0f} px wide, minimum "
                    f"{self.cfg.face.min_face_px})", hint="use a closer or larger portrait")
            roi, box = roi_from_detection(det), det.box
        points, score = self.landmarks(image_bgr, roi)
        if score < MIN_MESH_SCORE:
            raise NoFaceError(f"no usable face in {name} (mesh score {score:.2f})", hint=hint)
        face = FaceLandmarks(points, box, score)
        lo, hi = points[:, :2].min(0), points[:, :2].max(0)
        margin = 0.02 * face.inter_ocular
        if lo[0] < -margin or lo[1] < -margin or hi[0] > w + margin or hi[1] > h + margin:
            raise NoFaceError(f"the face in {name} is cut by the image border",
                              hint="use a photo that shows the whole face with some margin")
        return face

    def _cache_path(self, image_bgr: np.ndarray) -> Path | None:
        if not self.cfg.face.cache:
            return None
        key = hashlib.sha1(np.ascontiguousarray(image_bgr).tobytes())
        key.update(repr((image_bgr.shape, self.cfg.face.detector, self.cfg.face.min_score,
                         self.cfg.face.min_face_px, self.cfg.avatar.box, self.cfg.face.precision, 1)).encode())
        return self.store.root / ".cache" / "face" / f"{key.hexdigest()}.npz"


def _read_cache(path: Path) -> FaceLandmarks | None:
    """The cached analysis, or None (logged) when the file is unreadable or not ours."""
    try:
        with np.load(path) as z:
            points = np.asarray(z["points"])
            box = tuple(float(v) for v in z["box"])
            score = float(z["score"])
        if points.shape != (468, 3) or len(box) != 4 or not np.isfinite(points).all():
            raise ValueError(f"unexpected shapes {points.shape}, {len(box)}")
    except Exception as exc:  # noqa: BLE001 - any damage means: analyse the image again
        log.warning("face cache unreadable, analysing again",
                    extra={"file": path.name, "error": type(exc).__name__})
        return None
    return FaceLandmarks(points, box, score)

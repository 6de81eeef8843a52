"""MediaPipe 468-point face mesh run by OpenVINO, with the rotated ROI crop written here.

The mesh model sees a 192×192 RGB crop in [0, 1] of a square, rotated region around the
face (1.5× the face box, rotated so the eyes are level, as MediaPipe's
``face_detection_front_detection_to_roi`` does); its 468×(x, y, z) output in crop pixels
is mapped back to image pixels with the inverse affine transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .detector import Detection, _core

MESH_SIZE = 192
ROI_SCALE = 1.5
# landmark indices (subject's right = image left on a frontal photo)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14


@dataclass(frozen=True)
class Roi:
    """A square rotated region: centre (x, y) px, side px, rotation rad (eyes made level)."""

    cx: float
    cy: float
    size: float
    angle: float

    def affine(self, out: int = MESH_SIZE) -> np.ndarray:
        """2×3 matrix mapping image pixels to the ``out``×``out`` crop."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = np.array([c, s]) * self.size  # the crop's x axis in image pixels
        v = np.array([-s, c]) * self.size  # its y axis
        centre = np.array([self.cx, self.cy])
        tl = centre - u / 2 - v / 2
        src = np.float32([tl, tl + u, tl + v])
        dst = np.float32([[0, 0], [out, 0], [0, out]])
        return cv2.getAffineTransform(src, dst)


def roi_from_detection(det: Detection) -> Roi:
    """The mesh ROI for a detector box: rotation from the two eye keypoints."""
    (x1, y1, x2, y2), kp = det.box, det.keypoints
    angle = float(np.arctan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0]))
    return Roi((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * ROI_SCALE, angle)


def roi_from_landmarks(points: np.ndarray) -> Roi:
    """The mesh ROI for a previous landmark set (MediaPipe's landmarks-to-ROI)."""
    a, b = points[RIGHT_EYE_OUTER, :2], points[LEFT_EYE_OUTER, :2]
    angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
    c, s = np.cos(-angle), np.sin(-angle)
    centre0 = points[:, :2].mean(0)
    # box of the points in the face's own (de-rotated) frame
    rel = (points[:, :2] - centre0) @ np.array([[c, s], [-s, c]])
    lo, hi = rel.min(0), rel.max(0)
    mid = (lo + hi) / 2
    centre = centre0 + mid @ np.array([[c, -s], [s, c]])
    return Roi(float(centre[0]), float(centre[1]), float((hi - lo).max() * ROI_SCALE), angle)


class FaceMesh:
    """468-point face mesh. ``landmarks(image_bgr, roi)`` -> ((468, 3) px, score 0..1)."""

    def __init__(self, model_dir: Path, *, precision: str = "f32") -> None:
        core = _core()
        self._model = core.compile_model(
            core.read_model(str(Path(model_dir) / "face_landmark.tflite")), "CPU",
            {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision})
        self._request = self._model.create_infer_request()

    def landmarks(self, image_bgr: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Landmarks (468, 3) float32 in image pixels (z in pixels, relative) and face score."""
        m = roi.affine()
        crop = cv2.warpAffine(image_bgr, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        out = self._request.infer({0: x})
        pts = np.asarray(out[self._model.output(0)], np.float32).reshape(468, 3)
        logit = float(np.asarray(out[self._model.output(1)]).reshape(-1)[0])
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        inv = cv2.invertAffineTransform(m)
        xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = pts[:, 2:] * (roi.size / MESH_SIZE)
        return np.concatenate([xy, z], axis=1).astype(np.float32), float(score)

    def refine(self, image_bgr: np.ndarray, roi: Roi, passes: int = 2) -> tuple[np.ndarray, float]:
        """Run the mesh, then again on the ROI its own landmarks give (tighter, level crop)."""
        pts, score = self.landmarks(image_bgr, roi)
        for _ in range(passes - 1):
            pts, score = self.landmarks(image_bgr, roi_from_landmarks(pts))
        return pts, score

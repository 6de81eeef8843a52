"""Face tracking through a short avatar video (a loop of a talking or idle face).

The first frame is analysed like a photo (detector + mesh, largest face, cached); every
next frame runs only the mesh, on the ROI the previous frame's landmarks give (as
MediaPipe's face-mesh graph does), and falls back to the detector when the mesh loses
the face. Landmarks are then smoothed over time with a centred moving average of
``SMOOTH`` frames (Wav2Lip smooths its boxes over 5 frames the same way) taken
circularly, because the video is played as a loop: the last frame's neighbours are the
first ones, so the seam does not jump.
"""

from __future__ import annotations

import numpy as np

from ..errors import NoFaceError
from .analyzer import MIN_MESH_SCORE, FaceAnalyzer, FaceLandmarks
from .mesh import roi_from_detection, roi_from_landmarks

SMOOTH = 5  # frames in the moving average (odd)


def track_faces(analyzer: FaceAnalyzer, frames: np.ndarray, *, name: str = "the avatar video",
                smooth: int = SMOOTH) -> list[FaceLandmarks]:
    """Landmarks for every frame of ``frames`` (T, H, W, 3) uint8 BGR, smoothed in time.

    Raises :class:`NoFaceError` (one line, naming the frame) when a frame has no face.
    """
    first = analyzer.analyze(np.ascontiguousarray(frames[0]), name=f"{name} (frame 0)")
    points = [first.points]
    scores = [first.score]
    for t in range(1, len(frames)):
        frame = np.ascontiguousarray(frames[t])
        pts, score = analyzer.landmarks(frame, roi_from_landmarks(points[-1]))
        if score < MIN_MESH_SCORE:
            # lost it (fast motion, occlusion): find the face again from scratch
            dets = analyzer.detect(frame)
            if not dets:
                raise NoFaceError(f"no face found in {name} at frame {t}",
                                  hint="use a video where the face stays in view")
            pts, score = analyzer.landmarks(frame, roi_from_detection(max(dets, key=lambda d: d.area)))
            if score < MIN_MESH_SCORE:
                raise NoFaceError(f"no usable face in {name} at frame {t}",
                                  hint="use a video where the face stays in view")
        points.append(pts)
        scores.append(score)
    smoothed = smooth_points(np.stack(points), smooth)
    return [FaceLandmarks(p, _box(p), float(s)) for p, s in zip(smoothed, scores, strict=True)]


def smooth_points(points: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """Circular centred moving average over time of (T, N, 3) landmarks."""
    t = len(points)
    if window <= 1 or t < 3:
        return points.astype(np.float32)
    half = min(window // 2, (t - 1) // 2)
    idx = (np.arange(t)[:, None] + np.arange(-half, half + 1)[None, :]) % t
    return points[idx].mean(axis=1).astype(np.float32)


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

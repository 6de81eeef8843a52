"""MediaPipe BlazeFace detectors (short and full range) run by OpenVINO.

The ``.tflite`` files come from the model store (``mediapipe-face``). OpenVINO reads
them directly; the SSD anchors, box decoding and weighted non-max suppression that
MediaPipe's calculators normally do are written here (parameters from MediaPipe's
``face_detection_{short,full}_range.pbtxt``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# model -> (input size, SSD strides, anchors per cell location)
# short range: 4 layers at strides 8,16,16,16 with 2 anchors each -> 16²·2 + 8²·6 = 896
# full range: one layer at stride 4 with 1 anchor -> 48² = 2304
_SPECS = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": ("face_detection_full_range.tflite", 192, (4,), 1),
}
_SCORE_CLIP = 100.0  # MediaPipe clips raw logits to ±100 before the sigmoid
_NMS_IOU = 0.3


@dataclass(frozen=True)
class Detection:
    """One detected face in image pixels.

    ``box``: (x1, y1, x2, y2) float pixels; ``keypoints``: (6, 2) pixels in the order
    right eye, left eye, nose tip, mouth centre, right ear, left ear (subject's sides);
    ``score``: 0..1.
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(0.0, self.width) * max(0.0, self.height)


def anchors(size: int, strides: tuple[int, ...], per_cell: int) -> np.ndarray:
    """SSD anchor centres ``(A, 2)`` in [0, 1] (fixed anchor size 1, offset 0.5)."""
    out = []
    i = 0
    while i < len(strides):
        # consecutive layers with the same stride share one grid (MediaPipe's SsdAnchors)
        stride = strides[i]
        n = 0
        while i < len(strides) and strides[i] == stride:
            n += per_cell
            i += 1
        grid = int(np.ceil(size / stride))
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, n, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


class FaceDetector:
    """BlazeFace on OpenVINO. ``detect(image_bgr)`` -> list of :class:`Detection`, best first."""

    def __init__(self, model_dir: Path, kind: str = "full", *, min_score: float = 0.5,
                 precision: str = "f32") -> None:
        file, self.size, strides, per_cell = _SPECS[kind]
        self.kind = kind
        self.min_score = min_score
        self._anchors = anchors(self.size, strides, per_cell)
        core = _core()
        self._model = core.compile_model(core.read_model(str(Path(model_dir) / file)), "CPU",
                                         {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision})
        self._request = self._model.create_infer_request()

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All faces with score >= ``min_score`` in a (H, W, 3) uint8 BGR image, best first."""
        h, w = image_bgr.shape[:2]
        tensor, scale, pad = _letterbox(image_bgr, self.size)
        # BlazeFace expects RGB scaled to [-1, 1]
        x = (tensor.astype(np.float32) / 127.5 - 1.0)[None]
        out = self._request.infer({0: x})
        reg = np.asarray(out[self._model.output(0)]).reshape(-1, 16)
        logits = np.asarray(out[self._model.output(1)], np.float64).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -_SCORE_CLIP, _SCORE_CLIP)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        reg, scores, anc = reg[keep], scores[keep], self._anchors[keep]
        # decode: offsets in input pixels relative to the anchor centre
        pts = reg.reshape(-1, 8, 2) / self.size
        cx = pts[:, 0, 0] + anc[:, 0]
        cy = pts[:, 0, 1] + anc[:, 1]
        bw, bh = pts[:, 1, 0], pts[:, 1, 1]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = pts[:, 2:, :] + anc[:, None, :]
        dets = []
        for idx_group in _weighted_nms_groups(boxes, scores):
            wts = scores[idx_group][:, None]
            box = (boxes[idx_group] * wts).sum(0) / wts.sum()
            kp = (kps[idx_group] * wts[:, :, None]).sum(0) / wts.sum()
            # back from the letterboxed square to image pixels
            box_px = (box * self.size - np.tile(pad, 2)) / scale
            kp_px = (kp * self.size - pad) / scale
            box_px = np.clip(box_px, 0, [w, h, w, h])
            dets.append(Detection(tuple(float(v) for v in box_px), kp_px.astype(np.float32),
                                  float(scores[idx_group[0]])))
        return dets


def _letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Resize keeping the aspect ratio onto a black square; returns RGB, scale, (pad_x, pad_y)."""
    h, w = image_bgr.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = resized
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), scale, np.array([px, py], np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms_groups(boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    """MediaPipe's weighted NMS: groups of overlapping candidates, best-scoring group first."""
    order = np.argsort(-scores)
    groups = []
    while order.size:
        overlap = _iou(boxes[order[0]], boxes[order]) > _NMS_IOU
        groups.append(order[overlap])
        order = order[~overlap]
    return groups


@functools.lru_cache(maxsize=1)
def _core():
    import openvino as ov

    return ov.Core()

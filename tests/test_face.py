"""Face analysis on real portraits: MediaPipe detector + mesh (.tflite) run by OpenVINO."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar_agent.config import Config
from avatar_agent.errors import InputError, NoFaceError
from avatar_agent.face.analyzer import FaceAnalyzer
from avatar_agent.face.avatar import load_avatar, load_image
from avatar_agent.face.detector import FaceDetector, anchors
from avatar_agent.face.mesh import FaceMesh, roi_from_landmarks


def _analyzer(store, **face) -> FaceAnalyzer:
    return FaceAnalyzer(cfg=Config(face={"cache": False, **face}), store=store)


@pytest.fixture(scope="module")
def folder(store):
    return store.path("mediapipe-face").parent


def test_anchor_grids_match_the_models_outputs():
    # 896 and 2304 rows are what the .tflite heads emit (read with OpenVINO)
    assert anchors(128, (8, 16, 16, 16), 2).shape == (896, 2)
    full = anchors(192, (4,), 1)
    assert full.shape == (2304, 2)
    assert np.allclose(full[0], [0.5 / 48, 0.5 / 48]) and np.allclose(full[-1], [1 - 0.5 / 48] * 2)


@pytest.mark.parametrize("kind", ["short", "full"])
def test_detector_finds_the_astronaut(folder, face_bgr, kind):
    dets = FaceDetector(folder, kind).detect(face_bgr)
    assert len(dets) == 1
    det = dets[0]
    assert det.score > 0.8
    # the face is at about x 175..280, y 70..175 in the 512² photo
    x1, y1, x2, y2 = det.box
    assert 160 < x1 < 195 and 260 < x2 < 295 and 55 < y1 < 95 and 160 < y2 < 190, det.box
    right_eye, left_eye, nose, mouth = det.keypoints[:4]
    assert right_eye[0] < nose[0] < left_eye[0]  # subject's right eye is on the image left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]


def test_mesh_points_land_on_the_features(store, face_bgr, hopper_bgr):
    for image in (face_bgr, hopper_bgr):
        face = _analyzer(store).analyze(image)
        assert face.points.shape == (468, 3) and face.points.dtype == np.float32
        x1, y1, x2, y2 = face.box
        inside = ((face.points[:, 0] > x1 - 0.2 * (x2 - x1)) & (face.points[:, 0] < x2 + 0.2 * (x2 - x1))
                  & (face.points[:, 1] > y1 - 0.3 * (y2 - y1)) & (face.points[:, 1] < y2 + 0.2 * (y2 - y1)))
        assert inside.all()
        assert 0.3 * (x2 - x1) < face.inter_ocular < 0.7 * (x2 - x1)
        assert abs(np.degrees(face.roll)) < 8
    # Grace Hopper's lips are closed; the smiling astronaut shows her teeth
    assert _analyzer(store).analyze(hopper_bgr).mouth_aperture() < 0.05
    assert _analyzer(store).analyze(face_bgr).mouth_aperture() > 0.08


def test_mesh_follows_a_tilted_head(store, face_bgr):
    level = _analyzer(store).analyze(face_bgr)
    centre = tuple(float(v) for v in level.points[:, :2].mean(0))
    tilted = cv2.warpAffine(face_bgr, cv2.getRotationMatrix2D(centre, -20, 1.0), (512, 512))
    face = _analyzer(store).analyze(tilted)
    assert np.degrees(face.roll - level.roll) == pytest.approx(20, abs=3)
    # the landmarks rotate with the image: compare with the rotated rest landmarks
    m = cv2.getRotationMatrix2D(centre, -20, 1.0)
    expected = level.points[:, :2] @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(face.points[:, :2] - expected, axis=1)
    assert np.median(err) < 0.06 * level.inter_ocular


def test_mesh_reads_its_own_landmarks_back(folder, face_bgr, store):
    # refining from its own ROI is stable: noise well under 2 % of the inter-ocular distance
    face = _analyzer(store).analyze(face_bgr)
    again, score = FaceMesh(folder).refine(face_bgr, roi_from_landmarks(face.points))
    assert score > 0.9
    assert np.abs(again[:, :2] - face.points[:, :2]).max() < 0.05 * face.inter_ocular


def test_no_face_is_one_clear_line(store):
    gray = np.full((400, 400, 3), 128, np.uint8)
    with pytest.raises(NoFaceError) as err:
        _analyzer(store).analyze(gray, name="blank.png")
    text = str(err.value)
    assert "no face found in blank.png" in text and "avatar.box" in text and "\n" not in text


def test_tiny_face_is_rejected(store, face_bgr):
    tiny = cv2.resize(face_bgr, (160, 160), interpolation=cv2.INTER_AREA)
    with pytest.raises(NoFaceError, match="too small"):
        _analyzer(store).analyze(tiny)
    # the same face passes when the threshold allows it
    assert _analyzer(store, min_face_px=24).analyze(tiny).inter_ocular > 8


def test_face_cut_by_the_border_is_rejected(store, face_bgr):
    with pytest.raises(NoFaceError, match="cut by the image border|no face found"):
        _analyzer(store).analyze(np.ascontiguousarray(face_bgr[:, 222:]))


def test_several_faces_the_largest_speaks(store, face_bgr, hopper_bgr):
    canvas = np.full((700, 1200, 3), 200, np.uint8)
    canvas[:512, :512] = face_bgr  # astronaut face ~105 px
    canvas[50:650, 650:1162] = hopper_bgr  # Hopper face ~210 px: the largest
    analyzer = _analyzer(store)
    assert len(analyzer.detect(canvas)) == 2
    face = analyzer.analyze(canvas)
    assert face.box[0] > 650


def test_fixed_box_skips_detection(store, hopper_bgr):
    auto = _analyzer(store).analyze(hopper_bgr)
    box = tuple(int(v) for v in auto.box)
    fixed = FaceAnalyzer(cfg=Config(face={"cache": False}, avatar={"box": box}), store=store)
    face = fixed.analyze(hopper_bgr)
    assert fixed._detector is not None and face.box == tuple(float(v) for v in box)
    assert np.median(np.linalg.norm(face.points[:, :2] - auto.points[:, :2], axis=1)) < 0.05 * auto.inter_ocular


def test_cache_answers_without_running_the_models(store, hopper_bgr):
    cfg = Config(face={"cache": True})
    first = FaceAnalyzer(cfg=cfg, store=store).analyze(hopper_bgr)
    second_analyzer = FaceAnalyzer(cfg=cfg, store=store)
    second = second_analyzer.analyze(hopper_bgr)
    assert second_analyzer._detector is None  # served from the disk cache
    assert np.array_equal(first.points, second.points) and first.box == second.box
    # a different image is a different key
    other = hopper_bgr.copy()
    other[0, 0] ^= 1
    assert second_analyzer._cache_path(other) != second_analyzer._cache_path(hopper_bgr)


def test_load_avatar_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="avatar image not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read avatar image"):
        load_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        load_image(empty)


def test_load_avatar_reads_a_photo_as_bgr(tmp_path, face_bgr):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face_bgr)
    image = load_avatar(Config(avatar={"image": path}).avatar)
    assert image.shape == face_bgr.shape and np.array_equal(image, face_bgr)

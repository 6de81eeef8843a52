"""A short video avatar: the face is tracked per frame (smoothed) and the viseme engine
plays the video as a loop, opening the mouth of whichever frame is showing."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from avatar_agent.config import Config
from avatar_agent.errors import NoFaceError
from avatar_agent.face.analyzer import FaceAnalyzer
from avatar_agent.face.avatar import load_avatar
from avatar_agent.face.track import smooth_points, track_faces
from avatar_agent.lipsync.viseme import VisemeEngine

SR = 16000
T = 30


def _shift(k: int) -> tuple[float, float]:
    """The head's sway in the synthetic video, pixels."""
    return 8 * np.sin(2 * np.pi * k / T), 4 * np.sin(2 * np.pi * k / T + 1)


@pytest.fixture(scope="module")
def video_path(tmp_path_factory, hopper_bgr):
    """A 30-frame mp4 of Grace Hopper's portrait swaying a few pixels (H.264, as users bring)."""
    path = tmp_path_factory.mktemp("video") / "sway.mp4"
    h, w = hopper_bgr.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "12"}
        for k in range(T):
            m = np.float32([[1, 0, _shift(k)[0]], [0, 1, _shift(k)[1]]])
            frame = cv2.warpAffine(hopper_bgr, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(video_path):
    frames = load_avatar(Config(avatar={"video": video_path}).avatar)
    assert frames.shape[0] == T and frames.ndim == 4
    return frames


def test_landmarks_follow_the_head(store, video, hopper_bgr):
    analyzer = FaceAnalyzer(cfg=Config(face={"cache": False}), store=store)
    rest = analyzer.analyze(hopper_bgr)
    faces = track_faces(analyzer, video)
    assert len(faces) == T
    for k, face in enumerate(faces):
        moved = np.median(face.points[:, :2] - rest.points[:, :2], axis=0)
        # the smoothing window (5 frames of a 30-frame sine) shrinks the sway by < 10 %
        assert np.allclose(moved, _shift(k), atol=1.5), (k, moved, _shift(k))


def test_smoothing_is_circular_for_a_loop():
    pts = np.zeros((10, 2, 3), np.float32)
    pts[0] = 10.0  # a spike on the first frame spreads onto the last ones too
    out = smooth_points(pts, 5)
    assert out[0, 0, 0] == pytest.approx(2.0)
    assert out[-1, 0, 0] == pytest.approx(2.0) and out[-2, 0, 0] == pytest.approx(2.0)
    assert out[3, 0, 0] == 0.0


def test_engine_plays_the_video_as_a_loop(store, speak, video):
    engine = VisemeEngine(cfg=Config(lipsync={"blink": False}, face={"cache": False}), store=store)
    state = engine.prepare(video)
    # idle follows the loop
    idle = [engine.idle(state, k / 25) for k in range(T + 5)]
    assert all(np.array_equal(f, video[k % T]) for k, f in enumerate(idle))
    # speech continues the loop where idle stopped, and moves the mouth of each frame
    pcm = speak("Hello there, this is a video avatar speaking.")
    frames = engine.render(state, pcm, SR)
    start = T + 5
    changed = []
    for i, frame in enumerate(frames):
        src = video[(start + i) % T]
        face = state.faces[(start + i) % T]
        x1, y1, x2, y2 = face.lower_face_box()
        diff = frame.astype(np.float64) - src
        mask = np.ones(diff.shape[:2], bool)
        mask[max(y1, 0):y2, max(x1, 0):x2] = False
        mse = np.mean(diff[mask] ** 2)
        # only the lower face of that very frame changes (a wrong frame would differ everywhere)
        assert mse == 0 or 10 * np.log10(255.0**2 / mse) >= 45.0, i
        changed.append(np.abs(diff).max())
    assert np.mean(np.array(changed) > 30) > 0.4
    # and idle picks up right after the last speech frame
    nxt = engine.idle(state, 100.0)
    assert np.array_equal(nxt, video[(start + len(frames)) % T])


def test_a_video_without_a_face_is_one_line(store, tmp_path):
    frames = np.full((3, 240, 320, 3), 90, np.uint8)
    analyzer = FaceAnalyzer(cfg=Config(face={"cache": False}), store=store)
    with pytest.raises(NoFaceError, match="no face found in the avatar video"):
        track_faces(analyzer, frames)

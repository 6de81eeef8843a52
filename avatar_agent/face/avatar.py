"""Loading the avatar: a portrait photo, or a short face video played as a loop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..config import AvatarConfig, Config
from ..errors import InputError

MAX_VIDEO_FRAMES = 250  # 10 s at 25 fps: a loop, not a film
MAX_SIDE = 1920
MIN_SIDE = 16  # the smallest face the config allows (face.min_face_px >= 16)


def load_image(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 BGR; one-line InputError when missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"avatar image {path} is a folder", hint="pass --image PATH to a portrait photo")
    if not path.is_file():
        raise InputError(f"avatar image not found: {path}", hint="pass --image PATH to a portrait photo")
    data = np.fromfile(str(path), np.uint8)
    if data.size == 0:
        raise InputError(f"avatar image {path} is empty (0 bytes)", hint="use a jpg or png file")
    image = _decode(data) if data.size else None
    if image is None:
        raise InputError(f"cannot read avatar image {path}", hint="use a jpg or png file")
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputError(f"avatar image {path} is too small ({image.shape[1]}x{image.shape[0]})",
                         hint="use a portrait photo with the face at least 64 px wide")
    if max(image.shape[:2]) > MAX_SIDE:
        raise InputError(f"avatar image {path} is too large ({image.shape[1]}x{image.shape[0]})",
                         hint=f"resize it to at most {MAX_SIDE} px on its longer side")
    return image


def _decode(data: np.ndarray) -> np.ndarray | None:
    """``cv2.imdecode`` without OpenCV's own warnings on stderr (a broken file is our one
    error line, not a decoder's log)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    finally:
        logging.setLogLevel(level)


def load_video(path: Path) -> np.ndarray:
    """Up to ``MAX_VIDEO_FRAMES`` frames of a video as (T, H, W, 3) uint8 BGR."""
    import av

    path = Path(path)
    if path.is_dir():
        raise InputError(f"avatar video {path} is a folder", hint="pass --video PATH to a face video")
    if not path.is_file():
        raise InputError(f"avatar video not found: {path}", hint="pass --video PATH to a face video")
    if path.stat().st_size == 0:
        raise InputError(f"avatar video {path} is empty (0 bytes)", hint="use an mp4 file")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"avatar video {path} has no video stream",
                                 hint="use an mp4 file with video, or --image for a photo")
            for frame in container.decode(video=0):
                if max(frame.width, frame.height) > MAX_SIDE:  # checked before 250 of them fill memory
                    raise InputError(f"avatar video {path} is too large ({frame.width}x{frame.height})",
                                     hint=f"scale it to at most {MAX_SIDE} px on its longer side")
                frames.append(frame.to_ndarray(format="bgr24"))
                if len(frames) >= MAX_VIDEO_FRAMES:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:120]
        raise InputError(f"cannot read avatar video {path}: {reason}", hint="use an mp4 file") from None
    if not frames:
        raise InputError(f"avatar video {path} has no frames", hint="use an mp4 file with video")
    return np.stack(frames)


def load_avatar(cfg: AvatarConfig) -> np.ndarray:
    """The configured avatar: (H, W, 3) for a photo, (T, H, W, 3) for a video."""
    if cfg.video is not None:
        return load_video(cfg.video)
    return load_image(cfg.image)


def load_avatar_image(cfg: Config) -> np.ndarray:
    """The avatar: a photo (H, W, 3) or a looped video (T, H, W, 3), uint8 BGR; with
    neither ``avatar.image`` nor ``avatar.video`` set, the :func:`builtin_portrait`.

    One-line InputError when the file is missing or unreadable.
    """
    if cfg.avatar.image is None and cfg.avatar.video is None:
        return builtin_portrait()
    return load_avatar(cfg.avatar)


def builtin_portrait() -> np.ndarray:
    """The default avatar: NASA's astronaut portrait (public domain) from scikit-image's
    bundled sample data, (512, 512, 3) uint8 BGR; the picture ``examples/make_assets.py``
    saves as ``examples/assets/face.png``. Made in memory, nothing is written.

    One-line InputError naming the fixes when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        raise InputError(
            "no avatar image given, and the built-in portrait needs scikit-image",
            hint="pass --image PATH to a portrait photo, or install the portrait's package: "
                 "pip install 'avatar-agent[examples]'",
        ) from None
    import cv2

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)

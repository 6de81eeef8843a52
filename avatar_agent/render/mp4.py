"""MP4 writer (PyAV): H.264 video + AAC audio, muxed in-process.

Frame k is stamped at exactly ``k / fps`` and audio sample n at ``n / sample_rate``, so a
file is in sync by construction. Chunks can be appended as they are produced.

Nothing partial is ever left under the output's name: the file is written to a hidden
``.NAME.partial.mp4`` beside it and renamed into place by :meth:`Mp4Writer.close`; a
writer left by an exception (or Ctrl-C) deletes its partial file instead.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import numpy as np

from ..audio.io import resample
from ..errors import InputError
from ..types import FrameChunk

# H.264 settings; reply/say/render pass the config's ``output.*`` (CRF 17, preset medium).
# Measured on the test portraits (median PSNR outside the lower face, decoded with PyAV):
# limited-range 4:2:0 through swscale caps a saturated photo at ~37 dB whatever the CRF
# (the old CRF 20 veryfast: 35.1 / 36.9 dB); full-range 4:2:0 with 2×2-mean chroma
# (``yuvj420p``, plays everywhere) at CRF 17 medium keeps 38.3 / 41.6 dB; 4:4:4 more,
# but fewer players take it. See benchmarks/RESULTS.md. The default preset here stays
# fast for live session recording.
CRF = 17
PRESET = "veryfast"
PIX_FMT = "yuvj420p"


def check_output(path: str | Path, flag: str = "-o") -> Path:
    """One-line :class:`InputError` for an mp4 output path that cannot work, before any
    model loads: not ``.mp4``, a folder, under a file, in a folder that cannot take a
    new file (``/proc``, read-only, no permission) or on a full disk. ``flag`` names the
    option in the hint. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output {path} is a folder", hint=f"give a file name, e.g. {flag} out/reply.mp4")
    if path.suffix.lower() != ".mp4":
        raise InputError(f"output {path} must end in .mp4", hint=f"e.g. {flag} out/reply.mp4")
    hint = f"choose a writable folder for {flag}, e.g. {flag} out/reply.mp4"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {path}: {parent} is a file, not a folder", hint=hint)
            _probe_folder(path, parent, hint)
            break
    return path


_MIN_FREE = 16 << 20  # bytes free below which a reply's mp4 (a few MB) cannot be written


def _probe_folder(path: Path, folder: Path, hint: str) -> None:
    """Create (and remove) a file in ``folder``, the nearest existing folder of ``path``:
    the one sure test that the writer will be able to create its file there."""
    import shutil
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".avatar-probe-"):
            pass
    except OSError as exc:
        why = {errno.ENOENT: "does not take new files", errno.EACCES: "is not writable (permission denied)",
               errno.EROFS: "is on a read-only file system", errno.ENOSPC: "is on a full disk"}.get(
                   exc.errno or 0, f"is not writable ({exc.strerror or type(exc).__name__})")
        raise InputError(f"cannot write {path}: {folder} {why}", hint=hint) from None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < _MIN_FREE:
        raise InputError(f"cannot write {path}: the disk holding {folder} is full "
                         f"({free >> 20} MB free)", hint=f"free some space or {hint}")


class ProgressLine:
    """An updating stderr line ``writing out.mp4: 12.4 s of video`` (carriage return, no
    newline until :meth:`close`). Only on a TTY unless ``force``; silent otherwise."""

    def __init__(self, name: str, stream: TextIO | None = None, *, force: bool = False) -> None:
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = False

    def __call__(self, seconds: float) -> None:
        if not self.enabled:
            return
        self.stream.write(f"\rwriting {self.name}: {seconds:.1f} s of video")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the line (a newline) if anything was shown."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


Progress = Callable[[float], None]


class Mp4Writer:
    """Streamed mp4 writer. Use as a context manager or call :meth:`close`.

    ``fps``: video frame rate; ``sample_rate``: audio rate in the file (chunks at other
    rates are resampled); frames are (H, W, 3) uint8 BGR, all the same size (odd sizes are
    cropped by one pixel to satisfy 4:2:0); ``crf``/``preset``/``pix_fmt``: libx264's
    quality, speed and pixel format (``yuvj420p`` full-range 4:2:0, ``yuv420p``, ``yuv444p``).

    ``progress``: None or False (default) is silent; True shows one updating stderr line
    ``writing NAME: 12.4 s of video`` when stderr is a TTY (:class:`ProgressLine`), ended
    by a newline on close; a callable gets the seconds of video written. Either way at
    most once per ``progress_interval`` seconds while writing, and once more on close.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, sample_rate: int = 22050,
                 *, crf: int = CRF, preset: str = PRESET, pix_fmt: str = PIX_FMT,
                 progress: bool | Progress | None = None, progress_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import av

        self.path = Path(path)
        self.fps = fps
        self.sample_rate = sample_rate
        if self.path.is_dir():
            raise InputError(f"output {self.path} is a folder",
                             hint="give a file name, e.g. -o out/reply.mp4")
        if progress is True:
            progress = ProgressLine(self.path.name)
        self._progress: Progress | None = progress or None
        self._progress_interval = progress_interval
        self._clock = clock
        self._progress_at: float | None = None
        self._partial = self.path.with_name(f".{self.path.name}.partial.mp4")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._partial), mode="w", format="mp4")
        except (OSError, av.error.FFmpegError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"cannot write {self.path}: {reason}",
                             hint="check that the output folder exists and is writable, "
                                  "or choose another -o") from None
        self._video = None
        self._crf, self._preset, self._pix_fmt = crf, preset, pix_fmt
        self._audio = self._container.add_stream("aac", rate=sample_rate)
        self._audio.layout = "mono"
        self._audio.time_base = Fraction(1, sample_rate)
        self.frames_written = 0
        self.samples_written = 0
        self._size: tuple[int, int] | None = None

    def _open_video(self, height: int, width: int) -> None:
        w, h = width - width % 2, height - height % 2
        video = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        video.width, video.height = w, h
        video.pix_fmt = self._pix_fmt
        video.options = {"crf": str(self._crf), "preset": self._preset}
        video.time_base = Fraction(1, int(round(self.fps * 1000))) if self.fps % 1 else Fraction(1, int(self.fps))
        self._video, self._size = video, (h, w)

    def add_frames(self, frames: np.ndarray) -> None:
        """Append (F, H, W, 3) or (H, W, 3) uint8 BGR frames."""
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        for frame in frames:
            if self._video is None:
                self._open_video(*frame.shape[:2])
            h, w = self._size
            if self._pix_fmt == "yuvj420p":
                vf = av.VideoFrame.from_ndarray(_full_range_i420(frame[:h, :w]), format="yuvj420p")
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="bgr24")
            vf.pts = int(round(self.frames_written / self.fps / self._video.time_base))
            vf.time_base = self._video.time_base
            for packet in self._video.encode(vf):
                self._container.mux(packet)
            self.frames_written += 1
        self._report()

    def _report(self, final: bool = False) -> None:
        if self._progress is None:
            return
        now = self._clock()
        if final or self._progress_at is None or now - self._progress_at >= self._progress_interval:
            self._progress_at = now
            self._progress(self.video_s)

    def _end_progress(self, final: bool) -> None:
        if self._progress is None:
            return
        if final:
            self._report(final=True)
        close = getattr(self._progress, "close", None)
        if callable(close):
            close()
        self._progress = None

    def add_audio(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Append (N,) float32 mono audio at ``sample_rate``."""
        import av

        pcm = resample(np.asarray(pcm, dtype=np.float32), sample_rate, self.sample_rate)
        if len(pcm) == 0:
            return
        af = av.AudioFrame.from_ndarray(pcm[None, :], format="flt", layout="mono")
        af.sample_rate = self.sample_rate
        af.pts = self.samples_written
        af.time_base = Fraction(1, self.sample_rate)
        for packet in self._audio.encode(af):
            self._container.mux(packet)
        self.samples_written += len(pcm)

    def add_chunk(self, chunk: FrameChunk) -> None:
        """Append a lip-synced chunk (its frames and its audio)."""
        self.add_frames(chunk.frames)
        self.add_audio(chunk.audio, chunk.sample_rate)

    @property
    def video_s(self) -> float:
        """Seconds of video written so far."""
        return self.frames_written / self.fps

    @property
    def audio_s(self) -> float:
        """Seconds of audio written so far."""
        return self.samples_written / self.sample_rate

    def close(self) -> Path:
        """Flush encoders, finish the file and move it to its name; returns its path."""
        import av

        if self._container is None:
            return self.path
        self._end_progress(final=True)
        try:
            if self._video is not None:
                for packet in self._video.encode(None):
                    self._container.mux(packet)
            for packet in self._audio.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            self._partial.replace(self.path)
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"cannot finish {self.path}: {reason}",
                             hint="check the free space and permissions of the output folder"
                             ) from None
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the partial file (nothing appears under the name)."""
        self._end_progress(final=False)
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                pass
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _full_range_i420(frame: np.ndarray) -> np.ndarray:
    """BGR -> full-range BT.601 I420 (Y, then Cb, Cr at half size, each the mean of its 2×2
    block): what a decoder's nearest or bilinear chroma upsampling restores best (measured
    +0.6–1.5 dB over swscale's own conversion on the test portraits)."""
    import cv2

    h, w = frame.shape[:2]
    ycc = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2YCrCb)
    chroma = cv2.resize(ycc[..., 1:].astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    chroma = np.clip(chroma + 0.5, 0, 255).astype(np.uint8)
    planes = (ycc[..., 0], chroma[..., 1], chroma[..., 0])
    return np.concatenate([p.ravel() for p in planes]).reshape(h * 3 // 2, w)


def probe(path: str | Path) -> dict[str, float]:
    """Durations (s), frame count and fps of an mp4's streams, read back with PyAV."""
    import av

    out: dict[str, float] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            kind = stream.type
            if stream.duration is not None:
                out[f"{kind}_s"] = float(stream.duration * stream.time_base)
            if kind == "video":
                out["fps"] = float(stream.average_rate)
                out["frames"] = float(stream.frames)
                out["width"], out["height"] = float(stream.width), float(stream.height)
            if kind == "audio":
                out["sample_rate"] = float(stream.rate)
    return out

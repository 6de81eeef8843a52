"""The presenter: one thread owns the OpenCV window and paces video by the audio clock.

While listening it shows idle frames (``idle_fn(t)``: blinks, head motion, mouth closed)
at ``fps`` on the monotonic clock. Reply chunks are registered with :meth:`Presenter.play`
together with their place on the playback timeline; frame ``k`` of a chunk is shown as
soon as the audio clock has reached ``k / fps`` into it. Frames whose time has passed are
dropped (counted), and video never runs ahead: before a chunk's audio is heard the idle
face stays up. The A/V offset (audio clock at display minus the frame's scheduled time)
is measured for every frame shown.

``q``/Esc or closing the window calls ``on_quit`` from the window thread (it must be
thread-safe, e.g. ``loop.call_soon_threadsafe``). Only this thread calls cv2 GUI functions. With ``window=False`` the same pacing runs without a window
(metrics and recording still work), for ``talk --no-window``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..audio.playback import Playback, Scheduled
from ..errors import DeviceError
from ..types import FrameChunk

log = logging.getLogger(__name__)

_STATUS_COLORS = {"listening": (80, 200, 80), "thinking": (60, 180, 240), "speaking": (230, 120, 60)}
_POLL_S = 0.01  # longest sleep between clock checks (keeps the offset small)


@dataclass
class ChunkShow:
    """Display bookkeeping of one registered chunk (filled by the presenter thread)."""

    chunk: FrameChunk
    at: Scheduled
    shown: int = 0
    dropped: int = 0
    last_k: int = -1
    first_shown_t: float | None = None      # monotonic time frame 0 (or the first) was up
    start_offset_ms: float | None = None    # A/V offset of the first frame shown
    offsets_ms: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def n_frames(self) -> int:
        """Frames in the chunk."""
        return len(self.chunk.frames)


class Presenter:
    """Owns the window thread. ``clock``: the session's :class:`Playback` (master clock)."""

    def __init__(self, *, clock: Playback, idle_fn: Callable[[float], np.ndarray], fps: float,
                 title: str = "avatar_agent", show_status: bool = True, scale: float = 1.0,
                 window: bool = True, on_quit: Callable[[], None] | None = None) -> None:
        self.clock = clock
        self.idle_fn = idle_fn
        self.fps = float(fps)
        self.title = title
        self.show_status = show_status
        self.scale = scale
        self.window = window
        self.on_quit = on_quit
        self.state = "listening"
        self.frames_shown = 0
        self.frames_dropped = 0
        self.current: np.ndarray | None = None  # the last frame put on screen (BGR, unscaled)
        self.error: BaseException | None = None
        self.on_frame: Callable[[np.ndarray, float], None] | None = None  # recorder hook
        self._lock = threading.Lock()
        self._chunks: list[ChunkShow] = []
        self._pending_show: tuple[ChunkShow, int] | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control (any thread)
    def start(self, timeout: float = 10.0) -> None:
        """Start the window thread; returns once the window exists (or raises its error)."""
        self._thread = threading.Thread(target=self._run, name="avatar-presenter", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self.error is not None:
            if type(self.error).__module__.startswith("cv2"):  # no display, no GUI backend
                from ..errors import DeviceError

                raise DeviceError(f"cannot open the avatar window: {str(self.error).strip()[:120]}",
                                  hint="check DISPLAY, or run talk --no-window") from None
            raise self.error

    def set_state(self, state: str) -> None:
        """Status line text: ``listening``, ``thinking`` or ``speaking``."""
        self.state = state

    def play(self, chunk: FrameChunk, at: Scheduled) -> ChunkShow:
        """Show ``chunk`` in step with its audio, which plays at ``at`` on the timeline."""
        show = ChunkShow(chunk=chunk, at=at)
        if len(chunk.frames) == 0:
            show.done.set()
            return show
        with self._lock:
            self._chunks.append(show)
        return show

    def clear(self) -> None:
        """Forget every registered chunk (barge-in): back to the idle face at once."""
        with self._lock:
            chunks, self._chunks = self._chunks, []
        for show in chunks:
            show.done.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the window and join the thread (bounded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("presenter thread did not stop in time")
        self.clear()

    @property
    def running(self) -> bool:
        """True while the window thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- window thread
    def _run(self) -> None:
        try:
            if self.window:
                import cv2

                cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            self._ready.set()
            self._loop()
        except BaseException as exc:  # handed to start() / the orchestrator
            self.error = exc
            self._ready.set()
            log.error("presenter failed", extra={"error": type(exc).__name__})
            if self.on_quit is not None:
                self.on_quit()
        finally:
            if self.window:
                self._close_window()

    def _close_window(self) -> None:
        import cv2

        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:  # already gone (closed by the user)
            pass

    def _loop(self) -> None:
        t0 = time.monotonic()
        next_idle = t0
        while not self._stop.is_set():
            now = time.monotonic()
            frame, wait = self._reply_frame(now)
            # idle only when no chunk is being heard (wait is None): never between two
            # reply frames of one chunk
            if frame is None and wait is None and now >= next_idle:
                frame = self.idle_fn(now - t0)
                next_idle += 1.0 / self.fps
                if next_idle < now:  # the idle face fell behind: skip, do not catch up
                    next_idle = now + 1.0 / self.fps
            if frame is not None:
                self._show(frame)
            if wait is None:
                wait = max(0.0, next_idle - time.monotonic())
            if self._poll(min(wait, _POLL_S)):
                break

    def _reply_frame(self, now: float) -> tuple[np.ndarray | None, float | None]:
        """The reply frame due at ``now`` if a new one is due, and seconds to the next one."""
        with self._lock:
            chunks = list(self._chunks)
        for show in chunks:
            pos = self.clock.position_of(show.at, now)
            if pos < 0:
                return None, None  # its audio is not heard yet: never run ahead
            k = int(pos * self.fps)
            if k >= show.n_frames or pos >= show.at.length / show.at.rate:
                self._finish(show)
                continue
            wait = (k + 1) / self.fps - pos
            if k == show.last_k:
                return None, wait
            skipped = k - show.last_k - 1
            if skipped > 0:
                show.dropped += skipped
                self.frames_dropped += skipped
            show.last_k = k
            show.shown += 1
            self._pending_show = (show, k)
            return show.chunk.frames[k], wait
        return None, None

    def _finish(self, show: ChunkShow) -> None:
        missed = show.n_frames - 1 - show.last_k
        if missed > 0:
            show.dropped += missed
            self.frames_dropped += missed
        with self._lock:
            if show in self._chunks:
                self._chunks.remove(show)
        show.done.set()

    def _show(self, frame: np.ndarray) -> None:
        pending, self._pending_show = self._pending_show, None
        self.current = frame
        if self.window:
            import cv2

            img = frame
            if self.scale != 1.0:
                img = cv2.resize(img, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
            if self.show_status:
                img = self._draw_status(img)
            cv2.imshow(self.title, img)
        shown_t = time.monotonic()
        self.frames_shown += 1
        if self.on_frame is not None:
            self.on_frame(frame, shown_t)
        if pending is not None:
            show, k = pending
            offset = (self.clock.position_of(show.at, shown_t) - k / self.fps) * 1000.0
            show.offsets_ms.append(offset)
            if show.first_shown_t is None:
                show.first_shown_t = shown_t
                show.start_offset_ms = offset

    def _draw_status(self, img: np.ndarray) -> np.ndarray:
        import cv2

        out = img.copy()
        h, w = out.shape[:2]
        bar = max(18, h // 22)
        out[h - bar:] = (out[h - bar:].astype(np.uint16) * 2 // 5).astype(np.uint8)
        color = _STATUS_COLORS.get(self.state, (200, 200, 200))
        cv2.circle(out, (bar // 2 + 4, h - bar // 2), bar // 4, color, -1, cv2.LINE_AA)
        cv2.putText(out, self.state, (bar + 6, h - bar // 4 - 2), cv2.FONT_HERSHEY_SIMPLEX,
                    bar / 36.0, (240, 240, 240), 1, cv2.LINE_AA)
        return out

    def _poll(self, wait_s: float) -> bool:
        """Process window events for about ``wait_s``; True when the user asked to quit."""
        if not self.window:
            self._stop.wait(wait_s)
            return False
        import cv2

        key = cv2.waitKey(max(1, int(wait_s * 1000)))
        if key in (ord("q"), ord("Q"), 27):
            log.info("quit key pressed")
            self._request_quit()
            return True
        try:
            closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            closed = True
        if closed:
            self._request_quit()
            return True
        return False

    def _request_quit(self) -> None:
        if self.on_quit is not None:
            self.on_quit()


def check_display() -> None:
    """Fail before loading anything when no screen can show the window (Linux/X11)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise DeviceError("no display for the avatar window (DISPLAY is not set)",
                          hint="run talk --no-window for audio only, or start it on a desktop")

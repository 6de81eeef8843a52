"""Recording a live session to mp4: what was heard, with what was on screen.

The speaker's tap hands over every block given to the device (speech and silence), so
the file's audio is the session's playback timeline from the moment recording began.
The presenter reports every frame it puts on screen; the recorder stamps it with the
audio clock at that moment. A writer thread then fills the video frame slots of the
file (slot ``s`` = timeline position ``p0 + s * sr / fps``) with the frame that was on
screen when that sound was heard, so picture and sound in the file keep the on-screen
sync. Encoding runs on this thread, never on the window or audio thread.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path

import numpy as np

from ..audio.playback import Playback
from .mp4 import Mp4Writer
from .window import Presenter

log = logging.getLogger(__name__)


class SessionRecorder:
    """Writes ``path`` (mp4) from ``playback``'s tap and the frames ``presenter`` shows."""

    def __init__(self, path: str | Path, *, fps: float, playback: Playback,
                 presenter: Presenter) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.playback = playback
        self.presenter = presenter
        self._audio: collections.deque[np.ndarray] = collections.deque()
        self._shown: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._frame: np.ndarray | None = None  # the frame on screen at the current slot
        self._writer: Mp4Writer | None = None
        self._frames = 0
        self._p0: int | None = None  # timeline position of the file's first audio sample
        self._stop = threading.Event()
        playback.tap = self._tap
        presenter.on_frame = self._on_frame
        self._thread = threading.Thread(target=self._run, name="avatar-recorder", daemon=True)
        self._thread.start()

    def _tap(self, block: np.ndarray) -> None:
        """Audio thread: keep the block (deque.append is atomic) and where the file starts."""
        if self._p0 is None:
            self._p0 = self.playback._cb_pos
        self._audio.append(block)

    def _on_frame(self, frame: np.ndarray, t: float) -> None:
        """Window thread: the frame went on screen at monotonic ``t``."""
        self._shown.append((self.playback.heard_position(t), frame))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._step()
        self._step(final=True)

    def _step(self, final: bool = False) -> None:
        if self._p0 is None or (self._frame is None and not self._shown):
            return
        if self._writer is None:
            self._writer = Mp4Writer(self.path, self.fps, self.playback.sample_rate)
        rate = self.playback.sample_rate
        if final:  # pad the picture to the end of the sound
            handed = self._writer.samples_written + sum(len(b) for b in self._audio)
            due = round(handed * self.fps / rate)
        else:
            due = int((self.playback.heard_position() - self._p0) * self.fps / rate)
        half = 0.5 * rate / self.fps
        while self._frames < due:
            slot_pos = self._p0 + self._frames * rate / self.fps
            while self._shown and self._shown[0][0] <= slot_pos + half:
                self._frame = self._shown.popleft()[1]
            if self._frame is None:
                self._frame = self._shown[0][1]
            self._writer.add_frames(self._frame)
            self._frames += 1
        # audio only after the first frame: the writer opens its video stream on the first
        # frame, and a stream added after audio was muxed crashes libav (SIGFPE, measured)
        while self._frames and self._audio:
            self._writer.add_audio(self._audio.popleft(), rate)

    def close(self) -> Path | None:
        """Finish the file (bounded wait); returns its path, or None if nothing was recorded."""
        self.playback.tap = None
        self.presenter.on_frame = None
        self._stop.set()
        self._thread.join(10.0)
        if self._writer is None:
            return None
        path = self._writer.close()
        log.info("session recorded: %d frames", self._frames)
        return path

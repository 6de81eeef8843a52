"""Recording a live session to mp4: what was heard, with what was on screen.

The speaker's tap hands over every block given to the device (speech and silence), so
the file's audio is the session's playback timeline. A writer thread follows the audio
clock: for each video frame period that has been heard it writes the frame the
presenter has up at that moment, so picture and sound in the file keep the on-screen
sync (within a frame). Encoding runs on this thread, never on the window or audio thread.
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
    """Writes ``path`` (mp4) from ``playback``'s tap and ``presenter``'s current frame."""

    def __init__(self, path: str | Path, *, fps: float, playback: Playback,
                 presenter: Presenter) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.playback = playback
        self.presenter = presenter
        self._audio: collections.deque[np.ndarray] = collections.deque()
        self._writer: Mp4Writer | None = None
        self._frames = 0
        self._stop = threading.Event()
        playback.tap = self._audio.append  # deque.append is atomic: safe from the audio thread
        self._thread = threading.Thread(target=self._run, name="avatar-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._step()
        self._step(final=True)

    def _step(self, final: bool = False) -> None:
        frame = self.presenter.current
        if frame is None or not self.playback.sample_rate:
            return
        if self._writer is None:
            self._writer = Mp4Writer(self.path, self.fps, self.playback.sample_rate)
        while self._audio:
            self._writer.add_audio(self._audio.popleft(), self.playback.sample_rate)
        heard = self.playback.heard_position() if not final else self._writer.samples_written
        due = int(heard * self.fps / self.playback.sample_rate)
        while self._frames < due:
            self._writer.add_frames(frame)
            self._frames += 1

    def close(self) -> Path | None:
        """Finish the file (bounded wait); returns its path, or None if nothing was recorded."""
        self.playback.tap = None
        self._stop.set()
        self._thread.join(10.0)
        if self._writer is None:
            return None
        path = self._writer.close()
        log.info("session recorded", extra={"frames": self._frames})
        return path

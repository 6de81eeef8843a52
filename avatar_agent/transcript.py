"""The JSONL transcript: every turn appended, so nothing the user said is lost.

This file is the user's data (it holds their words); logs never do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


_KEEP = 10_000  # records held in memory while the file cannot be written


class TranscriptLog:
    """Append-only JSON-lines file; one object per line, flushed and fsynced per record.

    A write that fails (disk full, read-only, folder removed) never ends the conversation:
    one warning is logged, the records are kept in memory and written, in order, with
    the next append that succeeds.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._failing = False

    @property
    def pending(self) -> int:
        """Records not yet on disk."""
        return len(self._pending)

    def append(self, record: dict[str, Any]) -> bool:
        """Append ``record`` (a ``ts`` wall-clock timestamp is added); False if it could
        not be written yet (it is kept and retried)."""
        import os

        line = json.dumps({"ts": round(time.time(), 3), **record}, ensure_ascii=False,
                          default=str)
        with self._lock:
            self._pending.append(line)
            del self._pending[:-_KEEP]
            size = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    size = fh.tell()
                    fh.write("".join(p + "\n" for p in self._pending))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                if size is not None:  # a half-written line would garble the file: undo it
                    with contextlib.suppress(OSError):
                        os.truncate(self.path, size)
                if not self._failing:
                    log.warning("transcript not written, kept in memory: %s (%s)",
                                exc.strerror or exc, self.path)
                self._failing = True
                return False
            if self._failing:
                log.warning("transcript written again (%d records caught up)", len(self._pending))
            self._pending.clear()
            self._failing = False
            return True

    def read(self) -> list[dict[str, Any]]:
        """All records so far (for tests and tools)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

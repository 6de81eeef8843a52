"""The JSONL transcript: every turn appended, so nothing the user said is lost.

This file is the user's data (it holds their words); logs never do.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class TranscriptLog:
    """Append-only JSON-lines file; one object per line, flushed and fsynced per record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` (a ``ts`` wall-clock timestamp is added)."""
        import os

        line = json.dumps({"ts": round(time.time(), 3), **record}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        """All records so far (for tests and tools)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

"""``python -m avatar_agent serve --port 0`` as a subprocess in its own process group: the
browser tests (``test_serve.py``) and ``benchmarks/bench_serve.py`` start it the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """The server with ``args`` (``--set K=V`` pairs, ``--config FILE``), its transcript and
    log in ``folder``; waits until it prints ``serving on URL`` (it loads and warms up every
    model first), and raises ``RuntimeError`` with the log's tail if it never does."""

    def __init__(self, folder: Path, *args: str, start_s: float = 240.0) -> None:
        self.transcript = folder / "transcript.jsonl"
        self.log = folder / "serve.log"
        cmd = [sys.executable, "-m", "avatar_agent", "serve", "--port", "0", "-v", *args,
               "--set", f"transcript.path={self.transcript}"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "wb"), text=True, start_new_session=True)
        self.url = ""
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                if line.startswith("serving on ") and not self.url:
                    self.url = line.split()[2]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + start_s
        while not found.wait(0.5) and self.proc.poll() is None and time.monotonic() < deadline:
            pass
        if not self.url:
            self.stop()
            raise RuntimeError(f"serve did not start: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(x for x in text.splitlines() if "aioice" not in x)[-n:]

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "api/status", timeout=20) as resp:
            return json.load(resp)

    def records(self) -> list[dict]:
        if not self.transcript.exists():
            return []
        return [json.loads(x) for x in self.transcript.read_text().splitlines() if x.strip()]

    def stop(self) -> int | None:
        """SIGTERM to the group (SIGKILL after 30 s); the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

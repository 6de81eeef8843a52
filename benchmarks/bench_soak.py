"""A long soak of ``talk`` on the virtual devices: ``bench soak`` (100 turns by default).

Runs the e2e soak (``tests/e2e/test_soak.py``: mixed short, long, silent, garbled and
barge-in turns in espeak-ng voices, checked from outside the process) with
``AVATAR_SOAK_TURNS`` turns and reports its figures: crashes, questions answered, RSS,
threads and open files at turn 10 and at the last turn, RSS drift after warm-up, and the
median voice-to-face latency of the first and the last 10 answered turns. Needs the
virtual devices harness (``tests/harness``; ``make test`` installs its packages).

Run: ``python benchmarks/bench_soak.py [--turns 100]`` or ``avatar-agent bench soak``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def soak(turns: int = 100) -> dict:
    env = {**os.environ, "AVATAR_SOAK_TURNS": str(turns)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", str(60 * turns + 600),
         "tests/e2e/test_soak.py"], cwd=ROOT, env=env, text=True, capture_output=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("soak: ")]
    result = json.loads(lines[-1].removeprefix("soak: ")) if lines else {}
    result["passed"] = proc.returncode == 0
    if proc.returncode != 0:
        result["failure"] = proc.stdout[-3000:]
    return result


def run(cfg=None) -> dict:
    """``avatar-agent bench soak``."""
    return soak(int(os.environ.get("AVATAR_SOAK_TURNS", "100")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(soak(args.turns), indent=1))

"""The virtual mic/speaker/display (``tests/harness/avdevices.sh``) for the live benchmarks.

A private instance per benchmark process: :func:`start` exports its environment into
``os.environ`` (so ``sounddevice`` and child processes find the devices), :func:`play`
speaks a wav into the virtual mic, :func:`stop` tears it down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "tests" / "harness"


def _harness(action: str) -> str:
    script = HARNESS / "avdevices.sh"
    if not script.is_file():
        raise SystemExit(f"the live benchmarks need the device harness at {HARNESS}")
    env_dir = f"/tmp/avdevices-aa-bench-{os.getuid()}-{os.getpid()}"
    return subprocess.run([str(script), action], env={**os.environ, "AVDEV_DIR": env_dir},
                          capture_output=True, text=True, check=True, timeout=60).stdout


def start() -> dict[str, str]:
    """Start (or reuse) this process' devices; returns the exported variables."""
    out = _harness("start")
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[7:].partition("=")
            env[key] = value.strip("'\"")
    os.environ.update(env)
    if "sounddevice" in sys.modules:  # PortAudio must re-read ALSA with the env set
        import sounddevice as sd

        sd._terminate()
        sd._initialize()
    return env


def stop() -> None:
    """Stop this process' devices."""
    _harness("stop")


def play_cmd(wav: Path) -> list[str]:
    """The command that speaks ``wav`` into the virtual mic (mono: harness pitfall 9)."""
    return ["paplay", "--device=user_mouth", "--channel-map=mono", str(wav)]

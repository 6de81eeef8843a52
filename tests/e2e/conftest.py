"""Virtual devices for end-to-end tests: PulseAudio mic/speaker + Xvfb (``tests/harness``).

The session fixture ``avdevices`` starts a private harness instance (its own
``AVDEV_DIR`` per test session, so neither a developer's interactive instance nor another
test run is disturbed), exports its environment into ``os.environ`` for in-process
streams and subprocesses, and stops it at the end. It never skips: a missing Debian
package or a harness that does not start is a test failure naming the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "harness"
SCRIPT = HARNESS / "avdevices.sh"


def _parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            env[key.strip()] = value.strip().strip("'\"")
    return env


@pytest.fixture(scope="session")
def avdevices():
    """Start the harness; yields its env dict (also exported to ``os.environ``)."""
    for tool in ("pulseaudio", "Xvfb", "paplay", "parec", "xdotool", "import"):
        if shutil.which(tool) is None:
            pytest.fail(f"harness tool '{tool}' missing: run scripts/install-sysdeps.sh test "
                        "(make test does)")
    # one instance per test session: two sessions at once (two developers, CI) would
    # otherwise share one "room" and hear each other
    env_dir = f"/tmp/avdevices-aa-e2e-{os.getuid()}-{os.getpid()}"
    run_env = {**os.environ, "AVDEV_DIR": env_dir}
    proc = subprocess.run([str(SCRIPT), "start"], env=run_env, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"avdevices.sh start failed: {proc.stderr.strip()[-400:]}")
    env = _parse_env(proc.stdout)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    _load_mix()
    if "sounddevice" in sys.modules:  # PortAudio read the ALSA config before the env existed
        import sounddevice as sd

        sd._terminate()
        sd._initialize()
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    subprocess.run([str(SCRIPT), "stop"], env=run_env, capture_output=True, timeout=30)


def _pactl(*args: str) -> str:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=20,
                          check=True).stdout


def _load_mix() -> None:
    """A stereo sink ``e2e_mix``: left = the program's mic, right = the program's speaker.

    Both loopbacks run on the one sound-server clock, so one recording holds the user's
    speech and the avatar's voice on a common timeline (checked: a click played into
    both null sinks at once lands on both channels within 0.3 ms).
    """
    if "e2e_mix" in _pactl("list", "short", "sinks"):
        return
    _pactl("load-module", "module-null-sink", "sink_name=e2e_mix", "rate=48000", "channels=2",
           "channel_map=front-left,front-right")
    for source, side in (("user_mouth.monitor", "front-left"),
                         ("agent_speaker.monitor", "front-right")):
        _pactl("load-module", "module-loopback", f"source={source}", "sink=e2e_mix",
               "latency_msec=20", "channels=1", f"channel_map={side}", "remix=no")
    # restart the sink clock so the loopbacks do not render ahead (tests/harness/README.md, pitfall 3)
    _pactl("suspend-sink", "e2e_mix", "1")
    _pactl("suspend-sink", "e2e_mix", "0")
    time.sleep(1.0)


class Recorder:
    """``parec`` of ``e2e_mix``: ``stop()`` returns (mic, speaker) float32 arrays."""

    def __init__(self, path: Path, rate: int = 48000) -> None:
        self.path, self.rate = path, rate
        self.proc = subprocess.Popen(
            ["parec", "-d", "e2e_mix.monitor", f"--rate={rate}", "--channels=2",
             "--format=s16le", "--file-format=wav", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t_start = time.monotonic()

    def speaker_level_now(self, seconds: float = 0.1) -> float:
        """Peak of the speaker channel over the last ``seconds`` written so far."""
        data = self.path.read_bytes()[44:] if self.path.exists() else b""
        data = data[: len(data) - len(data) % 4]  # whole stereo frames only
        n = int(seconds * self.rate) * 4
        tail = np.frombuffer(data[-n:] if len(data) >= n else b"", np.int16)
        return float(np.abs(tail[1::2]).max() / 32768.0) if len(tail) else 0.0

    def stop(self) -> tuple[np.ndarray, np.ndarray]:
        """End the recording (SIGINT keeps a valid header); returns (mic, speaker)."""
        import signal

        import soundfile as sf

        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        data, sr = sf.read(str(self.path), dtype="float32", always_2d=True)
        assert sr == self.rate and data.shape[1] == 2
        return data[:, 0], data[:, 1]


def play_into_mic(path: Path, block: bool = True) -> subprocess.Popen:
    """Play a wav into ``user_mouth`` (the program's mic hears it)."""
    proc = subprocess.Popen(["paplay", "--device=user_mouth", "--channel-map=mono", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if block:
        proc.wait(timeout=60)
    return proc


def screenshot(path: Path, window: str = "root") -> np.ndarray:
    """Screenshot of the virtual screen (or of one X window id) as BGR."""
    import cv2

    subprocess.run(["import", "-window", window, str(path)], check=True, timeout=30,
                   capture_output=True)
    img = cv2.imread(str(path))
    assert img is not None, "screenshot unreadable"
    return img


def window_id(title: str, timeout: float = 30.0) -> str | None:
    """X window id of the largest visible window titled ``title`` (None if none appears).

    Qt can map more than one X window under one title (a small helper window next to the
    image window); the image is the big one.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
                             capture_output=True, text=True).stdout.split()
        sized = []
        for wid in ids:
            geo = subprocess.run(["xdotool", "getwindowgeometry", wid], capture_output=True,
                                 text=True).stdout
            for line in geo.splitlines():
                if "Geometry:" in line:
                    w, _, h = line.split(":")[1].strip().partition("x")
                    sized.append((int(w) * int(h), wid))
        if sized and max(sized)[0] > 100 * 100:
            return max(sized)[1]
        time.sleep(0.2)
    return None


def remap(wid: str) -> None:
    """Unmap and re-map a window that stays black (tests/harness/README.md, pitfall 11)."""
    subprocess.run(["xdotool", "windowunmap", "--sync", wid], capture_output=True, timeout=10)
    subprocess.run(["xdotool", "windowmap", "--sync", wid], capture_output=True, timeout=10)


def end_process(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """Terminate a program under test if it still runs; kill it if it ignores that."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()

"""``talk`` faults: no input device, a microphone that stops delivering sound, and quitting
(Ctrl-C, ``q``, Esc) at any moment of a session: loading, listening, thinking, speaking."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT, play_into_mic, window_id

pytestmark = pytest.mark.e2e


def test_no_input_device_is_one_line_and_exit_7(tmp_path):
    # a sound server that does not exist: PortAudio finds no device at all
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/no-such-socket"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "avatar_agent", "talk", "--no-window"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert lines == ["error: no audio input device found (connect one, or check the sound "
                     "server (avatar-agent devices))"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 60  # before any model is loaded


def test_mic_lost_mid_session_retries_then_exits_cleanly(avdevices, tmp_path):
    cmd = [sys.executable, "-m", "avatar_agent", "talk", "--no-window", "-v",
           "--set", f"transcript.path={tmp_path / 't.jsonl'}", "--set", "audio.device_retries=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("listening"):
                break
        assert lines and lines[-1].startswith("listening"), "\n".join(lines[-20:])
        # the microphone goes dead: the source stops producing samples
        subprocess.run(["pactl", "suspend-source", "virtual_mic", "1"], check=True, timeout=20)
        t0 = time.monotonic()
        rc = proc.wait(timeout=60)
        took = time.monotonic() - t0
        lines += proc.stdout.read().splitlines()
    finally:
        subprocess.run(["pactl", "suspend-source", "virtual_mic", "0"], timeout=20)
        if proc.poll() is None:
            proc.kill()
    text = "\n".join(lines)
    assert rc == 7, text[-2000:]
    assert "mic lost, reopening" in text  # it tried again before giving up
    assert "error: the audio input stopped delivering sound" in text
    assert "Traceback" not in text
    assert took < 20, f"took {took:.1f} s to give up"


class _Talk:
    """One ``talk`` subprocess with its output lines, timestamped as they arrive."""

    def __init__(self, tmp_path: Path, *extra: str, command: str = "talk",
                 sigint_ignored: bool = False) -> None:
        cmd = [sys.executable, "-m", "avatar_agent", command, "-v",
               "--set", f"transcript.path={tmp_path / 't.jsonl'}", "--set", "audio.echo=none",
               *extra]
        self.t_start = time.monotonic()
        # sigint_ignored: started as a script's background job is (``talk &`` in a
        # non-interactive shell), which inherits SIGINT set to "ignore"
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=ignore)  # noqa: PLW1509 - a signal disposition only
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def phase(self) -> str:
        """loading until ``listening`` is printed, then the last ``state X`` logged."""
        phase = "loading"
        for _, line in list(self.lines):
            if line.startswith("listening"):
                phase = "listening"
            elif phase != "loading" and (m := re.search(r"state (\w+)$", line)):
                phase = m.group(1)
        return phase

    def wait_for(self, phase: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while self.phase() != phase:
            assert self.proc.poll() is None, f"talk exited early:\n{self.text()}"
            assert time.monotonic() < deadline, f"talk never reached {phase}:\n{self.text()}"
            time.sleep(0.01)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines if "QFont" not in line)[-3000:]

    def quit_and_time(self, send) -> tuple[int, float, str]:
        """``send()`` the quit request; returns (exit code, seconds to exit, phase then)."""
        phase = self.phase()
        t0 = self.t_quit = time.monotonic()
        send()
        try:
            rc = self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        took = time.monotonic() - t0
        self._reader.join(timeout=5)  # every line it printed, the last ones too
        return rc, took, phase

    def listened_after_quit(self) -> bool:
        """``listening`` printed after the quit request (with 0.2 s for a line already in
        the pipe when the request went out): it did not stop loading."""
        return any(line.startswith("listening") and t > self.t_quit + 0.2 for t, line in self.lines)


def _assert_clean_quit(talk: _Talk, rc: int, took: float, what: str) -> None:
    """Exit code 0 within 2 s of the request, no traceback."""
    out = talk.text()
    assert rc == 0, out
    assert took < 2.0, f"{what} took {took:.2f} s\n{out}"
    assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    """A spoken question in a voice that is not the avatar's (espeak-ng)."""
    path = tmp_path_factory.mktemp("q") / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path),
                    "What is the tallest mountain in the world, and how high is it?"],
                   check=True, timeout=60)
    return path


# Ten moments of a session, drawn once with a fixed seed (so a failure reruns alike):
# (phase to reach, extra delay in seconds after reaching it). Loading moments count
# from the process start.
_rng = random.Random(8)
MOMENTS = ([("loading", round(_rng.uniform(0.5, 3.0), 2)) for _ in range(2)]
           + [("listening", round(_rng.uniform(0.0, 1.5), 2)) for _ in range(3)]
           + [("thinking", round(_rng.uniform(0.0, 0.3), 2)) for _ in range(3)]
           + [("speaking", round(_rng.uniform(0.0, 1.0), 2)) for _ in range(2)])


@pytest.mark.parametrize(("phase", "delay"), MOMENTS, ids=[f"{p}-{d}s" for p, d in MOMENTS])
def test_ctrl_c_exits_with_0_within_2_s_at_any_moment(avdevices, tmp_path, question, phase,
                                                        delay):
    talk = _Talk(tmp_path, "--no-window")
    try:
        if phase == "loading":
            time.sleep(delay)
        else:
            talk.wait_for("listening")
            if phase != "listening":
                play_into_mic(question, block=False)
                talk.wait_for(phase, timeout=60)
            time.sleep(delay)
        rc, took, at = talk.quit_and_time(lambda: talk.proc.send_signal(signal.SIGINT))
    finally:
        if talk.proc.poll() is None:
            talk.proc.kill()
    _assert_clean_quit(talk, rc, took, f"Ctrl-C while {at}")
    if phase != "loading":  # the moment aimed at is the moment hit (loading may be quick)
        assert at in (phase, "speaking" if phase == "thinking" else phase), (phase, at)


# Start-up (imports, config, model load, warm-up): the moments of issue 18, three runs
# each, as a script's background job (SIGINT inherited as ignored: 0 of 10 exited before
# the fix) and SIGTERM. Before the fix each went on loading and listened.
STARTUP = [(sig, at, run) for sig in ("SIGINT", "SIGTERM") for at in (0.2, 0.5, 1.0, 2.0, 3.0)
           for run in range(3 if sig == "SIGINT" else 1)]


@pytest.mark.parametrize(("sig", "at", "run"), STARTUP, ids=[f"{s}-{a}s-{r}" for s, a, r in STARTUP])
def test_a_quit_signal_during_start_up_exits_0_within_2_s(avdevices, tmp_path, sig, at, run):
    talk = _Talk(tmp_path, "--no-window", sigint_ignored=True)
    try:
        time.sleep(max(0.0, at - (time.monotonic() - talk.t_start)))
        rc, took, phase = talk.quit_and_time(lambda: talk.proc.send_signal(getattr(signal, sig)))
    finally:
        if talk.proc.poll() is None:
            talk.proc.kill()
    _assert_clean_quit(talk, rc, took, f"{sig} {at} s after start ({phase})")
    # it stopped loading, it did not go on to listen (on a fast machine it may be
    # listening already at 3 s: then the quit is a quit while listening)
    assert not talk.listened_after_quit(), talk.text()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_serve_quits_on_a_signal_during_start_up(tmp_path, sig):
    cmd = [sys.executable, "-m", "avatar_agent", "serve", "--port", "0",
           "--set", f"transcript.path={tmp_path / 't.jsonl'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # noqa: PLW1509
    time.sleep(1.5)
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    try:
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert took < 2.0, f"took {took:.2f} s\n{out}"
    assert "Traceback" not in out, out


@pytest.mark.parametrize(("key", "phase"), [("q", "speaking"), ("Escape", "thinking")])
def test_q_and_esc_in_the_window_exit_within_2_s(avdevices, tmp_path, question, key, phase):
    title = f"avatar_quit_{key}"
    talk = _Talk(tmp_path, "--set", f"window.title={title}")
    try:
        talk.wait_for("listening")
        wid = window_id(title)
        assert wid, "the talk window never appeared"
        play_into_mic(question, block=False)
        talk.wait_for(phase, timeout=60)
        rc, took, at = talk.quit_and_time(lambda: subprocess.run(
            ["xdotool", "windowfocus", "--sync", wid, "key", key], timeout=10, check=True))
    finally:
        if talk.proc.poll() is None:
            talk.proc.kill()
    _assert_clean_quit(talk, rc, took, f"{key} while {at}")

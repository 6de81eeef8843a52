"""``talk`` faults: no input device, and a microphone that stops delivering sound."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import ROOT

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


def test_ctrl_c_exits_cleanly_with_0(avdevices, tmp_path):
    import signal

    cmd = [sys.executable, "-m", "avatar_agent", "talk", "--no-window",
           "--set", f"transcript.path={tmp_path / 't.jsonl'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline()
        while first and not first.startswith("listening"):
            first = proc.stdout.readline()
        assert first.startswith("listening"), "talk never started listening"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, rest
    assert took < 2.0, f"Ctrl-C took {took:.2f} s"
    assert "Traceback" not in rest

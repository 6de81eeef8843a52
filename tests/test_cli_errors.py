"""Bad input through the real CLI: one ``error:`` line, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_agent.audio.io import write_wav

ROOT = Path(__file__).resolve().parent.parent
QUESTION = ROOT / "examples" / "assets" / "question.wav"
FACE = ROOT / "examples" / "assets" / "face.png"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "avatar_agent", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "text.wav": b"this is not audio at all\n" * 10,
        "empty.wav": b"",
        # a valid header start, then 64 bytes of seeded garbage: the same file every run
        "corrupt.wav": (b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00"
                        + np.random.default_rng(7).bytes(64)),
    }
    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    out["silence.wav"] = write_wav(d / "silence.wav", np.zeros(16000 * 2, np.float32), 16000)
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "noface.png"), cv2.GaussianBlur(noise, (0, 0), 9))
    out["noface.png"] = d / "noface.png"
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out["broken.png"] = d / "broken.png"
    return out


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--set", "stt.beam_size=2"], 2, "unknown key 'stt.beam_size'"),
        (["--set", "llm.max_tokens=many"], 2, "llm.max_tokens"),
        (["--set", "tts.provider=espeak"], 2, "unknown provider 'espeak'"),
        (["--config", "/nonexistent/config.yaml"], 2, "config file not found"),
        (["--image", "/nonexistent/face.jpg"], 3, "/nonexistent/face.jpg"),
        (["--output", "out/reply.avi"], 3, "must end in .mp4"),
    ],
)
def test_config_and_path_mistakes(args, code, needle, tmp_path):
    base = ["reply", "--input", str(QUESTION), "--output", str(tmp_path / "r.mp4")]
    assert_one_line_error(run_cli(*base, *args), code, needle)


@pytest.mark.parametrize("name", ["text.wav", "empty.wav", "corrupt.wav"])
def test_unreadable_audio(bad_files, name, tmp_path):
    proc = run_cli("reply", "--input", str(bad_files[name]), "--output", str(tmp_path / "r.mp4"))
    assert_one_line_error(proc, 3, str(bad_files[name]))


def test_missing_audio(tmp_path):
    proc = run_cli("reply", "--input", str(tmp_path / "nope.wav"), "--output", str(tmp_path / "r.mp4"))
    assert_one_line_error(proc, 3, "audio file not found")


@pytest.mark.parametrize(("name", "needle"), [("noface.png", "no face"), ("broken.png", "broken.png")])
def test_unusable_images(bad_files, name, needle, tmp_path, store):
    proc = run_cli("render", "--image", str(bad_files[name]), "--audio", str(QUESTION),
                   "--output", str(tmp_path / "r.mp4"))
    assert_one_line_error(proc, 3, needle)


def test_silence_only_question_gets_an_answer_and_an_error(bad_files, tmp_path, store):
    out = tmp_path / "r.mp4"
    proc = run_cli("reply", "--input", str(bad_files["silence.wav"]), "--output", str(out),
                   "--set", f"transcript.path={tmp_path / 't.jsonl'}")
    assert_one_line_error(proc, 3, "no speech heard")
    assert "didn't hear anything" in proc.stdout
    assert out.stat().st_size > 10_000  # the avatar still says so, on video


def test_missing_model_and_no_source(tmp_path, store):
    env = {"AVATAR_AGENT_HOME": str(tmp_path / "empty"), "PIP_NO_INDEX": "1"}
    proc = run_cli("reply", "--input", str(QUESTION), "--output", str(tmp_path / "r.mp4"), env=env)
    assert_one_line_error(proc, 4, "is not pulled", "avatar-agent models pull")
    proc = run_cli("models", "pull", "smollm2-135m", env=env)
    assert_one_line_error(proc, 4, "no source reachable", "by hand in")
    assert not list((tmp_path / "empty").rglob("*.gguf"))


def test_corrupt_model_sha_mismatch(tmp_path, store):
    home = tmp_path / "home"
    shutil.copytree(store.folder("mediapipe-face"), home / "mediapipe-face",
                    ignore=shutil.ignore_patterns("*.verified"))
    mesh = home / "mediapipe-face" / "face_landmark.tflite"
    data = bytearray(mesh.read_bytes())
    data[5000:5016] = b"\x00" * 16
    mesh.write_bytes(bytes(data))
    env = {"AVATAR_AGENT_HOME": str(home)}
    proc = run_cli("models", "verify", "mediapipe-face", env=env)
    assert proc.returncode == 4 and "mediapipe-face: corrupt" in proc.stdout
    proc = run_cli("render", "--image", str(FACE), "--audio", str(QUESTION),
                   "--output", str(tmp_path / "r.mp4"), env=env)
    assert_one_line_error(proc, 4, "sha256 mismatch")

"""Output paths: a bad ``-o`` is one clear line, and nothing partial ever sits under the
output's name (written under a hidden temp name, renamed at the end)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from avatar_agent.errors import InputError
from avatar_agent.render.mp4 import Mp4Writer, probe

from .test_cli_errors import FACE, ROOT, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """20 s of espeak-ng speech (not the avatar's voice), long enough to interrupt a render."""
    path = tmp_path_factory.mktemp("speech") / "long.wav"
    text = " ".join(["The whales sing to the robot, and the robot hums along."] * 8)
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(path), text],
                   check=True, timeout=60)
    return path


def test_output_that_is_a_folder(tmp_path, speech):
    out = tmp_path / "existing.mp4"  # a folder that even has the right suffix
    out.mkdir()
    proc = run_cli("render", "--image", str(FACE), "--audio", str(speech), "-o", str(out))
    assert_one_line_error(proc, 3, f"output {out} is a folder", "-o out/reply.mp4")
    assert list(out.iterdir()) == []


def test_output_under_a_file_is_named(tmp_path, speech):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "x.mp4"
    proc = run_cli("render", "--image", str(FACE), "--audio", str(speech), "-o", str(out))
    line = assert_one_line_error(proc, 3, f"cannot write {out}", "writable")
    assert "None" not in line
    assert blocker.read_text() == "a file, not a folder"


def test_writer_left_by_an_error_leaves_nothing(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError), Mp4Writer(out, fps=25, sample_rate=16000) as writer:
        writer.add_frames(np.zeros((5, 64, 64, 3), np.uint8))
        writer.add_audio(np.zeros(3200, np.float32), 16000)
        assert not out.exists()  # while writing, the name is still free
        raise RuntimeError("the render failed")
    assert list(tmp_path.iterdir()) == []


def test_writer_finishes_under_its_name(tmp_path):
    out = tmp_path / "x.mp4"
    with Mp4Writer(out, fps=25, sample_rate=16000) as writer:
        writer.add_frames(np.zeros((25, 64, 64, 3), np.uint8))
        writer.add_audio(np.zeros(16000, np.float32), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]
    assert probe(out)["frames"] == 25


def test_folder_output_is_refused_by_the_writer_itself(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        Mp4Writer(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_render_leaves_nothing_under_the_name(tmp_path, speech, sig):
    out = tmp_path / "render.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "avatar_agent", "render", "--image", str(FACE),
                             "--audio", str(speech), "-o", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".render.mp4.partial.mp4"
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial.exists(), "the render never started writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not out.exists()
    if sig == signal.SIGINT:  # a clean interrupt also removes its temp file
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["... ?!", "  --  "])
def test_say_with_no_words_is_one_line_and_writes_nothing(tmp_path, text):
    out = tmp_path / "say.mp4"
    proc = run_cli("say", text, "-o", str(out))
    assert_one_line_error(proc, 3, "nothing to say", "has no words")
    assert list(tmp_path.iterdir()) == []


# issue 18: `say "Hello there" --output /proc/x.mp4` said "error: file not found: None"
@pytest.mark.parametrize(("output", "why"), [
    ("/proc/x.mp4", "/proc does not take new files"),   # ENOENT from the kernel's /proc
    ("/proc/self/x.mp4", "does not take new files"),
    ("/sys/x.mp4", "/sys is not writable"),               # EACCES, even for root
])
def test_an_unwritable_output_names_the_path_and_why(output, why):
    proc = run_cli("say", "Hello there", "--output", output)
    assert_one_line_error(proc, 3, f"cannot write {output}", why, "writable folder")


def test_a_full_disk_is_named_before_anything_loads(tmp_path, monkeypatch):
    # simulated: the free space shutil reports for the output's folder (a real full disk
    # cannot be made here without a mount)
    import shutil

    from avatar_agent.render import mp4

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=3 << 20))
    with pytest.raises(InputError) as err:
        mp4.check_output(tmp_path / "x.mp4", "--output")
    assert str(err.value).startswith(f"cannot write {tmp_path / 'x.mp4'}: the disk holding {tmp_path} is full (3 MB free)")

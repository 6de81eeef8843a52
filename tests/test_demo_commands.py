"""After ``make demo``, every command of README's Commands table works or says in one line
which extra to install (issue 18).

``make demo`` installs the extras ``local,examples,serve``. The test environment has every
extra, so an install with only the demo's is simulated: the modules of every installed
distribution that those extras do not require (torch, openai-whisper, nncf, pytest, …)
are hidden from the import system of the command's process (``sys.modules[name] =
None``, as if absent). Each command runs through the real entry point, with real models.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from functools import lru_cache
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .test_cli_errors import FACE, QUESTION, ROOT, assert_one_line_error

DEMO_EXTRAS = ("local", "examples", "serve")  # the Makefile's demo install


@lru_cache(maxsize=1)
def hidden_modules() -> tuple[str, ...]:
    """Top-level modules of installed distributions that ``avatar-agent[local,examples,serve]``
    does not pull in."""
    keep: set[str] = set()
    todo = [("avatar-agent", set(DEMO_EXTRAS))]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in keep:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        keep.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((req.name, set(req.extras)))
    kept_modules: set[str] = set()
    other: set[str] = set()
    for dist in metadata.distributions():
        tops = _top_level(dist)
        (kept_modules if canonicalize_name(dist.metadata["Name"] or "") in keep else other).update(tops)
    return tuple(sorted(other - kept_modules))


def _top_level(dist: metadata.Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    tops = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first.endswith((".dist-info", ".egg-info", ".pth")) or first in ("..", "__pycache__"):
            continue
        if len(f.parts) > 1 or first.endswith(".py"):
            tops.add(first.removesuffix(".py"))
    return tops


def demo_env_cmd(*args: str) -> list[str]:
    boot = ("import sys\n"
            f"for name in {list(hidden_modules())!r}: sys.modules[name] = None\n"
            f"sys.argv = ['avatar-agent', *{list(args)!r}]\n"
            "from avatar_agent.entry import run\nrun()\n")
    return [sys.executable, "-c", boot]


def run_demo(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(demo_env_cmd(*args), cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_the_simulated_install_hides_the_other_extras():
    hidden = set(hidden_modules())
    assert {"torch", "whisper", "nncf", "pytest"} <= hidden, sorted(hidden)[:40]
    assert not hidden & {"llama_cpp", "piper", "faster_whisper", "aiortc", "aiohttp", "skimage", "cv2",
                         "numpy", "openvino", "av", "avatar_agent"}


# the Commands table of README.md, as commands
TABLE = [["talk"], ["reply"], ["render"], ["say"], ["models", "list"], ["models", "pull"],
         ["models", "verify"], ["models", "convert-wav2lip"], ["serve"], ["devices"],
         ["config", "show"], ["bench"], ["train-visemes"]]


def test_the_table_is_the_readme_one():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands"):readme.index("Every command takes")]
    listed = set(re.findall(r"avatar_agent (\w[\w-]*)", table))
    assert listed == {c[0] for c in TABLE} - {"train-visemes"}, listed


@pytest.mark.parametrize("command", TABLE, ids=" ".join)
def test_help_of_every_command(command):
    proc = run_demo(*command, "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "Traceback" not in proc.stderr


def test_reply_render_say_config_models_work(tmp_path):
    for args in (["reply", "--input", str(QUESTION), "--image", str(FACE), "-o", str(tmp_path / "r.mp4")],
                 ["render", "--audio", str(QUESTION), "--image", str(FACE), "-o", str(tmp_path / "v.mp4")],
                 ["say", "Hello there", "-o", str(tmp_path / "s.mp4")],
                 ["config", "show"], ["models", "list"], ["models", "verify", "piper-joe-medium"]):
        proc = run_demo(*args, "--set", f"transcript.path={tmp_path / 't.jsonl'}" if args[0] in ("reply",) else "llm.max_tokens=32")
        assert proc.returncode == 0, (args, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr
    for name in ("r", "v", "s"):
        assert (tmp_path / f"{name}.mp4").stat().st_size > 10_000


@pytest.mark.parametrize(("args", "extra"), [
    (["models", "convert-wav2lip", "{tmp}/w.pth"], "convert"),
    (["train-visemes", "--out", "{tmp}/v.onnx"], "convert"),
])
def test_commands_needing_another_extra_say_which(args, extra, tmp_path):
    (tmp_path / "w.pth").write_bytes(b"x")
    proc = run_demo(*(a.format(tmp=tmp_path) for a in args))
    assert_one_line_error(proc, 6, f"pip install 'avatar-agent[{extra}]'")


def test_talk_without_a_screen_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(demo_env_cmd("talk"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, 7, "no display", "--no-window")


def test_devices_and_bench_answer(tmp_path):
    proc = run_demo("devices")
    assert proc.returncode in (0, 7) and "Traceback" not in proc.stderr, proc.stderr
    proc = run_demo("bench", "no-such-area")
    assert_one_line_error(proc, 3, "unknown benchmark", "conversation" if "conversation" in proc.stderr else "latency")


def test_serve_starts_and_quits(tmp_path):
    proc = subprocess.Popen(demo_env_cmd("serve", "--port", "0", "--set", f"transcript.path={tmp_path / 't.jsonl'}"),
                            cwd=ROOT, env=os.environ.copy(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert lines and lines[-1].startswith("serving on"), "".join(lines[-20:])
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, "".join(lines)

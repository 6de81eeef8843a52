"""Installed like a library: the wheel in a fresh venv, run from an empty folder.

The package is built into a wheel from a copy of the source (nothing is written into the
checkout) and installed with ``--no-deps`` into a new venv; the venv sees the test
environment's dependencies through a ``.pth`` file, but ``avatar_agent`` itself comes
from the wheel. The ``avatar-agent`` console script then runs from an empty temporary
folder: the working directory and the checkout must not matter.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import av
import pytest
import yaml

from avatar_agent.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICEN[CS]E*"))):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("avatar_agent", "configs"):
        shutil.copytree(ROOT / folder, src / folder, symlinks=True, ignore=ignore)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # this environment's setuptools when it can build the project (fast, offline), else
    # pip's isolated build with what pyproject.toml requires
    isolation = [] if _setuptools_major() < 77 else ["--no-build-isolation"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(wheels), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("avatar_agent-*.whl")

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # installed before the .pth exists, so pip sees an empty venv (and never touches the
    # editable install of the test environment)
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                          sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "_test_env_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return env_dir / "bin"


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


def _run(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AVATAR_AGENT_HOME")}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env={**full, **env},
                          capture_output=True, text=True, timeout=300, check=False)


def test_package_comes_from_the_wheel_with_its_config(installed: Path, tmp_path: Path):
    code = ("import avatar_agent, avatar_agent.config as c, avatar_agent.models as m;"
            "print(avatar_agent.__file__); print(c.DEFAULT_CONFIG); print(m.source_checkout())")
    proc = _run(installed, "python", "-c", code, cwd=tmp_path, env={})
    assert proc.returncode == 0, proc.stderr
    package, config, checkout = proc.stdout.split()
    site_packages = installed.parent / "lib"
    assert Path(package).is_relative_to(site_packages), package  # not the source tree
    assert Path(config).is_relative_to(site_packages) and Path(config).is_file()
    assert not Path(config).is_symlink()  # the file itself ships, not the checkout's link
    assert Path(config).read_bytes() == (ROOT / "configs" / "config.yaml").read_bytes()
    assert checkout == "None"


def test_config_show_from_an_empty_folder_uses_user_data_dir(installed: Path, tmp_path: Path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    xdg = tmp_path / "xdg"
    proc = _run(installed, "avatar-agent", "config", "show", cwd=cwd, env={"XDG_DATA_HOME": str(xdg)})
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    shipped = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())
    assert shown["llm"]["system_prompt"] == shipped["llm"]["system_prompt"]
    assert shown["avatar"]["image"] is None
    store = xdg / "avatar-agent"
    assert shown["lipsync"]["wav2lip"]["model"] == str(store / "wav2lip.xml")
    assert shown["stt"]["whisper"]["checkpoint"] == str(store / "whisper" / "tiny.en.pt")
    assert list(cwd.iterdir()) == []
    assert not xdg.exists()  # showing the config creates nothing


def test_say_from_an_empty_folder_writes_only_the_mp4(installed: Path, tmp_path: Path, store):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"AVATAR_AGENT_HOME": str(store.root), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = _run(installed, "avatar-agent", "say", "Hello", "-o", "x.mp4", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["x.mp4"]
    assert not (tmp_path / "xdg").exists()  # the store is $AVATAR_AGENT_HOME
    with av.open(str(cwd / "x.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(cwd / "x.mp4")) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert frames >= 10
    assert samples > 0.3 * 16000


def test_bench_when_installed_is_one_clear_line(installed: Path, tmp_path: Path):
    proc = _run(installed, "avatar-agent", "bench", "providers", cwd=tmp_path, env={})
    assert proc.returncode == InputError.exit_code, proc.stderr
    assert proc.stderr.startswith("error: the benchmarks ship with the source"), proc.stderr


def test_builtin_portrait_without_scikit_image_names_the_fix(monkeypatch):
    from avatar_agent.config import Config
    from avatar_agent.reply import load_avatar_image

    monkeypatch.setitem(sys.modules, "skimage", None)  # import fails like a missing package
    with pytest.raises(InputError) as err:
        load_avatar_image(Config())
    text = str(err.value)
    assert "--image PATH" in text and "avatar-agent[examples]" in text
    assert "\n" not in text

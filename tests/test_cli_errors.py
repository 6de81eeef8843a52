"""The bad-input catalogue: every mistake a user can make on the command line, through the
real CLI (``python -m avatar_agent ...`` in a subprocess).

A mistake ends with the documented exit code (README: 2 config or usage, 3 input, 4 model,
5 provider, 6 missing extra, 7 device), exactly one line on stderr starting with
``error:`` (the hint, when there is one, is in parentheses on the same line), no
traceback anywhere, and nothing under the output's name (no partial mp4 either). Inputs
that look odd but are fine (8-bit, 24-bit, stereo, odd rates, grayscale or RGBA
portraits, a missing output folder) must work.

The bad files are built here from a fixed seed and the project's own assets; most cases
fail before any model loads, the rest use the small embedded models.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from avatar_agent.audio.io import resample, write_wav
from avatar_agent.render.mp4 import probe

ROOT = Path(__file__).resolve().parent.parent
QUESTION = ROOT / "examples" / "assets" / "question.wav"
FACE = ROOT / "examples" / "assets" / "face.png"

# exit codes (README, avatar_agent/errors.py)
OK, USAGE, CONFIG, INPUT, MODEL, PROVIDER, EXTRA, DEVICE = 0, 2, 2, 3, 4, 5, 6, 7


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "avatar_agent", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The process failed the documented way: exit ``code``, one ``error:`` line on
    stderr that holds every needle, and no traceback in either stream."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == errors, proc.stderr  # nothing else
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def assert_clean_success(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")], proc.stderr


# ------------------------------------------------------------------ the bad files
def _question(seconds: float = 1.0) -> tuple[np.ndarray, int]:
    pcm, sr = sf.read(str(QUESTION), dtype="float32")
    return pcm[: int(seconds * sr)], sr


def _audio_files(d: Path) -> None:
    pcm, sr = _question()
    rng = np.random.default_rng(7)
    (d / "text.wav").write_bytes(b"this is not audio at all\n" * 10)
    (d / "empty.wav").write_bytes(b"")
    # a valid header start, then 64 bytes of seeded garbage: the same file every run
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00" + rng.bytes(64))
    write_wav(d / "zero.wav", np.zeros(0, np.float32), 16000)  # a header, no samples
    whole = (d / "whole.wav")
    sf.write(str(whole), pcm, sr, subtype="PCM_16")
    data = whole.read_bytes()
    (d / "header-cut.wav").write_bytes(data[:30])  # the fmt chunk cut in half
    (d / "data-cut.wav").write_bytes(data[: 44 + len(data[44:]) // 2])  # header says 1 s, half is there
    sf.write(str(d / "u8.wav"), pcm, sr, subtype="PCM_U8")
    sf.write(str(d / "pcm24.wav"), pcm, sr, subtype="PCM_24")
    sf.write(str(d / "float.wav"), pcm, sr, subtype="FLOAT")
    sf.write(str(d / "stereo.wav"), np.stack([pcm, pcm * 0.5], axis=1), sr, subtype="PCM_16")
    sf.write(str(d / "speech.flac"), pcm, sr)
    for rate in (8000, 11025, 44100, 96000):
        sf.write(str(d / f"rate{rate}.wav"), resample(pcm, sr, rate), rate, subtype="PCM_16")
    nan = pcm.copy()
    nan[1000:1010] = np.nan
    sf.write(str(d / "nan.wav"), nan, sr, subtype="FLOAT")
    inf = pcm.copy()
    inf[2000] = np.inf
    sf.write(str(d / "inf.wav"), inf, sr, subtype="FLOAT")
    sf.write(str(d / "10ms.wav"), pcm[int(0.3 * sr): int(0.31 * sr)], sr, subtype="PCM_16")
    sf.write(str(d / "100ms.wav"), pcm[int(0.3 * sr): int(0.4 * sr)], sr, subtype="PCM_16")
    sf.write(str(d / "2ms.wav"), pcm[int(0.3 * sr): int(0.302 * sr)], sr, subtype="PCM_16")
    write_wav(d / "silence-2s.wav", np.zeros(2 * 16000, np.float32), 16000)
    write_wav(d / "silence-60s.wav", np.zeros(60 * 8000, np.float32), 8000)
    (d / "audio-folder.wav").mkdir()


def _image_files(d: Path) -> None:
    face = cv2.imread(str(FACE), cv2.IMREAD_COLOR)
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), np.dstack([face, np.full(face.shape[:2], 200, np.uint8)]))
    cv2.imwrite(str(d / "deep.png"), face.astype(np.uint16) * 257)  # 16 bits per channel
    cv2.imwrite(str(d / "face.jpg"), face)
    cv2.imwrite(str(d / "onepixel.png"), face[256:257, 256:257])
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "noface.png"), cv2.GaussianBlur(noise, (0, 0), 9))
    tiny = np.full((480, 640, 3), 90, np.uint8)
    tiny[200:240, 300:340] = cv2.resize(face, (40, 40), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(d / "tiny-face.png"), tiny)
    cv2.imwrite(str(d / "huge.png"), np.full((3000, 4000, 3), 127, np.uint8))
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "text.png").write_text("a portrait, honestly\n")
    (d / "empty.png").write_bytes(b"")
    (d / "image-folder.png").mkdir()


def _video_files(d: Path) -> None:
    from avatar_agent.render.mp4 import Mp4Writer

    face = cv2.imread(str(FACE), cv2.IMREAD_COLOR)
    with Mp4Writer(d / "face.mp4", fps=25, sample_rate=16000, preset="ultrafast") as writer:
        writer.add_frames(np.repeat(face[None], 10, axis=0))
    with Mp4Writer(d / "audio-only.mp4", fps=25, sample_rate=16000) as writer:  # no video stream
        writer.add_audio(np.zeros(16000, np.float32), 16000)
    with Mp4Writer(d / "wide.mp4", fps=25, sample_rate=16000, preset="ultrafast") as writer:
        writer.add_frames(np.zeros((2, 64, 2000, 3), np.uint8))
    whole = (d / "face.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    (d / "garbage.mp4").write_bytes(np.random.default_rng(3).bytes(20_000))
    (d / "empty.mp4").write_bytes(b"")


def _config_files(d: Path) -> None:
    files = {
        "bad.yaml": "stt:\n  provider: [faster_whisper\n",
        "tabs.yaml": "llm:\n\tmax_tokens: 3\n",
        "list.yaml": "- stt\n- llm\n",
        "empty.yaml": "",
        "comments.yaml": "# everything default\n",
        "unknown-key.yaml": "stt:\n  beam_size: 2\n",
        "unknown-section.yaml": "speech:\n  provider: piper\n",
        "scalar-section.yaml": "llm: 5\n",
        "wrong-type.yaml": "llm:\n  temperature: warm\n",
        "null-value.yaml": "llm:\n  max_tokens: null\n",
        "missing-image.yaml": f"avatar:\n  image: {d / 'nope.png'}\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "latin1.yaml").write_bytes("window:\n  title: caf\xe9\n".encode("latin-1"))
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "config-folder.yaml").mkdir()


def _model_files(d: Path, store) -> None:
    (d / "garbage.xml").write_text("<net><layers>not an OpenVINO IR</net>\n")
    (d / "garbage.gguf").write_bytes(b"GGUF" + np.random.default_rng(5).bytes(4096))
    (d / "text.gguf").write_text("not a model\n")
    voice = d / "voice.onnx"
    voice.write_bytes(b"\x08\x07garbage, not a protobuf\xff\xfe" * 100)
    shutil.copy(f"{store.path('piper-joe-medium')}.json", f"{voice}.json")  # a valid config beside it
    (d / "nojson.onnx").write_bytes(b"\x08\x07garbage")
    (d / "home-empty").mkdir()
    (d / "home-is-a-file").write_text("not a folder\n")
    home = d / "home-corrupt"
    shutil.copytree(store.folder("mediapipe-face"), home / "mediapipe-face",
                    ignore=shutil.ignore_patterns("*.verified"))
    mesh = home / "mediapipe-face" / "face_landmark.tflite"
    data = bytearray(mesh.read_bytes())
    data[5000:5016] = b"\x00" * 16  # same size, different bytes
    mesh.write_bytes(bytes(data))


def _system_files(d: Path) -> None:
    # a sounddevice that fails to import the way it does without libportaudio2
    shim = d / "no-portaudio"
    shim.mkdir()
    (shim / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")


@pytest.fixture(scope="module")
def bad(tmp_path_factory, store) -> Path:
    """A folder of bad (and oddly shaped but fine) files, the same bytes every run."""
    d = tmp_path_factory.mktemp("bad")
    _audio_files(d)
    _image_files(d)
    _video_files(d)
    _config_files(d)
    _model_files(d, store)
    _system_files(d)
    return d


# ------------------------------------------------------------------ the catalogue
@dataclass(frozen=True)
class Case:
    """``args``/``env`` may name ``{bad}`` (the bad files), ``{tmp}`` (a fresh folder per
    case), ``{face}``, ``{question}``, ``{root}``, ``{unwritable}`` and ``{long_text}``.
    ``out`` is the output path that must not exist after a failure (and must after a
    success, ``seconds`` long when given); None: the case writes none. ``answered``: a failure after which the avatar
    still said so on video (heard nothing, apologised): ``out`` is then a whole mp4."""

    id: str
    args: tuple[str, ...]
    code: int
    needles: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    out: str | None = "{tmp}/out.mp4"
    stdout: tuple[str, ...] = ()
    answered: bool = False
    seconds: float | None = None  # a success's video length
    marks: tuple = field(default=(), compare=False)


def render(audio: str = "{question}", *more: str, image: str = "{face}") -> tuple[str, ...]:
    return ("render", "--image", image, "--audio", audio, "-o", "{tmp}/out.mp4", *more)


def reply(question: str = "{question}", *more: str) -> tuple[str, ...]:
    return ("reply", "--input", question, "-o", "{tmp}/out.mp4",
            "--set", "transcript.path={tmp}/t.jsonl", *more)


def say(text: str = "Hello there.", *more: str) -> tuple[str, ...]:
    return ("say", text, "-o", "{tmp}/out.mp4", *more)


def show(*more: str) -> tuple[str, ...]:
    return ("config", "show", *more)


NO_KEY = (("OPENAI_API_KEY", ""),)
HAS_KEY = (("OPENAI_API_KEY", "sk-test-not-a-real-key"),)

CONFIG_CASES = [
    Case("config-folder", show("--config", "{bad}/config-folder.yaml"), CONFIG,
         ("config-folder.yaml is a folder", "--config"), out=None),
    Case("config-binary", show("--config", "{bad}/binary.yaml"), CONFIG, ("not a text file",), out=None),
    Case("config-latin1", show("--config", "{bad}/latin1.yaml"), CONFIG, ("not a text file",), out=None),
    Case("config-bad-yaml", show("--config", "{bad}/bad.yaml"), CONFIG, ("not valid YAML", "line"), out=None),
    Case("config-tabs", show("--config", "{bad}/tabs.yaml"), CONFIG, ("not valid YAML",), out=None),
    Case("config-a-list", show("--config", "{bad}/list.yaml"), CONFIG, ("top level must be a mapping",),
         out=None),
    Case("config-empty-is-defaults", show("--config", "{bad}/empty.yaml"), OK, out=None,
         stdout=("provider: moonshine",)),
    Case("config-only-comments", show("--config", "{bad}/comments.yaml"), OK, out=None,
         stdout=("max_tokens: 96",)),
    Case("config-not-found", show("--config", "{bad}/nope.yaml"), CONFIG, ("config file not found",), out=None),
    Case("config-unknown-key-in-file", show("--config", "{bad}/unknown-key.yaml"), CONFIG,
         ("unknown key 'stt.beam_size'", "faster_whisper"), out=None),
    Case("config-unknown-section", show("--config", "{bad}/unknown-section.yaml"), CONFIG,
         ("unknown key 'speech'",), out=None),
    Case("config-section-is-a-number", show("--config", "{bad}/scalar-section.yaml"), CONFIG,
         ("llm: expected a section", "(got 5)"), out=None),
    Case("config-wrong-type-in-file", show("--config", "{bad}/wrong-type.yaml"), CONFIG,
         ("llm.temperature", "'warm'"), out=None),
    Case("config-null-value", show("--config", "{bad}/null-value.yaml"), CONFIG, ("llm.max_tokens",), out=None),
    Case("set-unknown-key", show("--set", "stt.beam_size=2"), CONFIG, ("unknown key 'stt.beam_size'",), out=None),
    Case("set-misspelt-key", show("--set", "llm.max_token=64"), CONFIG, ("did you mean 'max_tokens'",), out=None),
    Case("set-wrong-type", show("--set", "llm.max_tokens=many"), CONFIG, ("llm.max_tokens", "'many'"), out=None),
    Case("set-no-equals", show("--set", "llm.max_tokens"), CONFIG, ("expected section.key=value",), out=None),
    Case("set-into-a-value", show("--set", "llm.max_tokens.low=1"), CONFIG, ("'max_tokens' is not a section",),
         out=None),
    Case("range-temperature", show("--set", "llm.temperature=5"), CONFIG, ("llm.temperature", "2"), out=None),
    Case("range-fps-zero", show("--set", "lipsync.fps=0"), CONFIG, ("lipsync.fps",), out=None),
    Case("range-sample-rate", show("--set", "audio.sample_rate=12345"), CONFIG,
         ("audio.sample_rate", "12345"), out=None),
    Case("range-port", show("--set", "server.port=70000"), CONFIG, ("server.port", "65535"), out=None),
    Case("range-crf", show("--set", "output.crf=99"), CONFIG, ("output.crf",), out=None),
    Case("box-inverted", show("--set", "avatar.box=[300, 300, 100, 100]"), CONFIG,
         ("avatar.box", "x2 > x1 and y2 > y1"), out=None),
    Case("compute-type-unknown", show("--set", "stt.faster_whisper.compute_type=in8"), CONFIG,
         ("stt.faster_whisper.compute_type", "did you mean 'int8'"), out=None),
    Case("stt-device-unknown", show("--set", "stt.faster_whisper.device=tpu"), CONFIG,
         ("stt.faster_whisper.device", "'tpu'"), out=None),
    Case("rate-the-vad-takes", show("--set", "audio.sample_rate=48000"), OK, out=None,
         stdout=("sample_rate: 48000",)),
    Case("provider-unknown-tts", show("--set", "tts.provider=espeak"), CONFIG, ("unknown provider 'espeak'",),
         out=None),
    Case("provider-misspelt-stt", show("--set", "stt.provider=faster-whisper"), CONFIG,
         ("did you mean 'faster_whisper'",), out=None),
    Case("provider-unknown-llm", show("--set", "llm.provider=gpt4"), CONFIG, ("unknown provider 'gpt4'",), out=None),
    Case("engine-unknown", render("{question}", "--engine", "wav3lip"), CONFIG, ("unknown provider 'wav3lip'",)),
    Case("config-missing-image", render("{question}", "--config", "{bad}/missing-image.yaml", image="{face}"),
         OK),  # --image wins over the file's avatar.image
    Case("config-missing-image-used", ("render", "--audio", "{question}", "-o", "{tmp}/out.mp4",
                                       "--config", "{bad}/missing-image.yaml"), INPUT, ("avatar image not found",)),
    Case("env-home-is-a-file", render(), MODEL, ("home-is-a-file is a file, not a folder", "AVATAR_AGENT_HOME"),
         env=(("AVATAR_AGENT_HOME", "{bad}/home-is-a-file"),)),
    Case("env-home-is-a-file-pull", ("models", "pull", "mediapipe-face"), MODEL,
         ("is a file, not a folder", "AVATAR_AGENT_HOME"), out=None,
         env=(("AVATAR_AGENT_HOME", "{bad}/home-is-a-file"),)),
    Case("env-api-key-var-unset", reply("{question}", "--set", "llm.provider=openai",
                                        "--set", "llm.openai.api_key_env=AVATAR_TEST_NO_SUCH_VAR"),
         CONFIG, ("AVATAR_TEST_NO_SUCH_VAR is not set",)),
]

AUDIO_CASES = [
    Case("audio-missing", render("{tmp}/nope.wav"), INPUT, ("audio file not found",)),
    Case("audio-folder", render("{bad}/audio-folder.wav"), INPUT, ("audio-folder.wav is a folder",)),
    Case("audio-empty-file", render("{bad}/empty.wav"), INPUT, ("empty.wav is empty (0 bytes)",)),
    Case("audio-zero-length-wav", render("{bad}/zero.wav"), INPUT, ("zero.wav is empty",)),
    Case("audio-text-named-wav", render("{bad}/text.wav"), INPUT, ("cannot read audio file",)),
    Case("audio-corrupt", render("{bad}/corrupt.wav"), INPUT, ("corrupt.wav",)),
    Case("audio-header-cut", render("{bad}/header-cut.wav"), INPUT, ("header-cut.wav",)),
    Case("audio-data-cut-works", render("{bad}/data-cut.wav"), OK, seconds=0.5),
    Case("audio-8bit-works", render("{bad}/u8.wav"), OK, seconds=1.0),
    Case("audio-24bit-works", render("{bad}/pcm24.wav"), OK, seconds=1.0),
    Case("audio-float-works", render("{bad}/float.wav"), OK, seconds=1.0),
    Case("audio-stereo-works", render("{bad}/stereo.wav"), OK, seconds=1.0),
    Case("audio-flac-works", render("{bad}/speech.flac"), OK, seconds=1.0),
    Case("audio-8khz-works", render("{bad}/rate8000.wav"), OK, seconds=1.0),
    Case("audio-11025hz-works", render("{bad}/rate11025.wav"), OK, seconds=1.0),
    Case("audio-44100hz-works", render("{bad}/rate44100.wav"), OK, seconds=1.0),
    Case("audio-96khz-works", render("{bad}/rate96000.wav"), OK, seconds=1.0),
    Case("audio-nan", render("{bad}/nan.wav"), INPUT, ("NaN/inf",)),
    Case("audio-inf", render("{bad}/inf.wav"), INPUT, ("NaN/inf",)),
    Case("audio-10ms", render("{bad}/10ms.wav"), INPUT, ("10ms.wav is too short (0.010 s, at least 0.1 s)",)),
    Case("audio-100ms-works", render("{bad}/100ms.wav"), OK, seconds=0.08),  # two frames at 25 fps
    Case("audio-2ms", render("{bad}/2ms.wav"), INPUT, ("2ms.wav is too short",)),
    Case("audio-long-silence-works", render("{bad}/silence-60s.wav", "--set", "output.preset=ultrafast"), OK,
         seconds=60.0),
    Case("reply-audio-missing", reply("{tmp}/nope.wav"), INPUT, ("audio file not found",)),
    Case("reply-text-named-wav", reply("{bad}/text.wav"), INPUT, ("cannot read audio file",)),
    Case("reply-nan", reply("{bad}/nan.wav"), INPUT, ("NaN/inf",)),
    # silence is heard as nothing: the avatar says so on video, and the exit says so too
    Case("reply-silence", reply("{bad}/silence-2s.wav"), INPUT, ("no speech heard",), answered=True,
         stdout=("didn't hear anything",)),
    Case("reply-long-silence", reply("{bad}/silence-60s.wav"), INPUT, ("no speech heard",), answered=True,
         stdout=("didn't hear anything",)),
]

IMAGE_CASES = [
    Case("image-missing", render(image="{tmp}/nope.png"), INPUT, ("avatar image not found",)),
    Case("image-folder", render(image="{bad}/image-folder.png"), INPUT, ("image-folder.png is a folder",)),
    Case("image-text", render(image="{bad}/text.png"), INPUT, ("cannot read avatar image",)),
    Case("image-empty", render(image="{bad}/empty.png"), INPUT, ("empty.png is empty (0 bytes)",)),
    Case("image-broken-png", render(image="{bad}/broken.png"), INPUT, ("broken.png",)),
    Case("image-one-pixel", render(image="{bad}/onepixel.png"), INPUT, ("onepixel.png is too small (1x1)",)),
    Case("image-no-face", render(image="{bad}/noface.png"), INPUT, ("no face",)),
    Case("image-tiny-face", render(image="{bad}/tiny-face.png"), INPUT, ("no face found",)),
    Case("box-outside-the-image", render("{question}", "--set", "avatar.box=[0, 0, 5000, 5000]"), CONFIG,
         ("avatar.box [0, 0, 5000, 5000] lies outside", "(512x512)")),
    Case("box-around-no-face", render("{question}", "--set", "avatar.box=[0, 0, 8, 8]"), INPUT,
         ("no usable face in avatar.box [0, 0, 8, 8]", "check avatar.box")),
    Case("image-huge", render(image="{bad}/huge.png"), INPUT, ("too large", "4000x3000")),
    Case("image-grayscale-works", render(image="{bad}/gray.png"), OK),
    Case("image-rgba-works", render(image="{bad}/rgba.png"), OK),
    Case("image-16bit-works", render(image="{bad}/deep.png"), OK),
    Case("image-jpeg-works", render(image="{bad}/face.jpg"), OK),
    Case("video-works", ("render", "--video", "{bad}/face.mp4", "--audio", "{question}", "-o", "{tmp}/out.mp4"),
         OK),
    Case("video-missing", ("render", "--video", "{tmp}/nope.mp4", "--audio", "{question}", "-o", "{tmp}/out.mp4"),
         INPUT, ("avatar video not found",)),
    Case("video-garbage", ("render", "--video", "{bad}/garbage.mp4", "--audio", "{question}",
                           "-o", "{tmp}/out.mp4"), INPUT, ("cannot read avatar video", "Invalid data")),
    Case("video-empty-file", ("render", "--video", "{bad}/empty.mp4", "--audio", "{question}",
                              "-o", "{tmp}/out.mp4"), INPUT, ("empty.mp4 is empty (0 bytes)",)),
    Case("video-cut", ("render", "--video", "{bad}/cut.mp4", "--audio", "{question}", "-o", "{tmp}/out.mp4"),
         INPUT, ("cut.mp4",)),
    Case("video-no-frames", ("render", "--video", "{bad}/audio-only.mp4", "--audio", "{question}",
                             "-o", "{tmp}/out.mp4"), INPUT, ("audio-only.mp4 has no video stream",)),
    Case("video-huge", ("render", "--video", "{bad}/wide.mp4", "--audio", "{question}", "-o", "{tmp}/out.mp4"),
         INPUT, ("wide.mp4 is too large (2000x64)",)),
    # a still image given as --video is a one-frame video: that works
    Case("video-is-an-image-works", ("render", "--video", "{face}", "--audio", "{question}",
                                     "-o", "{tmp}/out.mp4"), OK),
]

OUTPUT_CASES = [
    Case("output-bare-name", ("render", "--image", "{face}", "--audio", "{question}", "-o", "{bad}/image-folder.png/x"),
         INPUT, ("must end in .mp4",), out="{bad}/image-folder.png/x"),
    Case("output-is-a-folder", ("render", "--image", "{face}", "--audio", "{question}", "-o", "{tmp}/dir.mp4"),
         INPUT, ("dir.mp4 is a folder", "-o out/reply.mp4"), out=None),
    Case("output-under-a-file", ("render", "--image", "{face}", "--audio", "{question}",
                                 "-o", "{face}/x.mp4"), INPUT, ("cannot write", "writable"), out="{face}/x.mp4"),
    Case("output-unwritable-folder", ("render", "--image", "{face}", "--audio", "{question}",
                                      "-o", "{unwritable}/out.mp4"), INPUT, ("cannot write",),
         out="{unwritable}/out.mp4"),
    Case("output-missing-parents-created", ("render", "--image", "{face}", "--audio", "{question}",
                                            "-o", "{tmp}/a/b/c/out.mp4"), OK, out="{tmp}/a/b/c/out.mp4"),
    Case("output-wrong-suffix", render("{question}", "-o", "{tmp}/out.avi"), INPUT, ("must end in .mp4",),
         out="{tmp}/out.avi"),
    Case("output-no-suffix", ("say", "Hello.", "-o", "{tmp}/out"), INPUT, ("must end in .mp4",), out="{tmp}/out"),
    Case("output-is-the-input-video", ("render", "--video", "{tmp}/in.mp4", "--audio", "{question}",
                                       "-o", "{tmp}/in.mp4"), INPUT, ("is also the input",), out=None),
    Case("output-overwrites-an-old-mp4", render("{question}"), OK),
    Case("record-wrong-suffix", ("talk", "--no-window", "--record", "{tmp}/session.avi"), INPUT,
         ("must end in .mp4",), out="{tmp}/session.avi"),
]

MODEL_CASES = [
    Case("model-not-pulled", render(), MODEL, ("is not pulled", "avatar-agent models pull mediapipe-face"),
         env=(("AVATAR_AGENT_HOME", "{bad}/home-empty"),)),
    Case("model-sha-mismatch", render(), MODEL, ("sha256 mismatch", "models pull --force mediapipe-face"),
         env=(("AVATAR_AGENT_HOME", "{bad}/home-corrupt"),)),
    Case("model-verify-corrupt", ("models", "verify", "mediapipe-face"), MODEL,
         ("corrupt or partial models: mediapipe-face", "models pull --force mediapipe-face"), out=None,
         env=(("AVATAR_AGENT_HOME", "{bad}/home-corrupt"),), stdout=("mediapipe-face: corrupt",)),
    Case("model-pull-no-source", ("models", "pull", "smollm2-135m"), MODEL, ("no source reachable", "by hand in"),
         env=(("AVATAR_AGENT_HOME", "{tmp}/home"), ("PIP_NO_INDEX", "1")), out=None),
    Case("models-pull-unknown-name", ("models", "pull", "gpt-5"), MODEL, ("unknown model 'gpt-5'", "smollm2-135m"),
         out=None),
    Case("models-verify-unknown-name", ("models", "verify", "gpt-5"), MODEL, ("unknown model 'gpt-5'",), out=None),
    Case("model-garbage-onnx-voice", say("Hello there.", "--set", "tts.piper.voice={bad}/voice.onnx"), MODEL,
         ("tts.piper.voice: cannot load voice.onnx", "models pull --force piper-joe-medium")),
    Case("model-onnx-voice-without-json", say("Hello there.", "--set", "tts.piper.voice={bad}/nojson.onnx"), MODEL,
         ("nojson.onnx.json is missing",)),
    Case("model-garbage-gguf", reply("{question}", "--set", "llm.llama_cpp.model={bad}/garbage.gguf"), MODEL,
         ("llm.llama_cpp.model: cannot load garbage.gguf",)),
    Case("model-text-gguf", reply("{question}", "--set", "llm.llama_cpp.model={bad}/text.gguf"), MODEL,
         ("cannot load text.gguf",)),
    Case("model-missing-gguf", reply("{question}", "--set", "llm.llama_cpp.model={tmp}/nope.gguf"), MODEL,
         ("llm.llama_cpp.model: file not found",)),
    Case("model-unknown-llm-name", reply("{question}", "--set", "llm.llama_cpp.model=llama-70b"), MODEL,
         ("'llama-70b' is neither a model-store name",)),
    Case("stt-compute-type-this-cpu-lacks", reply("{question}", "--set", "stt.provider=faster_whisper", "--set", "stt.faster_whisper.compute_type=float16"),
         MODEL, ("stt.faster_whisper", "float16")),
    Case("stt-cuda-without-cuda", reply("{question}", "--set", "stt.provider=faster_whisper", "--set", "stt.faster_whisper.device=cuda"),
         MODEL, ("stt.faster_whisper", "cuda")),
    Case("llm-chat-format-unknown", reply("{question}", "--set", "llm.llama_cpp.chat_format=bogus"),
         CONFIG, ("llm.llama_cpp.chat_format", "bogus")),
    Case("model-wav2lip-not-converted", render("{question}", "--engine", "wav2lip"), MODEL, ("wav2lip",)),
    Case("model-garbage-wav2lip-ir", render("{question}", "--engine", "wav2lip",
                                            "--set", "lipsync.wav2lip.model={bad}/garbage.xml"), MODEL,
         ("lipsync.wav2lip.model", "garbage.xml")),
    Case("model-convert-missing-checkpoint", ("models", "convert-wav2lip", "{tmp}/nope.pth"), INPUT,
         ("nope.pth",), out=None),
]

PROVIDER_CASES = [
    Case("openai-llm-no-key", reply("{question}", "--set", "llm.provider=openai"), CONFIG,
         ("llm.openai: environment variable OPENAI_API_KEY is not set",), env=NO_KEY),
    Case("openai-tts-no-key", say("Hello there.", "--set", "tts.provider=openai"), CONFIG,
         ("tts.openai: environment variable OPENAI_API_KEY is not set",), env=NO_KEY),
    Case("openai-stt-no-key", reply("{question}", "--set", "stt.provider=openai"), CONFIG,
         ("stt.openai: environment variable OPENAI_API_KEY is not set",), env=NO_KEY),
    Case("openai-tts-refused", say("Hello there.", "--set", "tts.provider=openai",
                                   "--set", "tts.openai.base_url=http://127.0.0.1:1/v1",
                                   "--set", "tts.openai.max_retries=0"), PROVIDER,
         ("cannot connect", "127.0.0.1:1"), env=HAS_KEY),
    Case("openai-stt-refused", reply("{question}", "--set", "stt.provider=openai",
                                     "--set", "stt.openai.base_url=http://127.0.0.1:1/v1",
                                     "--set", "stt.openai.max_retries=0"), PROVIDER,
         ("cannot connect", "127.0.0.1:1", "holds the avatar's apology"), env=HAS_KEY, answered=True,
         stdout=("could not answer",)),
    Case("openai-llm-refused", reply("{question}", "--set", "llm.provider=openai",
                                     "--set", "llm.openai.base_url=http://127.0.0.1:1/v1",
                                     "--set", "llm.openai.max_retries=0"), PROVIDER,
         ("cannot connect", "127.0.0.1:1", "holds the avatar's apology"), env=HAS_KEY, answered=True,
         stdout=("could not answer",)),
]

DEVICE_CASES = [
    Case("talk-no-display", ("talk",), DEVICE, ("no display for the avatar window", "--no-window"),
         env=(("DISPLAY", ""), ("WAYLAND_DISPLAY", ""), ("QT_QPA_PLATFORM", "xcb")), out=None),
    Case("talk-input-device-99", ("talk", "--no-window", "--set", "audio.input_device=99"), DEVICE,
         ("input device",), out=None),
    Case("talk-input-device-name", ("talk", "--no-window", "--set", "audio.input_device=no such mic"), DEVICE,
         ("input device",), out=None),
    Case("devices-lists-or-says-none", ("devices",), OK, out=None),  # no devices at all is no error
    Case("devices-no-portaudio", ("devices",), DEVICE, ("audio is unavailable", "libportaudio2"), out=None,
         env=(("PYTHONPATH", "{bad}/no-portaudio:{root}"),)),
    Case("talk-no-portaudio", ("talk", "--no-window"), DEVICE, ("audio is unavailable", "libportaudio2"),
         out=None, env=(("PYTHONPATH", "{bad}/no-portaudio:{root}"),)),
]

USAGE_CASES = [
    Case("usage-no-command", (), USAGE, ("COMMAND",), out=None),
    Case("usage-unknown-command", ("frobnicate",), USAGE, ("invalid choice: 'frobnicate'",), out=None),
    Case("usage-unknown-option", ("render", "--audio", "{question}", "--frobnicate"), USAGE,
         ("--frobnicate",), out=None),
    Case("usage-reply-without-input", ("reply",), USAGE, ("--input",), out=None),
    Case("usage-render-without-audio", ("render", "--image", "{face}"), USAGE, ("--audio",), out=None),
    Case("usage-image-and-video", ("render", "--image", "{face}", "--video", "{bad}/face.mp4",
                                   "--audio", "{question}", "-o", "{tmp}/out.mp4"), USAGE, ("--video",)),
    Case("usage-say-without-text", ("say",), USAGE, ("text",), out=None),
    Case("usage-models-without-action", ("models",), USAGE, ("ACTION",), out=None),
    Case("usage-serve-port-not-a-number", ("serve", "--port", "eighty"), USAGE, ("--port",), out=None),
    Case("serve-port-out-of-range", ("serve", "--port", "70000"), INPUT, ("not a TCP port",), out=None),
    Case("say-empty", say(""), INPUT, ("nothing to say", "empty")),
    Case("say-blank", say("   "), INPUT, ("nothing to say",)),
    Case("say-no-words", say("... ?!"), INPUT, ("nothing to say", "has no words")),
    Case("say-dashes", say("  --  "), INPUT, ("nothing to say", "has no words")),
    Case("say-20k-characters", say("{long_text}"), INPUT, ("too long", "20000 characters", "at most")),
]

CASES = (CONFIG_CASES + AUDIO_CASES + IMAGE_CASES + OUTPUT_CASES + MODEL_CASES + PROVIDER_CASES
         + DEVICE_CASES + USAGE_CASES)


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: /proc)."""
    if os.geteuid() == 0:
        return Path("/proc/avatar-agent-test")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _prepare(case: Case, tmp_path: Path, bad: Path) -> None:
    """Per-case setup beyond the shared files."""
    if case.id == "output-is-a-folder":
        (tmp_path / "dir.mp4").mkdir()
    elif case.id == "output-is-the-input-video":
        shutil.copy(bad / "face.mp4", tmp_path / "in.mp4")
    elif case.id == "output-overwrites-an-old-mp4":
        (tmp_path / "out.mp4").write_bytes(b"an old render")


def test_catalogue_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, bad: Path, tmp_path: Path) -> None:
    names = {"bad": str(bad), "tmp": str(tmp_path), "face": str(FACE), "question": str(QUESTION),
             "root": str(ROOT), "unwritable": str(_unwritable(tmp_path)),
             "long_text": "The whale sang. " * 1250}
    _prepare(case, tmp_path, bad)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    proc = run_cli(*(a.format(**names) for a in case.args),
                   env={k: v.format(**names) for k, v in case.env}, timeout=180)
    out = Path(case.out.format(**names)) if case.out else None
    if case.code == OK:
        assert_clean_success(proc)
    else:
        assert_one_line_error(proc, case.code, *case.needles)
    if out is not None and (case.code == OK or case.answered):
        assert out.is_file() and out.stat().st_size > 1000, proc.stderr
        assert out.read_bytes()[4:8] == b"ftyp"  # a whole mp4, not the old bytes
        if case.seconds is not None:  # the audio was read at its real rate and length
            assert abs(probe(out)["video_s"] - case.seconds) <= 0.08 + case.seconds * 0.01, probe(out)
    elif out is not None:
        assert not out.exists(), f"{out} exists after a failure"
    for needle in case.stdout:
        assert needle in proc.stdout, proc.stdout
    # nothing half-written anywhere near the output
    partial = [p.name for p in tmp_path.rglob("*") if "partial" in p.name]
    assert not partial, partial
    if case.code != OK and not case.answered:
        new = sorted(p.name for p in tmp_path.iterdir() if p.name not in before and p.suffix == ".mp4")
        assert not new, new

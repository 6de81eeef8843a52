"""Typed configuration: ``configs/config.yaml`` mirrored one to one by pydantic models.

Load with :func:`load_config` (YAML file + ``section.key=value`` overrides). Every
validation problem becomes one :class:`ConfigError` line naming the key path, what is
expected, and the closest valid key when one was misspelt.

The default file ships inside the package as ``avatar_agent/configs/config.yaml``
(:data:`DEFAULT_CONFIG`); in a source checkout that is a link to the repository's
``configs/config.yaml``, the one file users read and edit. Paths do not depend on where
the package lives: files the user names (``avatar.image``, ``transcript.path``, ...) are
relative to the working directory, and relative model files (:data:`MODEL_PATHS`) are
looked up in the working directory, then in the model store
(:func:`avatar_agent.models.home`). ``avatar.image: null`` is the built-in portrait.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import registry
from .errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "config.yaml"

# model files given by path: relative ones are found in the working directory, else in
# the model store (see resolve_model_paths)
MODEL_PATHS = (
    ("stt", "whisper", "checkpoint"),
    ("tts", "coqui", "model_path"),
    ("tts", "coqui", "config_path"),
    ("lipsync", "wav2lip", "model"),
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- avatar / face
class AvatarConfig(_Section):
    image: Path | None = Field(
        None, description="Portrait photo (jpg/png); null = the built-in portrait (needs scikit-image)."
    )
    video: Path | None = Field(None, description="Optional short face video looped as the avatar.")
    box: tuple[int, int, int, int] | None = Field(
        None, description="Fixed face box x1,y1,x2,y2 in pixels; skips face detection."
    )

    @field_validator("box")
    @classmethod
    def _box_corners(cls, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if box is not None:
            x1, y1, x2, y2 = box
            if x1 < 0 or y1 < 0:
                raise ValueError("x1 and y1 must be >= 0 (pixels from the top-left corner)")
            if x2 <= x1 or y2 <= y1:
                raise ValueError("expected [x1, y1, x2, y2] with x2 > x1 and y2 > y1 "
                                 "(left, top, right, bottom)")
        return box


class FaceConfig(_Section):
    detector: Literal["short", "full"] = Field(
        "full", description="MediaPipe detector: short range (selfies) or full range."
    )
    min_face_px: int = Field(64, ge=16, description="Faces smaller than this are rejected.")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Detection score threshold.")
    cache: bool = Field(True, description="Cache landmarks per image hash on disk.")
    # The mesh's landmarks shape the warp: under OpenVINO's default BF16 they moved with
    # the CPU's matrix unit (Intel AMX vs AMD EPYC's AVX-512 BF16 kernels), and so did how
    # far the lips open (issue 18). f32 costs ~0.5 ms more per mesh call, once per avatar.
    precision: Literal["f32", "bf16"] = Field(
        "f32", description="OpenVINO inference precision of the face detector and mesh "
                           "(f32: the same landmarks on every CPU; bf16: the CPU's fast default).")


# ---------------------------------------------------------------- STT
class FasterWhisperConfig(_Section):
    model: str = Field("whisper-tiny.en", description="Model-store name or a CTranslate2 model folder.")
    device: str = "cpu"
    compute_type: str = Field("int8", description="int8, int8_float32, float32, ...")
    beam_size: int = Field(1, ge=1)
    language: str | None = "en"
    vad_filter: bool = False
    cpu_threads: int = Field(0, ge=0, description="0 = library default.")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in CT2_DEVICES:
            raise ValueError(f"unknown device {v!r}, expected one of {list(CT2_DEVICES)}")
        return v

    @field_validator("compute_type")
    @classmethod
    def _compute_type(cls, v: str) -> str:
        if v not in CT2_COMPUTE_TYPES:
            close = difflib.get_close_matches(v, CT2_COMPUTE_TYPES, n=1)
            near = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown compute type {v!r}, expected one of {list(CT2_COMPUTE_TYPES)}{near}")
        return v


# what CTranslate2 (faster-whisper) accepts; which of them a machine runs is its own business
CT2_DEVICES = ("cpu", "cuda", "auto")
CT2_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                     "int16", "float16", "bfloat16", "float32")


class WhisperConfig(_Section):
    checkpoint: Path = Field(Path("whisper/tiny.en.pt"), description="Local .pt file.")
    language: str | None = "en"
    fp16: bool = False


class OpenAISTTConfig(_Section):
    model: str = "whisper-1"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    language: str | None = "en"
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0)


class MoonshineConfig(_Section):
    model: str = Field("tiny-en", description="Model inside moonshine-voice==0.0.44 (tiny-en) or a folder.")
    arch: Literal["tiny", "base"] = Field("tiny", description="Architecture of that model.")
    incremental: bool = Field(
        False, description="talk: the library's streaming decoder (false: one-shot decodes, prefetched in the pause)."
    )
    chunk_ms: int = Field(100, ge=10, le=1000, description="incremental: feed the stream in pieces of this much audio.")
    vad_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="The library's own speech gate (its default 0.5 clipped words)."
    )
    tail_pad_ms: int = Field(200, ge=0, le=2000, description="Silence added after the speech before decoding.")


class STTConfig(_Section):
    provider: str = "moonshine"
    stream: bool = Field(True, description="talk: feed the STT while the user speaks (one-shot if the provider cannot stream).")
    prefetch_ms: int = Field(
        100, ge=0, description="talk: start decoding after this much silence, before the turn commits (0 = off)."
    )
    moonshine: MoonshineConfig = MoonshineConfig()
    faster_whisper: FasterWhisperConfig = FasterWhisperConfig()
    whisper: WhisperConfig = WhisperConfig()
    openai: OpenAISTTConfig = OpenAISTTConfig()

    @field_validator("provider")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_provider("stt", v)


# ---------------------------------------------------------------- LLM
class LlamaCppConfig(_Section):
    model: str = Field("smollm2-135m", description="Model-store name or a .gguf path.")
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(0, ge=0, description="0 = all cores.")
    chat_format: str | None = Field(None, description="None = the template stored in the GGUF.")
    seed: int = 0
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0, description="llama.cpp repetition penalty (1 = off).")
    repack: bool = Field(
        False, description="llama.cpp extra weight buffers (repack/AMX); off: AMX crashes in 0.3.x."
    )


class OpenAILLMConfig(_Section):
    model: str = "gpt-4o-mini"
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (Ollama, vLLM, ...).")
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0)


class LLMConfig(_Section):
    provider: str = "llama_cpp"
    system_prompt: str = (
        # measured on SmolLM2-135M (benchmarks/RESULTS.md): this wording gave the most correct
        # one-sentence answers; "no markdown / no lists" made the small model ramble
        "You are Ava, a helpful assistant who speaks out loud. "
        "Reply with one short, correct sentence in plain English."
    )
    max_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    history_turns: int = Field(6, ge=0, description="User/assistant pairs kept in context.")
    max_spoken_words: int = Field(
        60, ge=0, description="End the reply at the first sentence end after this many words (0 = no cap)."
    )
    loop_ngram: int = Field(4, ge=0, description="Stop a reply that repeats a run of this many words (0 = off).")
    copy_ngram: int = Field(
        6, ge=0, description="A reply repeating this many words of a recent answer is cut or asked again (0 = off)."
    )
    language: str | None = Field(
        "en", description="A reply clearly in another language is asked again, never spoken (ISO 639-1; null = off)."
    )
    knowledge: list[str] = Field(
        [], description="Text/markdown files the answers draw on (BM25 passages per question)."
    )
    knowledge_passages: int = Field(3, ge=1, description="Passages of llm.knowledge put into each question.")
    llama_cpp: LlamaCppConfig = LlamaCppConfig()
    openai: OpenAILLMConfig = OpenAILLMConfig()

    @field_validator("provider")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_provider("llm", v)


# ---------------------------------------------------------------- TTS
class PiperConfig(_Section):
    voice: str = Field("piper-joe-medium", description="Model-store name or a .onnx voice path.")
    length_scale: float = Field(1.0, gt=0, description=">1 speaks slower.")
    noise_scale: float = Field(0.667, ge=0)
    noise_w: float = Field(0.8, ge=0)
    speaker_id: int | None = None
    phoneme_timings: bool = Field(
        True, description="Per-phoneme timings from the voice (needs the onnx package)."
    )


class CoquiConfig(_Section):
    model_path: Path | None = Field(None, description="Local model checkpoint (.pth).")
    config_path: Path | None = Field(None, description="Its config.json.")
    speaker: str | None = None


class OpenAITTSConfig(_Section):
    model: str = "tts-1"
    voice: str = "alloy"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    speed: float = Field(1.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0)


class TTSConfig(_Section):
    provider: str = "piper"
    piper: PiperConfig = PiperConfig()
    coqui: CoquiConfig = CoquiConfig()
    openai: OpenAITTSConfig = OpenAITTSConfig()

    @field_validator("provider")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_provider("tts", v)


# ---------------------------------------------------------------- lip-sync
class VisemeConfig(_Section):
    gain: float = Field(1.0, gt=0, description="Mouth opening per unit of loudness.")
    max_open: float = Field(1.0, gt=0, le=2.0, description="Largest opening (1 = natural wide).")
    attack_ms: float = Field(10.0, ge=0)
    release_ms: float = Field(40.0, ge=0)
    teeth: bool = True
    audio_model: bool = Field(
        True, description="Without phoneme timings (a TTS other than Piper, a wav, the browser), a "
                          "small trained model reads the lip shapes from the sound (docs/viseme_model.md)."
    )


class Wav2LipConfig(_Section):
    model: Path = Field(Path("wav2lip.xml"), description="OpenVINO IR or ONNX.")
    device: str = "CPU"
    batch_size: int = Field(16, ge=1)
    pads: tuple[int, int, int, int] = Field((0, 10, 0, 0), description="top, bottom, left, right")
    precision: Literal["auto", "f32", "bf16"] = "auto"
    skip_silence: bool = True
    silence_db: float = Field(
        -50.0, description="Frames whose 200 ms audio window stays below this RMS level (dBFS) skip inference."
    )


class LipSyncConfig(_Section):
    engine: str = "viseme"
    fps: int = Field(25, ge=1, le=60)
    head_motion: bool = Field(False, description="Slight idle head motion (talk turns it on).")
    blink: bool = True
    seed: int = 0
    viseme: VisemeConfig = VisemeConfig()
    wav2lip: Wav2LipConfig = Wav2LipConfig()

    @field_validator("engine")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_provider("lipsync", v)


# ---------------------------------------------------------------- audio / window
class VADConfig(_Section):
    aggressiveness: int = Field(2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 20
    preroll_ms: int = Field(300, ge=0)
    hangover_ms: int = Field(600, ge=0)
    min_utterance_ms: int = Field(300, ge=0)
    max_utterance_s: float = Field(20.0, gt=0)
    onset_ms: int = Field(60, ge=10, description="Voiced run that counts as speech onset (barge-in).")
    energy_margin_db: float = Field(9.0, ge=0, description="Speech must be this far above the noise floor.")
    early_ms: int = Field(
        200, ge=0, description="Start answering after this much silence (0 = wait for the hangover)."
    )
    merge_s: float = Field(
        0.6, ge=0, description="Speech starting again this long after a turn was committed joins it: one turn (0 = off)."
    )
    turn_model: Literal["none", "smart_turn"] = Field(
        "none", description="At that pause ask an end-of-turn model first (smart_turn: model smart-turn-v3.2)."
    )
    turn_threshold: float = Field(
        0.5, ge=0, le=1, description="smart_turn: answer early only when P(turn complete) >= this."
    )
    turn_threads: int = Field(1, ge=1, le=16, description="smart_turn: onnxruntime threads per call.")


class AudioConfig(_Section):
    input_device: str | int | None = Field(None, description="Name substring or index; None = default.")
    output_device: str | int | None = None
    sample_rate: Literal[8000, 16000, 32000, 48000] = Field(
        16000, description="Pipeline rate for capture/STT: 8000, 16000, 32000 or 48000 (what the VAD takes).")
    block_ms: int = Field(
        10, ge=5, le=100, description="Mic block: PortAudio buffers 2 (measured 20 ms at 10)."
    )
    output_block_ms: int = Field(
        20, ge=5, le=100, description="Speaker block: smaller stops barge-in sooner, underflows more."
    )
    vad: VADConfig = VADConfig()
    barge_in: bool = True
    echo: Literal["gate", "none"] = Field(
        "gate", description="gate: ignore the mic's VAD while the avatar speaks unless barge-in."
    )
    echo_gate_db: float = Field(
        -40.0, le=0, description="echo=gate: while speaking, mic frames below this dBFS are silence."
    )
    echo_tail_ms: int = Field(250, ge=0, description="Keep the echo gate this long after playback.")
    echo_return_db: float = Field(
        -18.0, le=0, description="echo=gate: mic must exceed the speaker's own level plus this (dB)."
    )
    latency: Literal["low", "high"] = Field("low", description="PortAudio latency hint for both streams.")
    device_retries: int = Field(3, ge=0, description="Reopen a lost microphone or speaker this many times (1 s apart).")


class WindowConfig(_Section):
    title: str = "avatar_agent"
    show_status: bool = True
    scale: float = Field(1.0, gt=0)
    record: Path | None = Field(None, description="Also write the session to this mp4.")


class TimeoutsConfig(_Section):
    stt_s: float = Field(30.0, gt=0, description="Longest wait for a transcript after the speech ends.")
    llm_first_s: float = Field(30.0, gt=0, description="Longest wait for the reply's first token.")
    llm_stall_s: float = Field(20.0, gt=0, description="Longest gap between tokens; later, the reply ends where it got to.")
    tts_s: float = Field(30.0, gt=0, description="Longest wait for a sentence's (next) speech chunk.")
    lipsync_s: float = Field(30.0, gt=0, description="Longest wait for one chunk's frames.")


class TranscriptConfig(_Section):
    path: Path = Path("out/transcript.jsonl")


class OutputConfig(_Section):
    crf: int = Field(17, ge=0, le=51, description="mp4 (H.264) quality: lower is better and larger; 17 = visually lossless.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                    "veryslow"] = Field("medium", description="x264 speed/size trade-off.")
    pix_fmt: Literal["yuvj420p", "yuv420p", "yuv444p"] = Field(
        "yuvj420p", description="yuvj420p full-range 4:2:0 (plays everywhere), yuv444p sharper colour, fewer players.")


class IceServerConfig(_Section):
    urls: str | list[str] = Field(..., description="stun:host:port or turn:host:port?transport=udp")
    username: str | None = None
    credential: str | None = None


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="Address serve binds (0.0.0.0: every interface, e.g. a LAN).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port of the page and signalling (0 = any free).")
    max_sessions: int = Field(4, ge=1, description="Browser sessions at once; more get 'busy, try again'.")
    token: str | None = Field(None, description="If set, the page must be opened with ?token=<this>.")
    echo: Literal["gate", "none"] = Field(
        "none", description="audio.echo for web sessions (browsers cancel their own echo).")
    audio_timeout_s: float = Field(
        10.0, gt=0, description="End a session whose mic sends nothing this long (never started, or stopped).")
    ice_servers: list[IceServerConfig] = Field(
        default_factory=list, description="STUN/TURN servers (none: host candidates, LAN only).")
    avatar: Literal["shared", "per_session"] = Field(
        "shared", description="shared: every session shows the configured avatar; per_session: "
                              "the page may upload its own portrait (checked: size, image, a face).")
    avatar_max_mb: float = Field(
        5.0, gt=0, le=50, description="per_session: largest portrait upload accepted (MB).")


class Config(_Section):
    avatar: AvatarConfig = AvatarConfig()
    face: FaceConfig = FaceConfig()
    stt: STTConfig = STTConfig()
    llm: LLMConfig = LLMConfig()
    tts: TTSConfig = TTSConfig()
    lipsync: LipSyncConfig = LipSyncConfig()
    audio: AudioConfig = AudioConfig()
    window: WindowConfig = WindowConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    transcript: TranscriptConfig = TranscriptConfig()
    output: OutputConfig = OutputConfig()
    server: ServerConfig = ServerConfig()

    def masked(self) -> dict[str, Any]:
        """The config as plain data, with any secret-looking value masked."""
        data = self.model_dump(mode="json")
        return _mask(data)


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, k) for k, v in node.items()}
    if isinstance(node, list):  # e.g. server.ice_servers: TURN credentials
        return [_mask(v, key) for v in node]
    if isinstance(node, str) and any(s in key.lower() for s in ("secret", "password", "token", "credential")):
        return "***"
    if key == "api_key_env" and isinstance(node, str):
        return f"{node} ({'set' if os.environ.get(node) else 'not set'})"
    return node


def _check_provider(role: str, value: str) -> str:
    if value not in registry.PROVIDERS[role]:
        close = difflib.get_close_matches(value, registry.names(role), n=1)
        near = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown provider '{value}', expected one of {registry.names(role)}{near}")
    return value


# ---------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (default :data:`DEFAULT_CONFIG`), apply ``key.path=value`` overrides
    and resolve relative model paths (:func:`resolve_model_paths`)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder", hint="pass a YAML file to --config")
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8)",
                              hint="pass a YAML config file to --config") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}",
                              hint="check the file's permissions") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML", hint="fix the syntax") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded or {}
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"config file not found: {path}", hint="pass an existing file to --config")
    for item in overrides:
        _apply_override(data, item)
    return resolve_model_paths(validate(data))


def resolve_model_paths(cfg: Config, root: Path | None = None) -> Config:
    """A copy of ``cfg`` whose relative model paths (:data:`MODEL_PATHS`) that do not
    exist in the working directory point into the model store ``root`` (default
    :func:`avatar_agent.models.home`), where a file of the same name also counts;
    absolute and present paths are kept."""
    from .models import home

    root = home() if root is None else Path(root)
    cfg = cfg.model_copy(deep=True)
    for *sections, key in MODEL_PATHS:
        node: BaseModel = cfg
        for name in sections:
            node = getattr(node, name)
        value = getattr(node, key)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and not path.exists():
            # by file name too: configs written for the old "checkpoints/..." defaults
            by_name = root / path.name
            path = by_name if not (root / path).exists() and by_name.exists() else root / path
        setattr(node, key, path)
    return cfg


def validate(data: dict[str, Any]) -> Config:
    """Validate plain data into a :class:`Config`; errors become one-line ConfigErrors."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], data)) from None


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value", hint="e.g. --set llm.max_tokens=64")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _describe(err: dict[str, Any], data: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1)
        near = f"; did you mean '{close[0]}'?" if close else ""
        return f"config: unknown key '{loc}'{near} (valid here: {', '.join(valid)})"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    if kind in ("model_type", "model_attributes_type", "dict_type"):  # a section given as a value
        msg = "expected a section of key: value lines"
    got_text = "" if isinstance(got, dict) or repr(got) in msg else f" (got {got!r})"
    return f"config: {loc}: {msg}{got_text}"


def _valid_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return sorted(model.model_fields)

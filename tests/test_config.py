"""Config: the YAML mirrors the typed defaults; every mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import avatar_agent
from avatar_agent.config import DEFAULT_CONFIG, Config, load_config, resolve_model_paths
from avatar_agent.errors import ConfigError
from avatar_agent.models import home

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_yaml_equals_typed_defaults():
    # configs/config.yaml must mirror config.py one to one (no missing, no stale keys)
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert shipped == Config().model_dump(mode="json")
    assert load_config() == resolve_model_paths(Config())


def test_default_config_is_package_data_and_the_repo_file():
    # one file: the package's default config is the repo's configs/config.yaml (a link to
    # it), so the installed default and the documented file cannot drift apart
    package = Path(avatar_agent.__file__).resolve().parent
    assert DEFAULT_CONFIG == package / "configs" / "config.yaml"
    assert DEFAULT_CONFIG.read_bytes() == (ROOT / "configs" / "config.yaml").read_bytes()


def test_working_directory_does_not_matter(tmp_path: Path, monkeypatch):
    here = load_config()
    monkeypatch.chdir(tmp_path)
    assert load_config() == here
    assert here.lipsync.wav2lip.model == home() / "wav2lip.xml"
    assert here.stt.whisper.checkpoint == home() / "whisper" / "tiny.en.pt"
    assert here.avatar.image is None  # the built-in portrait, not a file under the project


def test_relative_model_paths_cwd_first_then_store(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.xml").write_text("<net/>")
    store = tmp_path / "store"
    monkeypatch.setenv("AVATAR_AGENT_HOME", str(store))
    cfg = load_config(None, ["lipsync.wav2lip.model=mine.xml", "stt.whisper.checkpoint=w/x.pt",
                             f"tts.coqui.model_path={tmp_path / 'abs.pth'}",
                             "avatar.image=me.png", "transcript.path=t.jsonl"])
    assert cfg.lipsync.wav2lip.model == Path("mine.xml")  # present here: the user's file
    assert cfg.stt.whisper.checkpoint == store / "w" / "x.pt"  # absent here: the store's
    assert cfg.tts.coqui.model_path == tmp_path / "abs.pth"  # absolute: as given
    assert cfg.tts.coqui.config_path is None
    # a config written for the old defaults (checkpoints/...) finds the store's file by name
    store.mkdir()
    (store / "wav2lip.xml").write_text("<net/>")
    old = load_config(None, ["lipsync.wav2lip.model=checkpoints/wav2lip.xml"])
    assert old.lipsync.wav2lip.model == store / "wav2lip.xml"
    # files the user names are relative to the working directory, never the store
    assert cfg.avatar.image == Path("me.png")
    assert cfg.transcript.path == Path("t.jsonl")


def test_override_sets_nested_value_with_yaml_typing():
    cfg = load_config(None, ["llm.max_tokens=42", "audio.barge_in=false", "avatar.box=[1, 2, 30, 40]"])
    assert cfg.llm.max_tokens == 42
    assert cfg.audio.barge_in is False
    assert cfg.avatar.box == (1, 2, 30, 40)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stt.faster_whisper.beam_sise=2", "unknown key 'stt.faster_whisper.beam_sise'; did you mean 'beam_size'?"),
        ("llm.max_tokens=lots", "llm.max_tokens: Input should be a valid integer"),
        ("tts.provider=pipr", "did you mean 'piper'?"),
        ("lipsync.engine=wav2lipp", "did you mean 'wav2lip'?"),
        ("lipsync.fps=0", "lipsync.fps: Input should be greater than or equal to 1"),
        ("nonsense=1", "unknown key 'nonsense'"),
    ],
)
def test_bad_values_are_one_line_with_key_path(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert expected in text
    assert "\n" not in text
    assert err.value.exit_code == 2


def test_bad_override_syntax_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["llm.max_tokens"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm:\n  max_tokens: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_user_file_merges_over_defaults(tmp_path: Path):
    user = tmp_path / "c.yaml"
    user.write_text("llm:\n  provider: openai\n  openai:\n    base_url: http://127.0.0.1:1/v1\n")
    cfg = load_config(user)
    assert cfg.llm.provider == "openai"
    assert cfg.llm.openai.base_url == "http://127.0.0.1:1/v1"
    assert cfg.stt.provider == "moonshine"  # untouched sections keep defaults


def test_masked_never_contains_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-very-secret")
    shown = yaml.safe_dump(Config().masked())
    assert "sk-test-very-secret" not in shown
    assert "OPENAI_API_KEY (set)" in shown

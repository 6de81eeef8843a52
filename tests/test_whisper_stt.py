"""openai-whisper STT through a small RANDOMLY INITIALISED checkpoint.

Real Whisper weights cannot be fetched here, so the test saves a tiny Whisper network
with random weights in exactly the format openai-whisper writes (``{"dims": ...,
"model_state_dict": ...}`` via ``torch.save``) and loads it through the provider, i.e.
through ``whisper.load_model(path)`` like a user's ``tiny.en.pt``. The text is
meaningless; the test checks the whole path runs and what the provider hands Whisper.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import MissingExtraError, ModelError
from avatar_agent.types import Utterance


@pytest.fixture(scope="module")
def random_whisper_pt(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="extra 'whisper' (torch) not installed")
    whisper_model = pytest.importorskip("whisper.model", reason="extra 'whisper' not installed")
    torch.manual_seed(0)
    # tiny.en's front end and vocabulary (80 mels, 1500 audio frames, English-only 51864
    # tokens) with a 1-layer, 64-wide network so it runs in milliseconds
    dims = whisper_model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    model = whisper_model.Whisper(dims)
    path = tmp_path_factory.mktemp("whisper") / "random-tiny.en.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


def whisper_cfg(path, **extra) -> Config:
    return Config.model_validate({"stt": {"provider": "whisper",
                                          "whisper": {"checkpoint": str(path), **extra}}})


async def test_whisper_random_init_checkpoint_transcribes_through_load_model(random_whisper_pt, speak,
                                                                          monkeypatch):
    stt = registry.create("stt", "whisper", cfg=whisper_cfg(random_whisper_pt), store=None)
    stt.load()
    assert not stt._model.is_multilingual  # an English-only checkpoint, like tiny.en
    # what the provider hands openai-whisper, recorded by a pass-through spy on the model
    calls: list[tuple[np.ndarray, dict]] = []
    real = stt._model.transcribe

    def spy(audio, **options):
        calls.append((np.array(audio), options))
        return real(audio, **options)

    monkeypatch.setattr(stt._model, "transcribe", spy)
    pcm = speak("Hello there, how are you?", sr=22050)
    t0 = time.perf_counter()
    result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=22050))
    wall = time.perf_counter() - t0
    # the text of random weights means nothing; the path does: Whisper got the speech
    # at its own 16 kHz (not 22 kHz samples read as 16 kHz), greedy, in English
    (audio, options), = calls
    want = speak("Hello there, how are you?", sr=16000)
    assert audio.dtype == np.float32 and len(audio) == len(want)
    assert np.corrcoef(audio, want)[0, 1] > 0.999
    assert options["language"] == "en" and options["temperature"] == 0.0
    assert options["fp16"] is False  # CPU
    assert result.text == result.text.strip() and result.language == "en"
    assert result.audio_s == pytest.approx(len(pcm) / 22050, abs=0.01)
    assert 0 < result.proc_s <= wall
    # greedy decoding of fixed weights: the same audio gives the same text
    assert (await stt.transcribe(Utterance(pcm=pcm, sample_rate=22050))).text == result.text
    await stt.aclose()


async def test_whisper_random_init_rejects_non_english_for_english_only_checkpoint(random_whisper_pt):
    stt = registry.create("stt", "whisper", cfg=whisper_cfg(random_whisper_pt, language="de"),
                          store=None)
    with pytest.raises(ModelError, match="English-only"):
        await stt.transcribe(Utterance(pcm=np.zeros(16000, np.float32), sample_rate=16000))


def test_whisper_missing_checkpoint_is_model_error(tmp_path):
    pytest.importorskip("whisper", reason="extra 'whisper' not installed")
    with pytest.raises(ModelError, match="file not found.*no.pt"):
        registry.create("stt", "whisper", cfg=whisper_cfg(tmp_path / "no.pt"), store=None)


async def test_whisper_corrupt_checkpoint_is_model_error(tmp_path):
    pytest.importorskip("whisper", reason="extra 'whisper' not installed")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    stt = registry.create("stt", "whisper", cfg=whisper_cfg(bad), store=None)
    with pytest.raises(ModelError, match="cannot load bad.pt"):
        stt.load()


def test_whisper_without_the_extra_is_one_line_missing_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "whisper", None)  # what an install without the extra sees
    with pytest.raises(MissingExtraError) as err:
        registry.create("stt", "whisper", cfg=whisper_cfg(tmp_path / "x.pt"), store=None)
    assert "'whisper'" in str(err.value) and "pip install 'avatar-agent[whisper]'" in str(err.value)
    assert "\n" not in str(err.value)

"""STT providers on real speech: the bundled faster-whisper tiny.en, Piper-spoken input."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ModelError
from avatar_agent.types import Utterance

SENTENCE = "The quick brown fox jumps over the lazy dog."


def words(text: str) -> list[str]:
    """Lowercase words without punctuation, for word-error comparisons."""
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.fixture(scope="module")
def fw_stt(cfg, store):
    stt = registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    stt.load()
    return stt


async def test_faster_whisper_transcribes_piper_speech_exactly(fw_stt, speak):
    pcm = speak(SENTENCE, sr=16000)
    t0 = time.perf_counter()
    result = await fw_stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
    wall = time.perf_counter() - t0
    assert words(result.text) == words(SENTENCE)
    assert result.language == "en"
    assert result.audio_s == pytest.approx(len(pcm) / 16000, abs=0.01)
    # proc_s is this call's own decoding time, in seconds: inside the call's wall time
    # and (Whisper encodes a 30 s window) not a zero or a figure in milliseconds
    assert 0.01 < result.proc_s <= wall, (result.proc_s, wall)
    # word timings are inside the utterance and in order
    assert [w.text.strip(".,").lower() for w in result.words] == words(SENTENCE)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and result.words[-1].end <= result.audio_s + 0.1


async def test_faster_whisper_resamples_other_rates(fw_stt, speak):
    # 22050 Hz input goes through the shared resampler before decoding
    pcm = speak("Please open the window.", sr=22050)
    result = await fw_stt.transcribe(Utterance(pcm=pcm, sample_rate=22050))
    assert words(result.text) == ["please", "open", "the", "window"]


async def test_faster_whisper_from_folder_path_and_beam(store, speak):
    folder = store.path("whisper-tiny.en").parent
    cfg = Config.model_validate({"stt": {"faster_whisper": {"model": str(folder), "beam_size": 3}}})
    stt = registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    result = await stt.transcribe(Utterance(pcm=speak("Good morning, how are you?"), sample_rate=16000))
    assert words(result.text) == ["good", "morning", "how", "are", "you"]
    await stt.aclose()


async def test_faster_whisper_silence_gives_empty_or_short_text(fw_stt):
    silence = np.zeros(16000, dtype=np.float32)
    cfg_result = await fw_stt.transcribe(Utterance(pcm=silence, sample_rate=16000))
    assert len(words(cfg_result.text)) <= 2  # Whisper may hallucinate a word on silence, not a sentence


def test_faster_whisper_bad_model_is_one_line_model_error(store, tmp_path):
    cfg = Config.model_validate({"stt": {"faster_whisper": {"model": str(tmp_path)}}})
    with pytest.raises(ModelError, match="has no model.bin") as err:
        registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    assert "\n" not in str(err.value)
    cfg = Config.model_validate({"stt": {"faster_whisper": {"model": "no-such-model"}}})
    with pytest.raises(ModelError, match="neither a model-store name nor a folder"):
        registry.create("stt", "faster_whisper", cfg=cfg, store=store)


async def test_faster_whisper_vad_filter_skips_long_silence(store, speak):
    cfg = Config.model_validate({"stt": {"faster_whisper": {"vad_filter": True}}})
    stt = registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    gap = np.zeros(3 * 16000, dtype=np.float32)
    pcm = np.concatenate([gap, speak("Please open the window."), gap])
    result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
    assert words(result.text) == ["please", "open", "the", "window"]
    assert 2.5 < result.words[0].start < 3.6  # timings stay on the original clock
    await stt.aclose()

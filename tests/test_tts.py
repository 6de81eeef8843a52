"""TTS providers on the real bundled Piper voice (en_US-joe-medium, 22050 Hz)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ModelError


@pytest.fixture(scope="module")
def piper(cfg, store):
    tts = registry.create("tts", "piper", cfg=cfg, store=store)
    tts.load()
    return tts


async def test_piper_speaks_with_plausible_length(piper):
    text = "Hello, I am your avatar and I am happy to talk with you today."
    chunks = [c async for c in piper.synthesize(text)]
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.sample_rate == 22050
    assert chunk.pcm.dtype == np.float32 and chunk.pcm.ndim == 1
    # ~13 words at a normal speaking rate (2-4 words/s) -> 3-7 s of audio
    assert 2.5 < chunk.duration_s < 8.0
    assert np.abs(chunk.pcm).max() <= 1.0
    assert float(np.sqrt(np.mean(chunk.pcm**2))) > 0.02  # real speech energy, not silence


async def test_piper_one_chunk_per_sentence_in_order(piper):
    chunks = [c async for c in piper.synthesize("One. Two three four five six. Seven!")]
    assert [c.text for c in chunks] == ["One.", "Two three four five six.", "Seven!"]
    assert chunks[0].duration_s < chunks[1].duration_s  # the long sentence is longer


async def test_piper_length_scale_slows_speech(store):
    text = "This sentence is spoken at two different speeds."
    durations = []
    for scale in (1.0, 1.5):
        cfg = Config.model_validate({"tts": {"piper": {"length_scale": scale}}})
        tts = registry.create("tts", "piper", cfg=cfg, store=store)
        durations.append(sum([c.duration_s async for c in tts.synthesize(text)]))
        await tts.aclose()
    assert durations[1] > durations[0] * 1.3


async def test_piper_round_trip_through_stt(piper, cfg, store):
    from avatar_agent.audio.io import resample
    from avatar_agent.types import Utterance

    chunks = [c async for c in piper.synthesize("Turn on the kitchen lights.")]
    pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16000)
    stt = registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
    assert result.text.lower().strip(".") == "turn on the kitchen lights"


async def test_piper_empty_text_yields_nothing(piper):
    assert [c async for c in piper.synthesize("   ")] == []


async def test_piper_stopping_early_stops_synthesis(piper, monkeypatch):
    # record every sentence the real voice is asked to speak (a pass-through spy)
    spoken: list[str] = []
    real = piper._voice.synthesize

    def spy(text, *args, **kwargs):
        spoken.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(piper._voice, "synthesize", spy)
    text = " ".join(f"This is sentence number {n}." for n in range(30))
    async for _ in piper.synthesize(text):
        break  # the consumer leaves after the first sentence
    # the next call queues behind the first on the one worker thread, so when it is done
    # the first has ended: counted, not timed
    chunks = [c async for c in piper.synthesize("Still working.")]
    assert [c.text for c in chunks] == ["Still working."]
    assert spoken[-1] == "Still working."
    first = spoken[:-1]
    assert first[0] == "This is sentence number 0."
    # the stop lands while a sentence or two are in flight; the other 27+ never start
    assert len(first) <= 3, first


def test_piper_missing_voice_file_is_model_error(store, tmp_path):
    cfg = Config.model_validate({"tts": {"piper": {"voice": str(tmp_path / "nope.onnx")}}})
    with pytest.raises(ModelError, match="file not found"):
        registry.create("tts", "piper", cfg=cfg, store=store)


async def test_piper_phoneme_timings_tile_the_audio(piper):
    pytest.importorskip("onnx", reason="phoneme timings need the onnx package (extra 'local')")
    chunks = [c async for c in piper.synthesize("Hello world. How are you?")]
    assert len(chunks) == 2
    for chunk in chunks:
        ph = chunk.phonemes
        assert ph is not None and len(ph) > 5
        assert ph[0].start == 0.0
        assert all(a.end == pytest.approx(b.start) for a, b in zip(ph, ph[1:], strict=False))
        assert ph[-1].end == pytest.approx(chunk.duration_s, abs=1e-6)  # covers the audio exactly
    symbols = "".join(p.phoneme for p in chunks[0].phonemes)
    assert "h" in symbols and "w" in symbols  # "hello world" in IPA


async def test_piper_phoneme_timings_off(store):
    cfg = Config.model_validate({"tts": {"piper": {"phoneme_timings": False}}})
    tts = registry.create("tts", "piper", cfg=cfg, store=store)
    chunks = [c async for c in tts.synthesize("Hello world.")]
    assert chunks[0].phonemes is None


async def test_piper_keeps_the_spoken_text_out_of_debug_logs(store, caplog):
    import logging

    logging.getLogger("piper").setLevel(logging.NOTSET)  # as in a fresh process
    caplog.set_level(logging.DEBUG)
    tts = registry.create("tts", "piper", cfg=Config(), store=store)
    [c async for c in tts.synthesize("my private shopping list")]
    assert "shopping" not in caplog.text  # piper itself logs the text at DEBUG

"""The Moonshine provider on real speech from voices that are not Piper (espeak-ng):
one-shot, streamed while spoken, silence; and the buffering fallback stream of a
provider that cannot stream (faster-whisper)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.audio.vad import SpeechPause, VadSegmenter
from avatar_agent.config import Config
from avatar_agent.errors import ModelError
from avatar_agent.stt.feeder import SpeechFeeder
from avatar_agent.types import Utterance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from make_questions import degrade, espeak, fixture_set  # noqa: E402

pytest.importorskip("moonshine_voice", reason="moonshine-voice not installed (extra 'local')")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", "")).split()


@pytest.fixture(scope="module")
def moon():
    stt = registry.create("stt", "moonshine", cfg=Config())
    stt.load()
    yield stt
    asyncio.run(stt.aclose())


async def test_moonshine_transcribes_espeak_voices(moon):
    # fixture-set clips (benchmarks/make_questions.py): other voices, speeds and levels
    clips = dict((q.name, (q, pcm)) for q, pcm in fixture_set())
    cases = {"q01": {"going", "rain", "tomorrow"},   # en-gb, 170 wpm, clean
             "q02": {"far", "away", "moon"},         # en-us+f3, 130 wpm, 20 dB SNR noise
             "q09": {"biggest", "animal", "earth"},  # en-us+f4, 175 wpm, loud
             "q13": {"like", "music"}}               # en-us+f3, 165 wpm, quiet (-38 dBFS)
    for name, key_words in cases.items():
        q, pcm = clips[name]
        result = await moon.transcribe(Utterance(pcm=pcm, sample_rate=16000))
        assert key_words <= set(words(result.text)), (q.text, result.text)
        assert result.audio_s == pytest.approx(len(pcm) / 16000)


async def test_moonshine_resamples_other_rates(moon):
    import soxr

    pcm = soxr.resample(espeak("Is it going to rain tomorrow?", "en-gb", 170), 16000, 22050)
    result = await moon.transcribe(Utterance(pcm=pcm.astype(np.float32), sample_rate=22050))
    assert {"going", "rain", "tomorrow"} <= set(words(result.text)), result.text


@pytest.mark.parametrize("incremental", [False, True], ids=["prefetched", "incremental"])
async def test_moonshine_stream_gives_the_one_shot_text(moon, incremental):
    if incremental:  # the library's own streaming decoder, fed in 10 ms blocks
        moon = registry.create("stt", "moonshine", cfg=Config.model_validate(
            {"stt": {"moonshine": {"incremental": True}}}))
    for k, (text, voice) in enumerate([("Which planet is closest to the sun?", "en-029"),
                                       ("Tell me, please, how far away is the moon from the earth?",
                                        "en-us+m3")]):
        pcm = degrade(espeak(text, voice, 160), "clean", seed=k)
        one_shot = await moon.transcribe(Utterance(pcm=pcm, sample_rate=16000))
        stream = moon.open_stream(16000)
        for i in range(0, len(pcm), 160):  # 10 ms blocks, as the mic delivers them
            stream.feed(pcm[i:i + 160])
            if i % 3200 == 0:
                await asyncio.sleep(0)  # let the worker's feeds complete now and then
        streamed = await stream.result()
        await stream.aclose()
        if incremental:  # the library's decoder hears the lead-in the one-shot path trims
            assert words(streamed.text)[0] == words(text)[0]  # (its accuracy: bench_stt)
        else:
            assert streamed.text == one_shot.text
        assert words(one_shot.text)[0] == words(text)[0]  # it heard the question
        assert streamed.audio_s == pytest.approx(len(pcm) / 16000)
    if incremental:
        await moon.aclose()


async def test_moonshine_silence_and_empty_give_empty_text(moon):
    for pcm in (np.zeros(16000, np.float32), np.zeros(0, np.float32),
                (np.random.default_rng(1).standard_normal(16000) * 0.003).astype(np.float32)):
        assert (await moon.transcribe(Utterance(pcm=pcm, sample_rate=16000))).text == ""
        stream = moon.open_stream(16000)
        stream.feed(pcm)
        assert (await stream.result()).text == ""
        await stream.aclose()


async def test_feeder_streams_the_utterance_and_prefetches_in_the_pause(moon):
    # the live path without devices: 10 ms blocks through the real VAD and the feeder
    pcm = degrade(espeak("Is it going to rain tomorrow?", "en-gb", 170), "noise20", seed=3)
    pcm = np.concatenate([pcm, np.zeros(8000, np.float32)])
    vad = VadSegmenter(early_ms=200)
    feeder = SpeechFeeder(moon, vad, prefetch_ms=60)
    taken = None
    for i in range(0, len(pcm), 160):
        events = vad.push(pcm[i:i + 160], i / 16000)
        feeder.update(events)
        for ev in events:
            if isinstance(ev, SpeechPause) and taken is None:
                taken = (ev.utterance, feeder.take(ev.utterance))
        await asyncio.sleep(0)
    assert taken is not None, "no pause detected"
    utt, (stream, key) = taken
    assert stream.fed >= len(utt.pcm)
    assert stream._want == key  # a decode of this very audio was asked for in the pause
    result = await stream.result(key)
    # (which decode served it, the prefetch or a fresh one, depends on the scheduling of a
    # loaded machine: asserting it failed once in CI under load; the text is what counts)
    assert {"rain", "tomorrow"} <= set(words(result.text)), result.text
    await feeder.aclose()


async def test_fallback_stream_of_a_one_shot_provider(cfg, store):
    # faster-whisper cannot stream: its stream buffers and transcribes one-shot
    fw = registry.create("stt", "faster_whisper", cfg=cfg, store=store)
    assert not fw.streaming
    pcm = degrade(espeak("What is two plus two?", "en-us", 140), "clean")
    stream = fw.open_stream(16000)
    for i in range(0, len(pcm), 1600):
        stream.feed(pcm[i:i + 1600])
    stream.prefetch("k")
    streamed = await stream.result("k")
    one_shot = await fw.transcribe(Utterance(pcm=pcm, sample_rate=16000))
    assert streamed.text == one_shot.text
    assert "plus" in words(streamed.text)
    await stream.aclose()
    await fw.aclose()


def test_moonshine_bad_model_folder_is_one_line(tmp_path):
    cfg = Config.model_validate({"stt": {"provider": "moonshine", "moonshine": {"model": str(tmp_path)}}})
    with pytest.raises(ModelError, match="encoder_model.ort"):
        registry.create("stt", "moonshine", cfg=cfg)

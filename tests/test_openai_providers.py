"""Cloud providers through the real ``openai`` client against a real local HTTP server.

``tests/openai_server.py`` serves the OpenAI endpoints on 127.0.0.1 with scripted
faults: streaming, 401, 429-then-success, 500, a slow answer hitting the timeout and
cancellation mid-stream (the server sees the connection close and stops).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ConfigError, ProviderError
from avatar_agent.types import Utterance
from tests.openai_server import SECONDS_PER_CHAR, SPEECH_RATE, Fault, OpenAIServer, error_body

KEY_ENV = "AVATAR_TEST_OPENAI_KEY"
CHAT = "/v1/chat/completions"
STT = "/v1/audio/transcriptions"
SPEECH = "/v1/audio/speech"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
FAST_RETRY = {"retry-after-ms": "10"}  # the client honours it: retries without a 0.5 s backoff


@pytest.fixture
def server(monkeypatch):
    with OpenAIServer() as srv:
        monkeypatch.setenv(KEY_ENV, srv.api_key)
        yield srv


def config(srv: OpenAIServer, *, timeout_s: float = 10.0, max_retries: int = 2, **extra) -> Config:
    common = {"base_url": srv.base_url, "api_key_env": KEY_ENV, "timeout_s": timeout_s,
              "max_retries": max_retries}
    return Config.model_validate({
        "stt": {"provider": "openai", "openai": {**common, "model": "whisper-1"}},
        "llm": {"provider": "openai", "openai": {**common, "model": "gpt-test"}},
        "tts": {"provider": "openai", "openai": {**common, "model": "tts-1", "voice": "nova",
                                                 **extra}},
    })


def make(role: str, cfg: Config):
    return registry.create(role, "openai", cfg=cfg, store=None)


# ---------------------------------------------------------------- LLM
async def test_llm_streams_sse_deltas_in_order(server):
    llm = make("llm", config(server))
    deltas = [d.text async for d in llm.stream(MESSAGES, max_tokens=32, temperature=0.2)]
    assert deltas == server.reply_tokens
    req = server.requests[-1]
    assert req.json["stream"] is True and req.json["model"] == "gpt-test"
    assert req.json["messages"] == MESSAGES and req.json["max_tokens"] == 32
    assert req.json["temperature"] == pytest.approx(0.2)
    assert req.headers["authorization"] == f"Bearer {server.api_key}"
    await llm.aclose()


async def test_llm_max_tokens_is_sent_and_honoured(server):
    llm = make("llm", config(server))
    # the server cuts its reply at the max_tokens it received: 3 of its 8 tokens
    assert await llm.complete(MESSAGES, max_tokens=3, temperature=0.0) == "Hello there!"
    sent = server.requests[-1].json
    assert sent["max_tokens"] == 3 and sent["temperature"] == 0.0 and sent["messages"] == MESSAGES


async def test_llm_switches_to_max_completion_tokens_when_the_model_asks(server):
    server.fail_next(CHAT, Fault(400, body=error_body(
        400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
             "Use 'max_completion_tokens' instead.")))
    llm = make("llm", config(server))
    assert await llm.complete(MESSAGES, max_tokens=3, temperature=0.0) == "Hello there!"
    assert await llm.complete(MESSAGES, max_tokens=3, temperature=0.0) == "Hello there!"
    sent = [r.json for r in server.requests if r.path == CHAT]
    assert "max_tokens" in sent[0] and "max_completion_tokens" not in sent[0]
    assert [r.get("max_completion_tokens") for r in sent[1:]] == [3, 3]  # learnt once


async def test_llm_other_400_is_reported(server):
    server.fail_next(CHAT, Fault(400, body=error_body(400, "messages: too long")))
    llm = make("llm", config(server))
    with pytest.raises(ProviderError, match="HTTP 400 .*messages: too long"):
        await llm.complete(MESSAGES, max_tokens=3, temperature=0.0)
    assert server.count(CHAT) == 1


async def test_llm_401_names_the_env_var_and_hides_the_key(server, monkeypatch, caplog):
    wrong = "sk-wrong-SECRET-abcdef123456"
    monkeypatch.setenv(KEY_ENV, wrong)
    llm = make("llm", config(server))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderError) as err:
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)
    text = str(err.value)
    assert "401" in text and KEY_ENV in text and "\n" not in text
    assert "SECRET" not in text and wrong not in caplog.text and "SECRET" not in caplog.text
    assert err.value.__cause__ is None  # the openai exception (with the echoed key) is not chained
    assert server.count(CHAT) == 1  # a 401 is not retried


async def test_llm_user_words_and_key_stay_out_of_debug_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    secret_words = "my secret diary entry"
    llm = make("llm", config(server))
    msgs = [{"role": "user", "content": secret_words}]
    # the openai client (3.x) keeps bodies out of its DEBUG logs; this guards a regression
    server.fail_next(CHAT, Fault(500, headers=FAST_RETRY))  # a retry gets logged too
    assert await llm.complete(msgs, max_tokens=8, temperature=0.0)
    assert server.count(CHAT) == 2
    assert secret_words not in caplog.text and server.api_key not in caplog.text


async def test_llm_429_then_success_retries(server):
    server.fail_next(CHAT, Fault(429, headers=FAST_RETRY), Fault(429, headers=FAST_RETRY))
    llm = make("llm", config(server, max_retries=2))
    assert await llm.complete(MESSAGES, max_tokens=8, temperature=0.0) == "".join(server.reply_tokens)
    assert server.count(CHAT) == 3
    bodies = [r.json for r in server.requests if r.path == CHAT]
    assert bodies[0]["messages"] == MESSAGES
    assert bodies[1] == bodies[0] and bodies[2] == bodies[0]  # each retry resends the same request


async def test_llm_429_retries_are_bounded(server):
    server.fail_next(CHAT, *[Fault(429, headers=FAST_RETRY)] * 5)
    llm = make("llm", config(server, max_retries=2))
    with pytest.raises(ProviderError, match=r"rate limited \(HTTP 429\) after 2 retries"):
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)
    assert server.count(CHAT) == 3  # 1 try + 2 retries, then give up


async def test_llm_500_is_retried_with_backoff_then_reported(server):
    server.fail_next(CHAT, Fault(500), Fault(500))
    llm = make("llm", config(server, max_retries=1))
    t0 = time.perf_counter()
    with pytest.raises(ProviderError, match="HTTP 500") as err:
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)
    assert time.perf_counter() - t0 >= 0.2  # it waited (backoff) before the retry
    assert server.count(CHAT) == 2 and "scripted failure 500" in str(err.value)


async def test_llm_slow_server_hits_the_timeout(server):
    server.fail_next(CHAT, Fault(200, delay_s=3.0))
    llm = make("llm", config(server, timeout_s=0.5, max_retries=0))
    t0 = time.perf_counter()
    with pytest.raises(ProviderError, match=r"no answer .* within 0.5 s") as err:
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)
    assert time.perf_counter() - t0 < 2.5  # generous: gave up long before the 3 s answer
    assert "timeout_s" in str(err.value)


async def test_llm_stall_mid_stream_hits_the_read_timeout(server):
    server.token_delay_s = 1.5
    llm = make("llm", config(server, timeout_s=0.5, max_retries=0))
    with pytest.raises(ProviderError, match="within 0.5 s"):
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)


async def test_llm_cancel_mid_stream_closes_the_connection(server):
    server.reply_tokens = [f" w{n}" for n in range(400)]
    server.token_delay_s = 0.02
    llm = make("llm", config(server))
    got: list[str] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for d in llm.stream(MESSAGES, max_tokens=1000, temperature=0.0):
            got.append(d.text)
            if len(got) == 5:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.disconnected.wait, 3.0)  # the server saw it close
    sent = server.tokens_sent
    await asyncio.sleep(0.2)
    assert server.tokens_sent == sent < 100  # and stopped generating


async def test_llm_key_may_be_absent_for_a_local_server(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    llm = make("llm", config(server))  # base_url given: builds, sends a placeholder key
    with pytest.raises(ProviderError, match=KEY_ENV):  # this server does want a key: 401
        await llm.complete(MESSAGES, max_tokens=8, temperature=0.0)


def test_missing_key_without_base_url_is_a_config_error(monkeypatch):
    monkeypatch.delenv("AVATAR_NO_SUCH_KEY", raising=False)
    cfg = Config.model_validate({"llm": {"openai": {"api_key_env": "AVATAR_NO_SUCH_KEY"}}})
    with pytest.raises(ConfigError, match="AVATAR_NO_SUCH_KEY is not set"):
        make("llm", cfg)


async def test_unreachable_endpoint_is_one_line(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-x")
    cfg = Config.model_validate({"llm": {"openai": {
        "base_url": "http://127.0.0.1:9/v1", "api_key_env": KEY_ENV, "max_retries": 0}}})
    with pytest.raises(ProviderError, match="cannot connect to http://127.0.0.1:9/v1"):
        await make("llm", cfg).complete(MESSAGES, max_tokens=8, temperature=0.0)


# ---------------------------------------------------------------- STT
async def test_stt_sends_16k_wav_and_returns_text(server, speak):
    server.transcript = "  What is the weather like today?\n"  # Whisper's API pads its text
    stt = make("stt", config(server))
    pcm = speak("What is the weather like today?", sr=22050)
    result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=22050))
    assert result.text == "What is the weather like today?"  # the client strips the padding
    assert result.audio_s == pytest.approx(len(pcm) / 22050, abs=1e-3)
    req = server.requests[-1]
    audio, rate = req.audio
    assert req.audio_format == "WAV PCM_16 1ch"
    assert rate == 16000 and len(audio) == pytest.approx(len(pcm) * 16000 / 22050, abs=2)
    # the very speech went over the wire, resampled (not zeros, not 22 kHz samples
    # labelled 16 kHz, not cut): it matches the question resampled to 16 kHz
    want = speak("What is the weather like today?", sr=16000)
    assert len(audio) == len(want)
    assert np.corrcoef(audio, want)[0, 1] > 0.999
    assert np.sqrt(np.mean((audio - want) ** 2)) < 1e-3  # 16-bit quantisation only
    assert req.form["model"] == "whisper-1" and req.form["language"] == "en"
    assert req.form["filename"].endswith(".wav")
    await stt.aclose()


async def test_stt_500_then_success(server, speak):
    server.fail_next(STT, Fault(503, headers=FAST_RETRY))
    stt = make("stt", config(server))
    pcm = speak("Hello.")
    result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
    assert result.text == server.transcript and server.count(STT) == 2
    # the retry uploads the whole file again (a consumed upload stream would send 0 bytes)
    first, retry = (r.audio for r in server.requests if r.path == STT)
    assert first is not None and retry is not None
    assert len(retry[0]) == len(first[0]) == len(pcm)
    np.testing.assert_array_equal(retry[0], first[0])


async def test_stt_401_names_the_env_var(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-bad-key-000000")
    stt = make("stt", config(server))
    with pytest.raises(ProviderError, match=f"{KEY_ENV}.*401"):
        await stt.transcribe(Utterance(pcm=np.zeros(8000, np.float32), sample_rate=16000))


async def test_stt_timeout(server):
    server.fail_next(STT, Fault(200, delay_s=3.0))
    stt = make("stt", config(server, timeout_s=0.5, max_retries=0))
    with pytest.raises(ProviderError, match="within 0.5 s"):
        await stt.transcribe(Utterance(pcm=np.zeros(8000, np.float32), sample_rate=16000))


# ---------------------------------------------------------------- TTS
async def test_tts_streams_pcm_chunks(server):
    text = "This is a test of the streamed speech endpoint."
    tts = make("tts", config(server, speed=1.0))
    chunks = [c async for c in tts.synthesize(text)]
    assert len(chunks) > 2 and all(c.sample_rate == SPEECH_RATE for c in chunks)
    assert all(c.duration_s == pytest.approx(0.4) for c in chunks[:-1])
    assert [c.text for c in chunks] == [text] + [""] * (len(chunks) - 1)  # text once
    pcm = np.concatenate([c.pcm for c in chunks])
    assert len(pcm) / SPEECH_RATE == pytest.approx(SECONDS_PER_CHAR * len(text), abs=0.01)
    # the 220 Hz tone survives odd-sized network reads (int16 samples split across reads)
    t = np.arange(len(pcm)) / SPEECH_RATE
    assert np.abs(pcm - 0.3 * np.sin(2 * np.pi * 220 * t)).max() < 1e-3
    req = server.requests[-1].json
    assert req == {"model": "tts-1", "voice": "nova", "input": text, "response_format": "pcm",
                   "speed": 1.0}
    await tts.aclose()


async def test_tts_first_audio_arrives_before_the_download_ends(server):
    server.speech_delay_s = 0.05
    server.speech_chunk_bytes = 4800  # 0.1 s per network chunk
    tts = make("tts", config(server))
    t0 = time.perf_counter()
    first_at = None
    n = 0
    async for _ in tts.synthesize("x" * 60):  # 3 s of audio over ~1.5 s
        first_at = first_at or time.perf_counter() - t0
        n += 1
    total = time.perf_counter() - t0
    assert n >= 7 and first_at < total / 2


async def test_tts_429_then_success_and_cancel_mid_stream(server):
    server.fail_next(SPEECH, Fault(429, headers=FAST_RETRY))
    server.speech_delay_s = 0.02
    tts = make("tts", config(server))
    async for chunk in tts.synthesize("y" * 400):  # 20 s of audio
        assert chunk.duration_s == pytest.approx(0.4)
        break  # the consumer stops after the first chunk
    assert server.count(SPEECH) == 2
    assert await asyncio.to_thread(server.disconnected.wait, 3.0)


async def test_tts_500_reported_without_retrying_forever(server):
    server.fail_next(SPEECH, *[Fault(500, headers=FAST_RETRY)] * 3)
    tts = make("tts", config(server, max_retries=2))
    with pytest.raises(ProviderError, match="tts.openai: HTTP 500"):
        [c async for c in tts.synthesize("hello")]
    assert server.count(SPEECH) == 3


# ---------------------------------------------------------------- a whole cloud turn
async def test_cloud_turn_with_use_openai_overrides(server, speak):
    """The ``--set`` overrides that switch all three stages to OpenAI, one full turn."""
    from avatar_agent.config import load_config
    from avatar_agent.llm.base import ChatHistory
    from avatar_agent.llm.splitter import split_sentences

    sets = [f"{role}.provider=openai" for role in ("stt", "llm", "tts")]
    for role in ("stt", "llm", "tts"):  # only to reach the test server instead of api.openai.com
        sets += [f"{role}.openai.base_url={server.base_url}", f"{role}.openai.api_key_env={KEY_ENV}"]
    cfg = load_config(None, sets)
    stt, llm, tts = (registry.create(role, getattr(cfg, role).provider, cfg=cfg, store=None)
                     for role in ("stt", "llm", "tts"))
    server.transcript = "What can you do?"
    server.reply_tokens = ["I", " can", " talk", ".", " I", " can", " listen", " too", "."]

    heard = await stt.transcribe(Utterance(pcm=speak("What can you do?"), sample_rate=16000))
    history = ChatHistory(cfg.llm.system_prompt, cfg.llm.history_turns)
    deltas = llm.stream(history.messages(heard.text), max_tokens=cfg.llm.max_tokens,
                        temperature=cfg.llm.temperature)
    spoken = []
    async for sentence in split_sentences(deltas):
        audio = [c async for c in tts.synthesize(sentence.text)]
        spoken.append((sentence.text, sum(c.duration_s for c in audio)))

    assert heard.text == "What can you do?"
    assert [t for t, _ in spoken] == ["I can talk.", "I can listen too."]
    assert all(d == pytest.approx(SECONDS_PER_CHAR * len(t), abs=0.01) for t, d in spoken)
    assert [r.path for r in server.requests] == [STT, CHAT, SPEECH, SPEECH]
    # what the client sent at each stage: the config's defaults, the transcript handed
    # on to the LLM, each split sentence to the speech endpoint in order
    stt_req, chat_req, *speech_reqs = server.requests
    assert stt_req.form["model"] == cfg.stt.openai.model == "whisper-1"
    chat = chat_req.json
    assert chat["model"] == cfg.llm.openai.model == "gpt-4o-mini" and chat["stream"] is True
    assert chat["messages"] == [{"role": "system", "content": cfg.llm.system_prompt},
                                {"role": "user", "content": "What can you do?"}]
    assert chat["max_tokens"] == cfg.llm.max_tokens
    assert [r.json["input"] for r in speech_reqs] == ["I can talk.", "I can listen too."]
    assert {(r.json["model"], r.json["voice"]) for r in speech_reqs} == {
        (cfg.tts.openai.model, cfg.tts.openai.voice)}

"""A whole ``Pipeline`` turn on the OpenAI providers against the real local test server.

The speech endpoint streams each sentence as several PCM chunks, so this catches a
reply/history that repeats a sentence once per chunk. Lip-sync is the real viseme engine.
"""

from __future__ import annotations

import numpy as np

from avatar_agent.config import load_config
from avatar_agent.models import ModelStore
from avatar_agent.pipeline import Pipeline
from avatar_agent.turn import TurnOutput, run_turn
from avatar_agent.types import Utterance

from .openai_server import OpenAIServer

KEY_ENV = "AVATAR_TEST_OPENAI_KEY"


async def test_cloud_turn_through_the_pipeline(monkeypatch, tmp_path, speak, hopper_bgr, store):
    with OpenAIServer() as server:
        monkeypatch.setenv(KEY_ENV, server.api_key)
        sets = [f"transcript.path={tmp_path / 't.jsonl'}", "lipsync.blink=false"]
        for role in ("stt", "llm", "tts"):
            sets += [f"{role}.provider=openai", f"{role}.openai.base_url={server.base_url}",
                     f"{role}.openai.api_key_env={KEY_ENV}"]
        cfg = load_config(None, sets)
        server.transcript = "What can you do?"
        server.reply_tokens = ["I", " can", " talk", ".", " I", " can", " listen", " too", "."]
        pipe = Pipeline.from_config(cfg, ModelStore(progress=False))
        state = await pipe.prepare_avatar(hopper_bgr)
        question = speak("What can you do?")
        got: list = []
        out = TurnOutput()
        out.emit = got.append
        result = await run_turn(pipe, state, out, utterance=Utterance(question, 16000))
        await pipe.aclose()
    assert result.transcript.text == "What can you do?"
    assert len(got) > 2  # the speech API streamed several chunks
    # each sentence once, though the speech API sent it in several chunks
    assert result.reply_text == "I can talk. I can listen too."
    assert pipe.history.messages("next")[1:] == [
        {"role": "user", "content": "What can you do?"},
        {"role": "assistant", "content": result.reply_text},
        {"role": "user", "content": "next"}]
    # what the pipeline sent: the utterance's audio, then the transcript as the user's
    # turn after the system prompt, then each sentence to the speech endpoint in order
    stt_req, chat_req, *speech_reqs = server.requests
    assert [stt_req.path, chat_req.path] == ["/v1/audio/transcriptions", "/v1/chat/completions"]
    assert len(stt_req.audio[0]) == len(question) and stt_req.audio[1] == 16000
    assert chat_req.json["messages"] == [{"role": "system", "content": cfg.llm.system_prompt},
                                         {"role": "user", "content": "What can you do?"}]
    assert [r.json["input"] for r in speech_reqs] == ["I can talk.", "I can listen too."]
    audio_s = sum(c.duration_s for c in got)
    frames = sum(len(c.frames) for c in got)
    assert abs(frames / 25.0 - audio_s) <= 0.04 * len(got)
    moving = [not np.array_equal(f, hopper_bgr) for c in got for f in c.frames]
    assert np.mean(moving) > 0.5  # the 220 Hz tone is loud: the mouth moves

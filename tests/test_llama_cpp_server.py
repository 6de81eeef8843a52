"""The ``openai`` LLM provider against a real OpenAI-compatible server: llama.cpp's.

A module fixture starts ``python -m llama_cpp.server`` (extra ``dev``) on 127.0.0.1 with
the SmolLM2-135M GGUF of the model store, and the provider talks to it as it would to
Ollama, vLLM or OpenAI: streamed deltas, history, cancellation, ``max_tokens`` and the
one-line errors when the server is down or the model name is unknown.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ModelError, ProviderError
from avatar_agent.llm.base import ChatHistory

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] (extra 'dev') not installed")

START_TIMEOUT_S = 120.0
SYSTEM = "You are a helpful assistant. Answer with one short sentence."
KEY_ENV = "AVATAR_TEST_LLAMA_SERVER_KEY"  # deliberately unset: a local server needs no key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """Base URL of a running llama.cpp server; its stderr is in the failure message."""
    from avatar_agent.models import ModelStore

    try:
        gguf = ModelStore().path("smollm2-135m")
    except ModelError as exc:  # not pulled: skip, like the other model tests
        pytest.skip(f"smollm2-135m not in the model store: {exc}")
    port = _free_port()
    err = tempfile.TemporaryFile(mode="w+")  # a pipe could fill up and block the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                err.seek(0)
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{err.read()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                err.seek(0)
                pytest.fail(f"llama_cpp.server did not answer /v1/models within {START_TIMEOUT_S:g} s:\n"
                            f"{err.read()[-3000:]}")
            time.sleep(0.25)
        yield base
    finally:
        proc.kill()
        proc.wait(10)
        err.close()


def make(base_url: str, *, model: str = "smollm2-135m", max_retries: int = 0, timeout_s: float = 60.0):
    os.environ.pop(KEY_ENV, None)
    cfg = Config.model_validate({"llm": {"provider": "openai", "openai": {
        "base_url": base_url, "model": model, "api_key_env": KEY_ENV,
        "timeout_s": timeout_s, "max_retries": max_retries}}})
    return registry.create("llm", "openai", cfg=cfg, store=None)


def ask(text: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


async def test_streams_a_sensible_answer_in_several_deltas(server):
    """A question about France streams >1 deltas whose text names Paris."""
    llm = make(server)
    deltas = [d.text async for d in llm.stream(ask("What is the capital of France?"),
                                               max_tokens=40, temperature=0.0)]
    text = "".join(deltas)
    assert len(deltas) > 1, deltas
    assert "paris" in text.lower(), text
    assert llm.tokens_generated == len(deltas)
    await llm.aclose()


async def test_history_carries_a_name_from_an_earlier_turn(server):
    """A name given in the first user turn comes back when the second turn asks for it;
    the same question without that turn does not produce the name (control)."""
    llm = make(server)
    alone = await llm.complete(ask("What is my name?"), max_tokens=30, temperature=0.0)
    assert "gustavo" not in alone.lower(), alone
    history = ChatHistory(SYSTEM, max_turns=4)
    history.add("Hello, my name is Gustavo.", "Nice to meet you, Gustavo!")
    messages = history.messages("What is my name?")
    assert any("Gustavo" in m["content"] for m in messages[:-1])
    text = await llm.complete(messages, max_tokens=30, temperature=0.0)
    assert "gustavo" in text.lower(), text
    await llm.aclose()


async def test_cancelling_mid_stream_stops_and_the_next_request_works(server):
    """Breaking out after 3 deltas of a long reply returns at once; a new question is answered."""
    llm = make(server)
    got = []
    t0 = time.monotonic()
    async for d in llm.stream(ask("Count from one to one hundred in words."),
                              max_tokens=400, temperature=0.0):
        got.append(d.text)
        if len(got) == 3:
            break
    assert len(got) == 3
    assert time.monotonic() - t0 < 30
    text = await asyncio.wait_for(
        llm.complete(ask("What is the capital of France?"), max_tokens=30, temperature=0.0), 60)
    assert "paris" in text.lower(), text
    await llm.aclose()


async def test_max_tokens_is_respected(server):
    """max_tokens=5 on a long request gives at most 5 content deltas (llama.cpp: one per token)."""
    llm = make(server)
    deltas = [d.text async for d in llm.stream(ask("Tell me a long story about a dragon."),
                                               max_tokens=5, temperature=0.0)]
    assert 1 <= len(deltas) <= 5, deltas
    await llm.aclose()


async def test_server_down_is_a_one_line_provider_error():
    """A port nobody listens on: ProviderError 'cannot connect to <base_url>', one line."""
    base = f"http://127.0.0.1:{_free_port()}/v1"
    llm = make(base)
    with pytest.raises(ProviderError) as info:
        async for _ in llm.stream(ask("Hi"), max_tokens=5, temperature=0.0):
            pass
    msg = str(info.value)
    assert "cannot connect" in msg and base in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    await llm.aclose()


async def test_unknown_model_name_is_served_anyway(server):
    """llama_cpp.server with one --model ignores the request's model name (documented here):
    'gpt-4o' is answered by SmolLM2, no error. Ollama/vLLM would answer 404 -> ProviderError."""
    llm = make(server, model="gpt-4o")
    text = await llm.complete(ask("What is the capital of France?"), max_tokens=30, temperature=0.0)
    assert text.strip(), text
    await llm.aclose()

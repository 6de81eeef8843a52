"""LLM providers on the real bundled GGUF (SmolLM2-135M-Instruct Q4_1) and chat history."""

from __future__ import annotations

import asyncio

import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ModelError
from avatar_agent.llm.base import ChatHistory
from avatar_agent.llm.splitter import split_sentences

pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra 'local') is not installed")


@pytest.fixture(scope="module")
def llm(cfg, store):
    model = registry.create("llm", "llama_cpp", cfg=cfg, store=store)
    model.load()
    return model


def question(cfg: Config, text: str) -> list[dict[str, str]]:
    return ChatHistory(cfg.llm.system_prompt, cfg.llm.history_turns).messages(text)


async def test_llama_cpp_answers_a_question(llm, cfg):
    deltas = [d.text async for d in llm.stream(question(cfg, "What is the capital of France?"),
                                                max_tokens=48, temperature=0.0)]
    answer = "".join(deltas).strip()
    assert len(deltas) > 1  # streamed, not one blob
    assert len(answer.split()) >= 2
    assert "<|im_" not in answer  # the GGUF's chat template was applied, no raw special tokens
    assert "paris" in answer.lower()


async def test_llama_cpp_is_deterministic_at_temperature_zero(llm, cfg):
    msgs = question(cfg, "Name a colour.")
    first = await llm.complete(msgs, max_tokens=16, temperature=0.0)
    second = await llm.complete(msgs, max_tokens=16, temperature=0.0)
    assert first == second and first.strip()


async def test_llama_cpp_max_tokens_bounds_the_reply(llm, cfg):
    await llm.complete(question(cfg, "Tell me a long story about a dragon."), max_tokens=8,
                       temperature=0.0)
    assert llm.tokens_generated == 8  # the story goes on for 400+ tokens: cut at the cap


async def test_llama_cpp_cancel_stops_generation(llm, cfg, monkeypatch):
    # at temperature 0 this runs to the 400-token cap (measured; "count from one to one
    # hundred" ends after 8 tokens, so cancelling it proved nothing)
    msgs = question(cfg, "Tell me a long story about a dragon.")
    # count every chunk llama.cpp itself computes (a pass-through spy on the real model),
    # so a generation that runs on in the background shows even when nobody reads it
    computed: list[int] = []
    real = llm._llama.create_chat_completion

    def counting(*args, **kwargs):
        inner = real(*args, **kwargs)
        call = len(computed)
        computed.append(0)

        def chunks():
            try:
                for chunk in inner:
                    computed[call] += 1
                    yield chunk
            finally:
                inner.close()

        return chunks()

    monkeypatch.setattr(llm._llama, "create_chat_completion", counting)
    started = asyncio.Event()

    async def consume() -> None:
        n = 0
        async for _ in llm.stream(msgs, max_tokens=400, temperature=0.0):
            n += 1
            if n == 3:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped_at = llm.tokens_generated
    await asyncio.sleep(0.3)
    assert llm.tokens_generated <= stopped_at + 1  # no token computed after the cancel
    assert stopped_at < 100
    # the next call runs on the same single worker thread, so it starts only once the
    # cancelled generation has ended: had that one run on to its 400 tokens, llama.cpp
    # would have computed them all by now (counted, not timed)
    assert (await llm.complete(msgs, max_tokens=4, temperature=0.0)).strip()
    assert len(computed) == 2, computed
    assert computed[0] <= stopped_at + 3, (computed, stopped_at)  # + role chunk, one in flight
    assert computed[1] <= 4 + 2, computed  # its 4 tokens + the role and finish chunks


async def test_llama_cpp_deltas_feed_the_splitter(llm, cfg):
    stream = llm.stream(question(cfg, "Say hello and introduce yourself."), max_tokens=48,
                        temperature=0.0)
    sentences = [s async for s in split_sentences(stream)]
    assert sentences and all(s.text.strip() for s in sentences)
    assert [s.index for s in sentences] == list(range(len(sentences)))


def test_chat_history_window_keeps_last_turns():
    hist = ChatHistory("sys", max_turns=2)
    for n in range(4):
        hist.add(f"q{n}", f"a{n}")
    msgs = hist.messages("q4")
    assert [m["content"] for m in msgs] == ["sys", "q2", "a2", "q3", "a3", "q4"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert ChatHistory("sys", max_turns=0).messages("x") == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "x"}]


def test_chat_history_prefix_stays_stable_between_evictions():
    # the KV cache of llama.cpp is reused only while the prompt's prefix is unchanged
    hist = ChatHistory("sys", max_turns=6)
    changed = 0
    previous = hist.messages("q0")[:-1]
    for n in range(24):
        hist.add(f"q{n}", f"a{n}")
        now = hist.messages(f"q{n + 1}")[:-1]
        assert 1 <= (len(now) - 1) // 2 <= 6
        if now[:len(previous)] != previous:
            changed += 1
        previous = now
    assert changed <= 24 // 4  # a sliding window would change it on 18 of the 24 turns
    assert hist.messages("x")[-3:] == [{"role": "user", "content": "q23"},
                                       {"role": "assistant", "content": "a23"},
                                       {"role": "user", "content": "x"}]


def test_llama_cpp_missing_gguf_is_model_error(store, tmp_path):
    cfg = Config.model_validate({"llm": {"llama_cpp": {"model": str(tmp_path / "x.gguf")}}})
    with pytest.raises(ModelError, match="file not found"):
        registry.create("llm", "llama_cpp", cfg=cfg, store=store)


def test_llama_cpp_corrupt_gguf_is_model_error(store, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    cfg = Config.model_validate({"llm": {"llama_cpp": {"model": str(bad)}}})
    model = registry.create("llm", "llama_cpp", cfg=cfg, store=store)
    with pytest.raises(ModelError, match="cannot load"):
        model.load()


def test_chat_history_leaves_out_replies_never_heard():
    hist = ChatHistory("sys", max_turns=4)
    hist.add("first?", "An answer.")
    hist.add("cut off?", "")  # barge-in before the first word of the reply
    hist.add("also cut?", "  ")
    assert [m["content"] for m in hist.messages("next")] == ["sys", "first?", "An answer.", "next"]


# ---------------------------------------------------------------- prefill and pause
def _history(cfg: Config, turns: int, words: int = 12) -> ChatHistory:
    hist = ChatHistory(cfg.llm.system_prompt, max_turns=20)
    for n in range(turns):
        hist.add(f"Tell me fact number {n} about the sea?",
                 " ".join(f"wave{n}x{k}" for k in range(words)) + ".")
    return hist


def _counting_eval(llm, monkeypatch) -> list[int]:
    """Tokens llama.cpp decodes, call by call (a pass-through spy on the real model)."""
    counts: list[int] = []
    real = llm._llama.eval

    def spy(tokens):
        counts.append(len(tokens))
        return real(tokens)

    monkeypatch.setattr(llm._llama, "eval", spy)
    return counts


async def _idle(llm) -> None:
    await llm._worker.run(lambda: None)  # queued behind the prefill: returns once it ended


async def test_llama_cpp_prefill_leaves_only_the_question_to_read(llm, cfg, monkeypatch):
    hist = _history(cfg, 4)
    msgs = hist.messages("What is the capital of France?")
    llm._llama.reset()  # nothing cached: the whole prompt is read (as after an eviction)
    counts = _counting_eval(llm, monkeypatch)
    cold = await llm.complete(msgs, max_tokens=12, temperature=0.0)
    read_cold = counts[0]

    llm._llama.reset()
    del counts[:]  # (and the reply's tokens, one decode each)
    llm.prefill(hist.context())
    await _idle(llm)
    prefilled = sum(counts)
    assert llm.prefilled == prefilled > 100  # the system prompt and four turns
    del counts[:]
    warm = await llm.complete(msgs, max_tokens=12, temperature=0.0)
    assert read_cold > 100 and counts[0] < 25, (read_cold, counts)  # the question and the reply header
    assert prefilled + counts[0] == read_cold  # the same prompt, split at the question
    assert warm == cold  # the cache holds what reading the whole prompt gives


async def test_llama_cpp_prefill_keeps_what_is_cached(llm, cfg, monkeypatch):
    hist = _history(cfg, 2)
    await llm.complete(hist.messages("Hello?"), max_tokens=4, temperature=0.0)
    counts = _counting_eval(llm, monkeypatch)
    llm.prefill(hist.context())  # already cached as the prefix of the last prompt
    await _idle(llm)
    assert counts == [] and llm.prefilled == 0


async def test_llama_cpp_reply_stops_a_running_prefill(llm, cfg, monkeypatch):
    hist = _history(cfg, 10, words=14)  # ~850 tokens: 13 prefill steps
    llm._llama.reset()
    counts = _counting_eval(llm, monkeypatch)
    llm.prefill(hist.context())
    reply = llm.stream(hist.messages("Hi?"), max_tokens=2, temperature=0.0)
    assert (await anext(reply)).text  # asked for at once: the prefill stops at its next step
    await reply.aclose()
    total = len(llm._prompt_tokens(hist.messages("Hi?")))
    assert total > 700, total
    assert llm.prefilled <= 2 * 64, (llm.prefilled, counts)


async def test_llama_cpp_pause_holds_generation(llm, cfg):
    msgs = question(cfg, "Tell me a long story about a dragon.")
    seen = 0
    held_at = None
    async for _ in llm.stream(msgs, max_tokens=200, temperature=0.0):
        seen += 1
        if seen == 3:
            with llm.paused():
                held_at = llm.tokens_generated
                await asyncio.sleep(0.4)
                during = llm.tokens_generated
        if seen == 10:
            break
    assert during <= held_at + 1, (held_at, during)  # at most the token in flight
    assert seen == 10  # and it went on after the pause


async def test_llama_cpp_prefill_after_close_is_a_no_op(cfg, store):
    model = registry.create("llm", "llama_cpp", cfg=cfg, store=store)
    model.prefill(_history(cfg, 1).context())  # not loaded yet: nothing to warm
    model.load()
    await model.aclose()
    model.prefill(_history(cfg, 1).context())  # a turn recorded while the app quits
    assert model.prefilled == 0

"""llm.knowledge: BM25 passages of a kiosk FAQ (examples/kiosk) in the question, not the prefix."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from avatar_agent.config import Config, LLMConfig
from avatar_agent.errors import ConfigError, MissingExtraError
from avatar_agent.llm.knowledge import Knowledge, read_files, split_passages, with_facts

pytest.importorskip("bm25s", reason="bm25s (extra 'local') is not installed")

ROOT = Path(__file__).resolve().parent.parent
FAQ = ROOT / "examples" / "kiosk" / "faq.md"
QUESTIONS = [json.loads(line) for line in (ROOT / "examples" / "kiosk" / "questions.jsonl")
             .read_text(encoding="utf-8").splitlines() if line.strip()]


def _holds(text: str, keys: list[str]) -> bool:
    return all(key.lower() in text.lower() for key in keys)


@pytest.fixture(scope="module")
def kb() -> Knowledge:
    return Knowledge.from_files([str(FAQ)])


def _kiosk_cfg(**llm) -> Config:
    return Config(llm=LLMConfig(knowledge=[str(FAQ)], **llm))


# ---------------------------------------------------------------- splitting
def test_split_keeps_the_heading_with_its_paragraph():
    text = "# Title\n\n## Parking\nCar park on Mill Road.\n\nIt costs 2 pounds.\n## Dogs\nNo dogs.\n\n\n"
    assert split_passages(text) == [
        "Parking: Car park on Mill Road.", "Parking: It costs 2 pounds.", "Dogs: No dogs."]


def test_split_caps_a_long_section_at_sentence_ends():
    text = "## Hours\n" + " ".join(f"Sentence number {n} is here." for n in range(60))
    passages = split_passages(text, max_chars=200)
    assert len(passages) > 5
    assert all(len(p) <= 200 and p.startswith("Hours: ") and p.endswith(".") for p in passages)


def test_the_faq_splits_into_one_passage_per_fact():
    passages = read_files([FAQ])
    assert 20 <= len(passages) <= 30
    assert all(len(p) <= 600 for p in passages)


# ---------------------------------------------------------------- retrieval
def test_retrieval_finds_the_answer_in_the_top_passages(kb):
    k = LLMConfig().knowledge_passages
    t0 = time.perf_counter()
    found = [q for q in QUESTIONS if any(_holds(p, q["keys"]) for p in kb.retrieve(q["question"], k))]
    per_query_ms = (time.perf_counter() - t0) / len(QUESTIONS) * 1000
    print(f"retrieval: {len(found)}/{len(QUESTIONS)} in top {k}, {per_query_ms:.2f} ms per question")
    assert len(QUESTIONS) == 20
    assert len(found) >= 19, [q["question"] for q in QUESTIONS if q not in found]
    assert per_query_ms < 50


def test_retrieval_drops_passages_sharing_no_word(kb):
    assert kb.retrieve("zebra quantum", 3) == []
    assert kb.retrieve("the and of", 3) == []  # stop words only
    assert len(kb.retrieve("tickets", 10)) <= 10


# ---------------------------------------------------------------- config
def test_config_lists_knowledge_files_and_passages():
    c = LLMConfig()
    assert c.knowledge == [] and c.knowledge_passages == 3


@pytest.mark.parametrize("content", [None, "", "\n\n   \n", b"\xff\xfe\x00bad"])
def test_a_bad_knowledge_file_stops_the_start_up(tmp_path, content):
    from avatar_agent.pipeline import Pipeline

    path = tmp_path / "faq.md"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        Pipeline.from_config(Config(llm=LLMConfig(knowledge=[str(path)])))
    message = str(err.value)
    assert "llm.knowledge" in message and str(path) in message and "\n" not in message
    assert err.value.hint


# ---------------------------------------------------------------- the prompt
def test_passages_go_into_the_last_user_message_only():
    from avatar_agent.pipeline import Pipeline

    pipe = Pipeline.from_config(_kiosk_cfg())
    pipe.history.add("Hello.", "Hello, how can I help?")
    before = pipe.history.context()
    msgs = pipe.prompt("How much is an adult ticket?")
    assert msgs[:-1] == before  # system prompt and history untouched: the cached prefix
    last = msgs[-1]
    assert last["role"] == "user" and last["content"].startswith("Facts:\n- ")
    assert "14 pounds" in last["content"]
    assert last["content"].endswith("\n\nQuestion: How much is an adult ticket?")
    pipe.history.add("How much is an adult ticket?", "It is 14 pounds.")
    stored = [m["content"] for m in pipe.history.context() if m["role"] == "user"]
    assert stored == ["Hello.", "How much is an adult ticket?"]  # the bare text
    assert all("Facts" not in m["content"] for m in pipe.history.context())


def test_no_knowledge_changes_nothing():
    from avatar_agent.pipeline import Pipeline

    pipe = Pipeline.from_config(Config())
    assert pipe.knowledge is None
    assert pipe.prompt("How much is an adult ticket?") == pipe.history.messages("How much is an adult ticket?")
    assert with_facts([{"role": "user", "content": "Hi"}], []) == [{"role": "user", "content": "Hi"}]


# ---------------------------------------------------------------- the real model
def _right(answer: str, keys: list[str]) -> bool:
    return _holds(answer.replace(",", ""), keys)


@pytest.fixture(scope="module")
def llama(store):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra 'local') is not installed")
    from avatar_agent import registry

    models = {}
    for name in ("smollm2-135m", "qwen2.5-coder-0.5b"):  # the second only once it is in the store
        try:
            if name != "smollm2-135m" and store.status(name) != "ok":
                continue
        except Exception:  # not a model the store knows (yet)
            continue
        cfg = Config()
        cfg.llm.llama_cpp.model = name
        model = registry.create("llm", "llama_cpp", cfg=cfg, store=store)
        model.load()
        models[name] = model
    return models


def test_prefill_reads_the_same_prefix_with_knowledge(llama):
    from avatar_agent.pipeline import Pipeline

    llm = llama["smollm2-135m"]
    plain, kiosk = Pipeline.from_config(Config()), Pipeline.from_config(_kiosk_cfg())
    for pipe in (plain, kiosk):
        pipe.history.add("Hello.", "Hello, how can I help?")
    question = "Where can I park my car?"
    a = llm._prompt_tokens(plain.prompt(question))
    b = llm._prompt_tokens(kiosk.prompt(question))
    context = llm._prompt_tokens([*plain.history.context(), {"role": "user", "content": "X"}])
    shared = next(i for i, (x, y) in enumerate(zip(context, a, strict=False)) if x != y)  # up to the user's words
    assert a[:shared] == b[:shared]  # what prefill read is the start of both prompts
    assert len(b) > len(a) + 30  # the facts come after it


async def test_answers_from_the_faq_with_the_real_model(llama):
    from avatar_agent.pipeline import Pipeline

    pipes = {"with": Pipeline.from_config(_kiosk_cfg()), "without": Pipeline.from_config(Config())}
    for name, llm in llama.items():
        right = {}
        first = {}
        for mode, pipe in pipes.items():
            right[mode], t = 0, 0.0
            for q in QUESTIONS:
                msgs = pipe.prompt(q["question"])
                llm._llama.reset()
                t0 = time.perf_counter()
                parts = []
                async for delta in llm.stream(msgs, max_tokens=40, temperature=0.0):
                    if not parts:
                        t += time.perf_counter() - t0  # first token: the whole prompt read (no cache)
                    parts.append(delta.text)
                answer = "".join(parts)
                right[mode] += _right(answer, q["keys"])
            first[mode] = t / len(QUESTIONS)
        print(f"{name}: right with knowledge {right['with']}/20, without {right['without']}/20; "
              f"first token (cold) {first['with']:.3f} s vs {first['without']:.3f} s")
        if name == "smollm2-135m":
            assert right["with"] >= right["without"] + 5, right


def test_knowledge_without_bm25s_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bm25s", None)  # as if not installed
    with pytest.raises(MissingExtraError) as err:
        Knowledge(["Parking: Mill Road."])
    assert "'local'" in str(err.value) and "bm25s" in str(err.value)

"""First words early: when can the avatar start speaking, with and without the length cut?

For each fixture question the real embedded LLM (SmolLM2 via llama.cpp, the config's
prompt and sampling) streams its answer; token arrival times are recorded. The reply is
then split twice, as the turn would: the old first chunk (whole first sentence, or first
clause) and the new one (also cut after at most ``first_max_words`` words). The first
TTS call (Piper) is timed on each first chunk. Reported per variant:
LLM start -> first chunk text complete, Piper time to first audio for that chunk, and
their sum (LLM start -> first audio), p50/max.

Then the first chunks are synthesized again three ways: alone, while llama.cpp writes a
long reply on the same 2 cores (as in ``talk``, where the LLM writes on while the first
clause is spoken), and the same with the LLM held by ``LLM.paused`` (what the pipeline
does during the reply's first audio). Piper first-audio p50/p95/max for each.

Run: ``python benchmarks/bench_first_words.py [--n 12]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatar_agent.llm.splitter import SentenceSplitter  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from make_questions import TABLE  # noqa: E402


def first_chunk(tokens: list[tuple[float, str]], **kw) -> tuple[str, float]:
    """(text of the first chunk, time its last needed token arrived)."""
    sp = SentenceSplitter(**kw)
    for t, tok in tokens:
        out = sp.push(tok)
        if out:
            return out[0].text, t
    out = sp.flush()
    return (out[0].text if out else ""), tokens[-1][0] if tokens else 0.0


async def run(n: int) -> None:
    from avatar_agent import registry
    from avatar_agent.config import Config
    from avatar_agent.llm.base import ChatHistory
    from avatar_agent.models import ModelStore

    cfg = Config()
    store = ModelStore(progress=False)
    llm = registry.create("llm", cfg.llm.provider, cfg=cfg, store=store)
    tts = registry.create("tts", cfg.tts.provider, cfg=cfg, store=store)
    llm.load()
    tts.load()
    async for _ in tts.synthesize("Hello there."):
        pass
    history = ChatHistory(cfg.llm.system_prompt, 0)
    variants = {"sentence or clause (before)": {"first_max_words": 0},
                "clause or 8 words (after)": {"first_max_words": 8}}
    res: dict[str, dict[str, list[float]]] = {v: {"text": [], "tts": [], "sum": [], "words": []}
                                              for v in variants}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {platform.machine()} "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    for text, *_ in TABLE[:n]:
        t0 = time.perf_counter()
        tokens = [(time.perf_counter() - t0, d.text) async for d in llm.stream(
            history.messages(text), max_tokens=cfg.llm.max_tokens, temperature=cfg.llm.temperature)]
        for name, kw in variants.items():
            chunk, t_text = first_chunk(tokens, **kw)
            t_tts = await _first_audio(tts, chunk)
            r = res[name]
            r["text"].append(t_text)
            r["tts"].append(t_tts)
            r["sum"].append(t_text + t_tts)
            r["words"].append(len(chunk.split()))
            print(f"  {name:28s} {t_text * 1000:5.0f} + {t_tts * 1000:4.0f} ms  {chunk!r}")
            r.setdefault("chunks", []).append(chunk)
    print()
    for name, r in res.items():
        p = lambda xs, q: np.percentile(xs, q) * 1000  # noqa: E731
        print(f"{name:28s} first chunk {np.median(r['words']):.0f} words (median); "
              f"LLM -> text p50 {p(r['text'], 50):.0f} ms; Piper first audio p50 {p(r['tts'], 50):.0f} ms "
              f"max {max(r['tts']) * 1000:.0f} ms; LLM start -> first audio p50 {p(r['sum'], 50):.0f} ms "
              f"p95 {p(r['sum'], 95):.0f} ms max {max(r['sum']) * 1000:.0f} ms")
    await contention(llm, tts, res["clause or 8 words (after)"]["chunks"])
    await llm.aclose()
    await tts.aclose()


async def _first_audio(tts, text: str) -> float:
    t = time.perf_counter()
    async for _ in tts.synthesize(text):
        break
    return time.perf_counter() - t


async def contention(llm, tts, chunks: list[str], rounds: int = 2) -> None:
    """Piper's first audio for ``chunks``: alone, beside a generating llama.cpp, and
    beside it while it is held (``LLM.paused``)."""
    import contextlib

    story = [{"role": "user", "content": "Tell me a very long story about a dragon and a king."}]

    async def generate(stop: asyncio.Event) -> None:
        while not stop.is_set():
            async for _ in llm.stream(story, max_tokens=400, temperature=0.7):
                if stop.is_set():
                    break

    times: dict[str, list[float]] = {}
    for how in ("alone", "beside the LLM", "beside the LLM, held"):
        stop = asyncio.Event()
        writer = None if how == "alone" else asyncio.create_task(generate(stop))
        await asyncio.sleep(0.3)  # the LLM is writing
        for chunk in chunks * rounds:
            with llm.paused() if how.endswith("held") else contextlib.nullcontext():
                times.setdefault(how, []).append(await _first_audio(tts, chunk))
            await asyncio.sleep(0.05)  # let it write between two chunks
        stop.set()
        if writer is not None:
            await writer
    for how, ts in times.items():
        ms = np.array(ts) * 1000
        print(f"Piper first audio {how:22s} p50 {np.median(ms):4.0f} ms  p95 {np.percentile(ms, 95):4.0f} ms  "
              f"max {ms.max():4.0f} ms  ({len(ms)} chunks)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="questions from the fixture table")
    args = ap.parse_args(argv)
    asyncio.run(run(args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())

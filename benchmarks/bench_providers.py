"""Benchmark the local speech and language providers (issue 3).

For each local provider: load time; STT real-time factor (processing time / audio
time) on Piper-spoken questions; LLM time to first token and decode tokens/s; TTS
time to first audio and real-time factor. ``run(cfg)`` returns a dict (used by
``avatar-agent bench providers``); ``python benchmarks/bench_providers.py`` prints it,
and ``--compare-gguf NAME=PATH[:chat_format] ...`` also answers a fixed question set with
each GGUF (the default-model comparison in RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from avatar_agent import registry
from avatar_agent.audio.io import resample
from avatar_agent.config import Config, load_config
from avatar_agent.llm.base import ChatHistory
from avatar_agent.models import ModelStore
from avatar_agent.types import Utterance

STT_TEXTS = (
    "What time is it?",
    "Can you tell me what the weather will be like in Paris tomorrow afternoon?",
    "I would like to know how far the moon is from the earth, and how long it would take "
    "to fly there in a normal passenger plane at cruising speed.",
)
LLM_QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Why is the sky blue?",
    "Can you recommend a good book to read?",
    "What is two plus two?",
    "Tell me something interesting about the moon.",
)
TTS_TEXT = ("Hello! I am your talking avatar, and I am happy to answer your questions today. "
            "Ask me anything you like, and I will do my best to give you a short answer.")


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def bench_stt(cfg: Config, store: ModelStore, speech: dict[str, np.ndarray],
                    name: str = "faster_whisper", repeats: int = 3) -> dict[str, Any]:
    """Load time and real-time factor per clip (median of ``repeats``)."""
    stt = registry.create("stt", name, cfg=cfg, store=store)
    t0 = time.perf_counter()
    stt.load()
    load_s = time.perf_counter() - t0
    await stt.transcribe(Utterance(pcm=next(iter(speech.values())), sample_rate=16000))  # warm-up
    clips = []
    for text, pcm in speech.items():
        times = []
        for _ in range(repeats):
            result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
            times.append(result.proc_s)
        audio_s = len(pcm) / 16000
        exact = _words(result.text) == _words(text)
        clips.append({"audio_s": round(audio_s, 2), "proc_s": _median(times),
                      "rtf": round(statistics.median(times) / audio_s, 4), "exact": exact,
                      **({} if exact else {"heard": result.text})})
    await stt.aclose()
    return {"load_s": round(load_s, 3), "clips": clips,
            "rtf": _median([c["rtf"] for c in clips])}


async def bench_llm(cfg: Config, store: ModelStore, questions: tuple[str, ...] = LLM_QUESTIONS[:3],
                    max_tokens: int = 64) -> dict[str, Any]:
    """Load time, time to first token and decode tokens/s for the configured llama.cpp model."""
    llm = registry.create("llm", "llama_cpp", cfg=cfg, store=store)
    t0 = time.perf_counter()
    llm.load()
    load_s = time.perf_counter() - t0
    history = ChatHistory(cfg.llm.system_prompt, cfg.llm.history_turns)
    await llm.complete(history.messages("Hi."), max_tokens=4, temperature=0.0)  # warm-up
    answers = []
    decode_tokens, decode_s = 0, 0.0
    for q in questions:
        t0 = time.perf_counter()
        first = last = None
        parts = []
        async for delta in llm.stream(history.messages(q), max_tokens=max_tokens, temperature=0.0):
            last = time.perf_counter()
            first = first or last
            parts.append(delta.text)
        n = llm.tokens_generated
        tps = None
        if n > 1 and last and first and last > first:
            tps = (n - 1) / (last - first)
            decode_tokens, decode_s = decode_tokens + n - 1, decode_s + last - first
        answers.append({"question": q, "answer": "".join(parts).strip(), "tokens": n,
                        "ttft_s": round((first or t0) - t0, 4),
                        "tokens_per_s": round(tps, 1) if tps else None})
    await llm.aclose()
    return {"model": Path(llm.model_path).name, "load_s": round(load_s, 3),
            "ttft_s": _median([a["ttft_s"] for a in answers]),
            # all decoded tokens over all decode time: short answers alone are too noisy
            "tokens_per_s": round(decode_tokens / decode_s, 1) if decode_s else None,
            "answers": answers}


async def bench_tts(cfg: Config, store: ModelStore, name: str = "piper",
                    repeats: int = 3) -> dict[str, Any]:
    """Load time, time to first audio and real-time factor for a two-sentence reply."""
    tts = registry.create("tts", name, cfg=cfg, store=store)
    t0 = time.perf_counter()
    tts.load()
    load_s = time.perf_counter() - t0
    [c async for c in tts.synthesize("Warm up.")]
    ttfa, rtf = [], []
    audio_s = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        first = None
        audio_s = 0.0
        async for chunk in tts.synthesize(TTS_TEXT):
            first = first or time.perf_counter() - t0
            audio_s += chunk.duration_s
        total = time.perf_counter() - t0
        ttfa.append(first or total)
        rtf.append(total / audio_s)
    await tts.aclose()
    return {"load_s": round(load_s, 3), "audio_s": round(audio_s, 2),
            "time_to_first_audio_s": _median(ttfa), "rtf": _median(rtf)}


def bench_whisper_tiny_arch() -> dict[str, Any] | None:
    """openai-whisper cost on tiny.en's exact architecture with RANDOM weights.

    No real ``.pt`` can be fetched here. Encoder cost does not depend on the weights;
    random weights decode to the 224-token limit, which gives the per-token cost. A
    real question of ~20 tokens costs about ``encoder_s + 20 * per_token_s``.
    Returns None when the extra ``whisper`` is not installed.
    """
    try:
        import tempfile
        from dataclasses import asdict

        import torch
        import whisper
        from whisper.model import ModelDimensions, Whisper
    except ImportError:
        return None
    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                           n_audio_layer=4, n_vocab=51864, n_text_ctx=448, n_text_state=384,
                           n_text_head=6, n_text_layer=4)  # tiny.en
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.en-random.pt"
        torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
        t0 = time.perf_counter()
        model = whisper.load_model(str(path), device="cpu")
        load_s = time.perf_counter() - t0
    audio = np.zeros(16000 * 4, dtype=np.float32)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)).unsqueeze(0)
    with torch.no_grad():
        model.encoder(mel)  # warm-up
        t0 = time.perf_counter()
        model.encoder(mel)
        encoder_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = model.transcribe(audio + 0.01 * np.random.RandomState(0).randn(len(audio)).astype(np.float32),
                              language="en", fp16=False, temperature=0.0,
                              condition_on_previous_text=False)
    total_s = time.perf_counter() - t0
    tokens = sum(len(seg["tokens"]) for seg in result["segments"]) or 1
    per_token = max(0.0, total_s - encoder_s) / tokens
    return {"weights": "random (tiny.en architecture)", "load_s": round(load_s, 3),
            "encoder_s": round(encoder_s, 3), "decode_per_token_ms": round(per_token * 1000, 1),
            "estimated_20_token_utterance_s": round(encoder_s + 20 * per_token, 3)}


async def _speech(cfg: Config, store: ModelStore) -> dict[str, np.ndarray]:
    tts = registry.create("tts", "piper", cfg=cfg, store=store)
    out = {}
    for text in STT_TEXTS:
        chunks = [c async for c in tts.synthesize(text)]
        pcm = np.concatenate([c.pcm for c in chunks])
        out[text] = resample(pcm, chunks[0].sample_rate, 16000)
    await tts.aclose()
    return out


async def _run(cfg: Config) -> dict[str, Any]:
    store = ModelStore(progress=False)
    speech = await _speech(cfg, store)
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "stt.faster_whisper": await bench_stt(cfg, store, speech),
        "llm.llama_cpp": await bench_llm(cfg, store),
        "tts.piper": await bench_tts(cfg, store),
        "stt.whisper": bench_whisper_tiny_arch(),
    }


def run(cfg: Config) -> dict[str, Any]:
    """Benchmark the local providers of ``cfg`` (blocking; about a minute on 2 cores)."""
    return asyncio.run(_run(cfg))


async def compare_ggufs(cfg: Config, ggufs: dict[str, tuple[str, str | None]],
                        max_tokens: int = 64) -> dict[str, Any]:
    """Answer :data:`LLM_QUESTIONS` with each GGUF (name -> (path, chat_format or None))."""
    store = ModelStore(progress=False)
    out = {}
    for name, (path, chat_format) in ggufs.items():
        data = cfg.model_dump()
        data["llm"]["llama_cpp"].update(model=path, chat_format=chat_format)
        out[name] = await bench_llm(Config.model_validate(data), store, LLM_QUESTIONS, max_tokens)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--compare-gguf", nargs="*", default=[], metavar="NAME=PATH[:FORMAT]")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.compare_gguf:
        specs = {}
        for item in args.compare_gguf:
            name, _, rest = item.partition("=")
            path, _, fmt = rest.partition(":")
            specs[name] = (path, fmt or None)
        result = asyncio.run(compare_ggufs(cfg, specs))
    else:
        result = run(cfg)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Word accuracy and latency of the STT providers on the non-Piper fixture set.

The set is ``benchmarks/make_questions.py``: 20 questions spoken by espeak-ng in 12
voices at 120-200 words per minute, clean, with white noise (20 and 10 dB SNR), quiet
(-38 dBFS) and loud (-4 dBFS peak). Per provider:

* one-shot: ``STT.transcribe`` on each clip (what ``reply`` does): WER and wall time;
* live: the clip is played in real time, 10 ms blocks, through the real VAD and
  :class:`~avatar_agent.stt.feeder.SpeechFeeder` (what ``talk`` does); reported: the wait
  for the transcript after the turn commits (``SpeechPause``, 200 ms into the pause) and
  end of speech -> transcript ready.

Run: ``python benchmarks/bench_stt.py [--providers moonshine faster_whisper] [--no-live]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_questions import fixture_set  # noqa: E402

_NUMBERS = {str(k): w for k, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def norm_words(text: str) -> list[str]:
    """Lowercase words without punctuation; hyphens joined (to-morrow), small numbers spelt."""
    text = text.lower().replace("-", "").replace("+", " plus ")
    return [_NUMBERS.get(w, w) for w in re.sub(r"[^a-z0-9' ]", " ", text).split()]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(edit_distance(norm_words(r), norm_words(h)) for r, h in pairs)
    return errors / max(1, sum(len(norm_words(r)) for r, _ in pairs))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


async def live_turn(stt, pcm: np.ndarray, cfg) -> tuple[str, float, float] | None:
    """Play ``pcm`` in real time through VAD + feeder; (text, commit->text s, end->text s)."""
    from avatar_agent.audio.vad import SpeechPause, VadSegmenter
    from avatar_agent.stt.feeder import SpeechFeeder

    vad = VadSegmenter.from_config(cfg.audio.vad, 16000)
    feeder = SpeechFeeder(stt, vad, enabled=cfg.stt.stream, prefetch_ms=cfg.stt.prefetch_ms)
    pcm = np.concatenate([pcm, np.zeros(16000, np.float32)])
    start = time.monotonic()
    found = None
    for k, i in enumerate(range(0, len(pcm), 160)):
        t_block = start + k * 0.01
        await asyncio.sleep(max(0.0, t_block + 0.01 - time.monotonic()))  # the block is "captured"
        events = vad.push(pcm[i:i + 160], t_block)
        feeder.update(events)
        for ev in events:
            if isinstance(ev, SpeechPause) and found is None:
                utt = ev.utterance
                t_commit = time.monotonic()
                taken = feeder.take(utt)
                if taken is None:
                    result = await stt.transcribe(utt)
                else:
                    result = await taken[0].result(taken[1])
                t_done = time.monotonic()
                found = (result.text, t_done - t_commit, t_done - utt.t_end)
        if found is not None:
            break
    await feeder.aclose()
    return found


async def bench(providers: list[str], live: bool, stt_overrides: dict | None = None) -> dict:
    from avatar_agent import registry
    from avatar_agent.config import Config
    from avatar_agent.models import ModelStore
    from avatar_agent.types import Utterance

    stt_overrides = stt_overrides or {}
    clips = fixture_set()
    store = ModelStore(progress=False)
    out: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_avg_start": os.getloadavg()[0], "clips": len(clips),
                 "audio_s": round(sum(len(p) for _, p in clips) / 16000, 1), "providers": {}}
    for name in providers:
        cfg = Config.model_validate({"stt": {"provider": name, **stt_overrides}})
        stt = registry.create("stt", name, cfg=cfg, store=store)
        t0 = time.perf_counter()
        stt.load()
        load_s = time.perf_counter() - t0
        await stt.transcribe(Utterance(pcm=clips[0][1], sample_rate=16000))  # warm-up
        rows, pairs, times = [], [], []
        for q, pcm in clips:
            t0 = time.perf_counter()
            result = await stt.transcribe(Utterance(pcm=pcm, sample_rate=16000))
            dt = time.perf_counter() - t0
            times.append(dt)
            pairs.append((q.text, result.text))
            rows.append({"q": q.name, "cond": q.condition, "voice": q.voice, "wpm": q.wpm,
                         "ref": q.text, "hyp": result.text, "s": round(dt, 3),
                         "errors": edit_distance(norm_words(q.text), norm_words(result.text))})
        res = {"load_s": round(load_s, 2), "wer": round(wer(pairs), 3),
               "sentences_exact": sum(r["errors"] == 0 for r in rows),
               "one_shot_p50_s": round(pct(times, 50), 3), "one_shot_max_s": round(max(times), 3),
               "wer_by_condition": {c: round(wer([(r["ref"], r["hyp"]) for r in rows if r["cond"] == c]), 3)
                                    for c in sorted({r["cond"] for r in rows})},
               "rows": rows}
        if live:
            commit, end, lpairs = [], [], []
            for row, (q, pcm) in zip(rows, clips, strict=True):
                got = await live_turn(stt, pcm, cfg)
                if got is None:
                    continue
                text, c_s, e_s = got
                row["live_hyp"] = text
                commit.append(c_s)
                end.append(e_s)
                lpairs.append((q.text, text))
            res.update({"live_turns": len(commit), "live_wer": round(wer(lpairs), 3),
                        "live_commit_to_text_p50_s": round(pct(commit, 50), 3),
                        "live_commit_to_text_p95_s": round(pct(commit, 95), 3),
                        "live_commit_to_text_max_s": round(max(commit), 3) if commit else None,
                        "live_end_of_speech_to_text_p50_s": round(pct(end, 50), 3),
                        "live_end_of_speech_to_text_p95_s": round(pct(end, 95), 3)})
        await stt.aclose()
        out["providers"][name] = res
    out["load_avg_end"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--providers", nargs="+", default=["moonshine", "faster_whisper"])
    ap.add_argument("--no-live", action="store_true", help="one-shot only (no real-time replay)")
    ap.add_argument("--json", type=Path, help="also write the full results here")
    ap.add_argument("--prefetch-ms", type=int, help="stt.prefetch_ms for the live replay")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="stt config override, e.g. moonshine.tail_pad_ms=350")
    args = ap.parse_args(argv)
    import yaml

    overrides: dict = {} if args.prefetch_ms is None else {"prefetch_ms": args.prefetch_ms}
    for item in args.set:
        key, _, value = item.partition("=")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    res = asyncio.run(bench(args.providers, not args.no_live, overrides))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(f"{res['date']}  {res['machine']}  {res['clips']} clips, {res['audio_s']} s of audio, "
          f"load avg {res['load_avg_start']:.1f} -> {res['load_avg_end']:.1f}")
    for name, r in res["providers"].items():
        print(f"\n{name}: WER {r['wer'] * 100:.1f} %, {r['sentences_exact']}/{res['clips']} exact, "
              f"one-shot p50 {r['one_shot_p50_s'] * 1000:.0f} ms max {r['one_shot_max_s'] * 1000:.0f} ms, "
              f"load {r['load_s']:.2f} s")
        print("  WER by condition: " + ", ".join(f"{c} {w * 100:.0f} %" for c, w in r["wer_by_condition"].items()))
        if "live_turns" in r:
            print(f"  live ({r['live_turns']} turns, WER {r['live_wer'] * 100:.1f} %): commit -> text "
                  f"p50 {r['live_commit_to_text_p50_s'] * 1000:.0f} ms p95 {r['live_commit_to_text_p95_s'] * 1000:.0f} ms "
                  f"max {r['live_commit_to_text_max_s'] * 1000:.0f} ms; end of speech -> text "
                  f"p50 {r['live_end_of_speech_to_text_p50_s'] * 1000:.0f} ms p95 {r['live_end_of_speech_to_text_p95_s'] * 1000:.0f} ms")
        for row in r["rows"]:
            if row["errors"] or row.get("live_hyp", row["hyp"]) != row["hyp"]:
                live = row.get("live_hyp", row["hyp"])
                print(f"    {row['q']} {row['cond']:8s} {row['voice']:15s} {row['ref']!r} -> {row['hyp']!r}"
                      + (f" (live: {live!r})" if live != row["hyp"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

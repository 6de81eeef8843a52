"""Does an end-of-turn model (Smart Turn v3.2) let the turn commit sooner, or more safely?

Speech that is not Piper: the 20 questions of ``benchmarks/make_questions.py``, each in
two renditions (its table voice, speed and condition; a second voice and speed, clean),
spoken by espeak-ng in five variants:

* ``complete``: the whole question;
* ``cut_own``: the first 40-70 % of its words spoken as their own utterance ("What is
  the capital of"), then silence: the user stopped mid-sentence;
* ``cut_flow``: the whole question spoken with an SSML break after those words, cut at
  the break: the same words, with the pitch of a sentence that goes on (where espeak-ng
  keeps it), then silence;
* ``pause_own``: part 1 as its own utterance, 400 ms of silence, part 2;
* ``pause_flow``: the whole question with a 400 ms SSML break at that word.

Each clip gets 0.3 s of lead and 1.2 s of tail silence, then its condition (noise,
level), and is pushed in 10 ms blocks through the real :class:`VadSegmenter` (defaults:
hangover 600 ms) with ``early_ms`` = 60, 100 and 200. Every ``SpeechPause`` is scored by
Smart Turn on exactly the audio ``talk`` would hand it (the pause's utterance).

Reported: time per call (p50/p95, 1 and 2 onnxruntime threads); precision/recall of
"complete" at 0.5 and the threshold curve; and the decision rules:

* today: answer at 200 ms of silence, always (dropped if the user goes on);
* smart(X, thr): at X ms of silence run the model (its p50 time is added), answer when
  p >= thr, else wait for the 600 ms hangover.

Per rule: the extra delay on complete questions (end of speech -> the answer starts:
silence waited + model time; mean and p95), the share of mid-sentence stops (cut_*: the
last pause; pause_*: the pause inside) where an answer started before the hangover, and
the early starts that were dropped again because speech went on (wasted work).

Run: ``python benchmarks/bench_turn_end.py [--json out/turn_end.json]``
(needs ``avatar-agent models pull smart-turn-v3.2`` and espeak-ng).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_questions import RATE, TABLE, espeak  # noqa: E402

from avatar_agent.audio.turn_end import SmartTurn, features  # noqa: E402
from avatar_agent.audio.vad import SpeechPause, SpeechResume, VadSegmenter  # noqa: E402
from avatar_agent.types import Utterance  # noqa: E402

VARIANTS = ("complete", "cut_own", "cut_flow", "pause_own", "pause_flow")
EARLY_MS = (60, 100, 200)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HANGOVER_MS = 600
PAUSE_MS = 400
BLOCK = RATE // 100  # 10 ms blocks, as talk's mic
# second rendition of each question: other voice and speed, clean
SECOND = [("en-gb", 140), ("en-us+f2", 175), ("en-gb-x-rp", 160), ("en-us+m4", 130),
          ("en-029", 185), ("en-us", 165)]


@dataclass
class Clip:
    """One spoken clip of one variant, with where its mid-sentence stop is (s)."""

    name: str
    variant: str
    pcm: np.ndarray
    stop_s: float | None = None  # end of part 1 (pause_*): a pause here is mid-sentence


@dataclass
class Pause:
    """A SpeechPause seen by the VAD: when it fired (s) and what the model said."""

    fired_s: float
    speech_end_s: float
    p: float
    resumed: bool = False


@dataclass
class Run:
    """The VAD events of one clip at one early_ms."""

    clip: Clip
    early_ms: int
    pauses: list[Pause] = field(default_factory=list)
    end_s: float | None = None  # t_end of the final Utterance


def _say(text: str, voice: str, wpm: int, ssml: bool = False) -> np.ndarray:
    return _trim(espeak(text, voice, wpm, ssml=ssml))


def _trim(pcm: np.ndarray) -> np.ndarray:
    """Without the synthesiser's own lead and tail silence (so a 400 ms gap is 400 ms)."""
    loud = np.flatnonzero(np.abs(pcm) > 1e-3)
    return pcm[loud[0]:loud[-1] + 1] if len(loud) else pcm


def _silence(s: float) -> np.ndarray:
    return np.zeros(int(s * RATE), np.float32)


def _break_at(pcm: np.ndarray, min_s: float) -> tuple[int, int]:
    """(start, end) sample of the first silent run of at least ``min_s`` (the SSML break)."""
    loud = np.abs(pcm[: len(pcm) // 160 * 160]).reshape(-1, 160).max(axis=1) > 1e-3
    need, run = round(min_s * 100), 0
    for i, voiced in enumerate(loud):
        run = 0 if voiced else run + 1
        if run == need:
            start = (i - need + 1) * 160
            end = start
            while end < len(pcm) and abs(pcm[end]) <= 1e-3:
                end += 1
            return start, end
    raise RuntimeError("no SSML break found")


def _condition(pcm: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """Lead 0.3 s, tail 1.2 s, then make_questions' conditions (noise over everything)."""
    from make_questions import degrade

    return degrade(np.concatenate([pcm, _silence(0.8)]), condition, seed=seed)  # + 0.3 s lead, 0.4 s tail


def clips(cut_seed: int = 9) -> list[Clip]:
    """The whole set: 20 questions x 2 renditions x 5 variants."""
    rng = np.random.default_rng(cut_seed)
    out = []
    for k, (text, voice, wpm, cond) in enumerate(TABLE):
        words = text.split()
        cut = int(np.clip(round(rng.uniform(0.4, 0.7) * len(words)), 1, len(words) - 1))
        part1, part2 = " ".join(words[:cut]), " ".join(words[cut:])
        second = SECOND[k % len(SECOND)]
        for r, (v, w, c) in enumerate([(voice, wpm, cond), (*second, "clean")]):
            name, seed = f"q{k:02d}{'ab'[r]}", 100 * k + r
            flow = _say(f'<speak>{part1} <break time="{PAUSE_MS}ms"/> {part2}</speak>', v, w, ssml=True)
            b0, b1 = _break_at(flow, PAUSE_MS / 1000 * 0.6)
            own1 = _say(part1, v, w)
            made = {
                "complete": (_say(text, v, w), None),
                "cut_own": (own1, None),
                "cut_flow": (flow[:b0], None),
                "pause_own": (np.concatenate([own1, _silence(PAUSE_MS / 1000), _say(part2, v, w)]),
                              len(own1) / RATE),
                "pause_flow": (np.concatenate([flow[:b0], _silence(PAUSE_MS / 1000), flow[b1:]]),
                               b0 / RATE),
            }
            for variant, (pcm, stop) in made.items():
                pcm = _condition(pcm, c, seed)
                out.append(Clip(name, variant, pcm, None if stop is None else stop + 0.3))
    return out


def drive(clip: Clip, early_ms: int, model: SmartTurn) -> Run:
    """Push the clip through the real VAD (10 ms blocks); score every SpeechPause."""
    vad = VadSegmenter(early_ms=early_ms, hangover_ms=HANGOVER_MS)
    run = Run(clip, early_ms)
    for i in range(0, len(clip.pcm), BLOCK):
        t = i / RATE
        for ev in vad.push(clip.pcm[i:i + BLOCK], t):
            fired = t + BLOCK / RATE
            if isinstance(ev, SpeechPause):
                utt = ev.utterance
                run.pauses.append(Pause(fired, utt.t_end, model.predict(utt.pcm)))
            elif isinstance(ev, SpeechResume) and run.pauses:
                run.pauses[-1].resumed = True
            elif isinstance(ev, Utterance):
                run.end_s = ev.t_end
    last = vad.flush(len(clip.pcm) / RATE)
    if isinstance(last, Utterance):
        run.end_s = last.t_end
    return run


def time_calls(model_path: Path, pcm: list[np.ndarray], threads: int) -> dict[str, float]:
    """Per-call time of ``predict`` (features + network), ms: p50/p95 over the clips."""
    model = SmartTurn(model_path, threads=threads)
    model.load()
    model.predict(pcm[0])  # warm
    times, feats = [], []
    for x in pcm:
        t0 = time.perf_counter()
        features(x)
        t1 = time.perf_counter()
        model.predict(x)
        times.append((time.perf_counter() - t1) * 1000)
        feats.append((t1 - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1),
            "features_p50_ms": round(float(np.percentile(feats, 50)), 1), "calls": len(times)}


def _final(run: Run) -> Pause | None:
    """The pause at the end of the speech (no resume after it)."""
    return run.pauses[-1] if run.pauses and not run.pauses[-1].resumed else None


def _mid(run: Run) -> list[Pause]:
    """Pauses inside the question: resumed ones, and for pause_* the one at the break."""
    return [p for p in run.pauses if p.resumed]


def _at_stop(run: Run) -> Pause | None:
    """The pause that fired in the mid-sentence stop: the last one of cut_*, the one at
    part 1's end for pause_* (within 0.25 s of it)."""
    if run.clip.variant.startswith("cut"):
        return _final(run)
    stop = run.clip.stop_s
    near = [p for p in run.pauses if stop is not None and abs(p.speech_end_s - stop) < 0.25]
    return near[0] if near else None


def pr_curve(runs: list[Run]) -> list[dict[str, Any]]:
    """Precision/recall of p >= thr as "complete": positives are the final pauses of
    complete questions, negatives the pauses at mid-sentence stops (cut_*, pause_*)."""
    pos = [p.p for r in runs if r.clip.variant == "complete" and (p := _final(r))]
    neg = [p.p for r in runs if r.clip.variant != "complete" and (p := _at_stop(r))]
    rows = []
    for thr in THRESHOLDS:
        tp = sum(x >= thr for x in pos)
        fp = sum(x >= thr for x in neg)
        rows.append({"thr": thr, "precision": round(tp / max(1, tp + fp), 3),
                     "recall": round(tp / max(1, len(pos)), 3),
                     "fp_rate": round(fp / max(1, len(neg)), 3), "pos": len(pos), "neg": len(neg)})
    return rows


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a complete question scores above a mid-sentence stop); 0.5 = chance."""
    if not pos or not neg:
        return float("nan")
    a, b = np.array(pos)[:, None], np.array(neg)[None, :]
    return round(float(np.mean((a > b) + 0.5 * (a == b))), 3)


def piper_check(model: SmartTurn, voice: str = "piper-joe-medium") -> dict[str, Any]:
    """Control on the project's own TTS voice (Piper joe, noise off): the same 20
    questions complete vs their first 40-70 % of words, 0.2 s of silence after each (what
    a 200 ms pause hands the model). Tells whether the model hears prosody at all."""
    import soxr
    from piper import PiperVoice, SynthesisConfig

    from avatar_agent.models import ModelStore

    store = ModelStore(progress=False)
    pv = PiperVoice.load(str(store.path(voice, "en_US-joe-medium.onnx")))
    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    rng = np.random.default_rng(9)

    def say(text: str) -> np.ndarray:
        pcm = np.concatenate([c.audio_float_array for c in pv.synthesize(text, syn)])
        pcm = _trim(soxr.resample(pcm, pv.config.sample_rate, RATE).astype(np.float32))
        return np.concatenate([_silence(0.3), pcm, _silence(0.2)])

    pos, neg = [], []
    for text, *_ in TABLE:
        words = text.split()
        cut = int(np.clip(round(rng.uniform(0.4, 0.7) * len(words)), 1, len(words) - 1))
        pos.append(model.predict(say(text)))
        neg.append(model.predict(say(" ".join(words[:cut]))))
    return {"n": len(pos), "complete_p_median": round(float(np.median(pos)), 3),
            "cut_p_median": round(float(np.median(neg)), 3), "auc": auc(pos, neg),
            "recall_at_0.5": round(float(np.mean(np.array(pos) >= 0.5)), 3),
            "cut_p>=0.5": round(float(np.mean(np.array(neg) >= 0.5)), 3)}


def rule(runs: list[Run], thr: float | None, model_ms: float) -> dict[str, Any]:
    """Score a decision rule over the runs of one early_ms (``thr`` None: answer always)."""

    def starts(p: Pause) -> bool:
        return thr is None or p.p >= thr

    cost = 0.0 if thr is None else model_ms / 1000
    delays, missed = [], 0
    for r in (r for r in runs if r.clip.variant == "complete"):
        final = _final(r)
        if r.end_s is None:
            missed += 1
            continue
        if final is not None and starts(final):
            delays.append(final.fired_s + cost - r.end_s)
        else:
            delays.append(HANGOVER_MS / 1000)
    cut = {}
    for variant in VARIANTS[1:]:
        stops = [_at_stop(r) for r in runs if r.clip.variant == variant]
        cut[variant] = round(sum(1 for p in stops if p is not None and starts(p)) / max(1, len(stops)), 3)
    dropped = [sum(starts(p) for p in _mid(r)) for r in runs if r.clip.variant == "complete"]
    calls = [len(r.pauses) for r in runs if r.clip.variant == "complete"] if thr is not None else [0]
    d = np.array(delays) * 1000
    return {"delay_mean_ms": round(float(d.mean()), 0), "delay_p95_ms": round(float(np.percentile(d, 95)), 0),
            "answered_early": round(float(np.mean(d < HANGOVER_MS - 1)), 3),
            "cut_in": cut, "dropped_starts_per_question": round(float(np.mean(dropped)), 2),
            "model_calls_per_question": round(float(np.mean(calls)), 2), "no_utterance": missed}


def run(cfg: Any = None, *, json_path: Path | None = None, threads: int = 1) -> dict[str, Any]:
    """The whole benchmark; returns the figures (``avatar-agent bench turn_end``)."""
    from avatar_agent.models import ModelStore

    path = ModelStore(progress=False).path("smart-turn-v3.2")
    model = SmartTurn(path, threads=threads)
    t0 = time.perf_counter()
    data = clips()
    made_s = time.perf_counter() - t0
    runs = {x: [drive(c, x, model) for c in data] for x in EARLY_MS}
    complete = [c.pcm for c in data if c.variant == "complete"]
    timing = {f"threads_{n}": time_calls(path, complete, n) for n in (1, 2)}
    model_ms = timing[f"threads_{threads}"]["p50_ms"]
    rules = {"today: answer at 200 ms": rule(runs[200], None, model_ms)}
    for x in EARLY_MS:
        for thr in (0.5, 0.7, 0.9):
            rules[f"smart_turn at {x} ms, thr {thr}"] = rule(runs[x], thr, model_ms)
    by_variant = {}
    for variant in VARIANTS:
        ps = [p.p for r in runs[200] if r.clip.variant == variant
              and (p := _final(r) if variant == "complete" else _at_stop(r))]
        by_variant[variant] = {"n": len(ps), "p_median": round(float(np.median(ps)), 3),
                               "p>=0.5": round(float(np.mean(np.array(ps) >= 0.5)), 3)}
        if variant == "complete":
            pos = ps
        else:
            by_variant[variant]["auc_vs_complete"] = auc(pos, ps)
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg(), "clips": len(data),
        "made_s": round(made_s, 1), "model_threads": threads, "model_ms_p50": model_ms,
        "per_call": timing, "p_at_stop_200ms": by_variant,
        "pr_at_200ms": pr_curve(runs[200]), "pr_at_100ms": pr_curve(runs[100]),
        "rules": rules, "piper_control": piper_check(model),
    }
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the rules")
    args = ap.parse_args(argv)
    out = run(json_path=args.json, threads=args.threads)
    print(json.dumps({k: v for k, v in out.items() if k != "rules"}, indent=1))
    print(f"\n{'rule':32} {'delay mean':>10} {'p95':>6} {'early':>6} "
          + " ".join(f"{v:>10}" for v in VARIANTS[1:]) + f" {'dropped':>8} {'calls':>6}")
    for name, r in out["rules"].items():
        print(f"{name:32} {r['delay_mean_ms']:>10.0f} {r['delay_p95_ms']:>6.0f} {r['answered_early']:>6.2f} "
              + " ".join(f"{r['cut_in'][v]:>10.2f}" for v in VARIANTS[1:])
              + f" {r['dropped_starts_per_question']:>8.2f} {r['model_calls_per_question']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

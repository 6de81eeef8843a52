"""``serve`` from the browser's side: reply latency and sessions per machine.

The real server (``python -m avatar_agent serve``, the models of the config) runs on
127.0.0.1 in its own process; real headless chromium tabs (``tests/e2e/chromium.py``)
open the page, and each tab's fake microphone plays one wav: questions separated by
``--gap-s`` of silence, alternating the non-Piper fixture set
(``benchmarks/make_questions.py``, espeak-ng voices, noise, levels) with questions
spoken by Piper.

Measured in the browser (the page's ``window.avatarStats``, read over DevTools):

* end of a question = where its words end in the wav, counted from the moment the page
  got the microphone (chromium's fake device starts the file then); checked against the
  ends the page itself sees in the microphone track's level (``getStats``
  ``media-source``; a decaying peak meter, so those trail by 0.2-0.5 s: ``end_check_ms``);
* first reply audio = the first poll where the received audio track played sound
  (``inbound-rtp`` ``totalAudioEnergy`` grew) after that end, before the next question
  ends; polls every 50 ms, so figures are good to about ±0.05 s.

For 1 session: p50/p95 over ``--turns`` turns. For each count in ``--sessions``: that
many tabs at once (their questions staggered over the gap), the fraction of replies
that start within ``--limit-s`` (1.5 s), p50/p95, and the server's resident memory
(``/api/status``) with 0 sessions and with the count running.

Run: ``python benchmarks/bench_serve.py --sessions 1,2,3,4 --turns 10`` (JSON + a table),
or ``avatar-agent bench serve`` (the defaults). Browsers and server share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
PIPER_QUESTIONS = [
    "What is the capital of France?", "What color is the sky?", "What is two plus two?",
    "Where do penguins live?", "Do you like music?", "Why is the sea salty?",
    "Who wrote Romeo and Juliet?", "How do birds fly?", "What is a black hole?",
    "Where is the Eiffel Tower?",
]


# -------------------------------------------------------------------- the questions
async def questions(cfg, n: int) -> list[tuple[str, str, np.ndarray]]:
    """``n`` questions (voice, text, 16 kHz pcm): espeak fixture and Piper, alternating."""
    import soxr

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from make_questions import espeak as espeak_clean
    from make_questions import fixture_set

    from avatar_agent import registry
    from avatar_agent.models import ModelStore

    espeak = fixture_set()
    tts = registry.create("tts", "piper", cfg=cfg, store=ModelStore(progress=False))
    tts.load()

    async def piper(text: str) -> np.ndarray:
        chunks = [c async for c in tts.synthesize(text)]
        pcm = np.concatenate([c.pcm for c in chunks]).astype(np.float32)
        pcm = soxr.resample(pcm, chunks[0].sample_rate, RATE).astype(np.float32)
        return 0.8 * pcm / max(1e-3, float(np.abs(pcm).max()))

    out = []
    for i in range(n):
        if i % 2 == 0:
            q, pcm = espeak[(i // 2) % len(espeak)]
            # the words end where the clean voice ends (degrade() adds 0.3 s before,
            # 0.4 s after, noise over both for the noisy ones)
            end = 0.3 + _speech_end(espeak_clean(q.text, q.voice, q.wpm))
            out.append((f"espeak {q.voice} {q.condition}", q.text, pcm, end))
        else:
            text = PIPER_QUESTIONS[(i // 2) % len(PIPER_QUESTIONS)]
            pcm = await piper(text)
            out.append(("piper", text, pcm, _speech_end(pcm)))
    return out


def _speech_end(pcm: np.ndarray) -> float:
    """Seconds to the last 10 ms with sound (peak above -40 dBFS)."""
    frames = np.abs(pcm[: len(pcm) // 160 * 160]).reshape(-1, 160).max(axis=1)
    loud = np.flatnonzero(frames > 0.01)
    return float((loud[-1] + 1) * 160 / RATE) if len(loud) else len(pcm) / RATE


def mic_wav(path: Path, qs: list[tuple], lead_s: float, gap_s: float,
            tail_s: float = 240.0) -> list[float]:
    """Write the fake microphone's wav; returns where each question's words end (s into
    the file).

    Chromium loops the file: the long silent tail keeps the questions from coming again
    while the run winds down."""
    import soundfile as sf

    parts, ends, t = [np.zeros(int(lead_s * RATE), np.float32)], [], lead_s
    for _, _, pcm, speech_end in qs:
        parts += [pcm, np.zeros(int(gap_s * RATE), np.float32)]
        ends.append(t + speech_end)
        t += len(pcm) / RATE + gap_s
    parts.append(np.zeros(int(tail_s * RATE), np.float32))
    sf.write(str(path), np.concatenate(parts), RATE, subtype="PCM_16")
    return ends


# -------------------------------------------------------------------- the server
sys.path.insert(0, str(ROOT))
from tests.e2e.serve_process import ServeProcess  # noqa: E402 - the browser tests' server runner


def start_server(cfg, folder: Path, max_sessions: int) -> ServeProcess:
    """``serve`` with ``cfg`` (written to a YAML file), on 127.0.0.1, no token."""
    import yaml

    data = cfg.model_dump(mode="json")
    data["server"].update(host="127.0.0.1", max_sessions=max_sessions, token=None)
    conf = folder / "config.yaml"
    conf.write_text(yaml.safe_dump(data))
    try:
        return ServeProcess(folder, "--config", str(conf), start_s=300.0)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


# -------------------------------------------------------------------- one count
def latencies(stats: dict, ends_s: list[float]) -> tuple[list[float | None], float | None]:
    """Per question: seconds from the end of its words to the first reply sound (None:
    no reply before the next question ended); and the check (median of the ends the
    page detected minus the layout's, ms).

    The ends are the wav's layout from the moment the page got the microphone
    (``micStartAt``: chromium's fake device starts its file when it opens). The page's
    own detections are a check only: WebRTC's level meter is a decaying peak (a quarter
    per 0.1 s), so they trail the words by 0.2-0.5 s; a check outside -0.3..0.9 s would
    mean the layout is off (the table then says so)."""
    start = stats.get("micStartAt")
    if start is None:
        return [None] * len(ends_s), None
    layout = [start + 1000 * e for e in ends_s]
    diffs = [d - min(layout, key=lambda x: abs(x - d)) for d in stats.get("micEnds", [])]
    diffs = [x for x in diffs if abs(x) < 2000]
    check = float(np.median(diffs)) if diffs else 0.0
    ends = layout
    onsets = stats.get("replyOnsets", [])
    out: list[float | None] = []
    for i, e in enumerate(ends):
        nxt = ends[i + 1] if i + 1 < len(ends) else float("inf")
        first = next((o for o in onsets if e < o < nxt), None)
        out.append(None if first is None else round((first - e) / 1000, 3))
    return out, (round(check, 1) if diffs else None)


async def one_count(srv: ServeProcess, k: int, qs, turns: int, gap_s: float, work: Path,
                    settle_s: float) -> dict:
    from tests.e2e.chromium import Chromium

    period = float(np.mean([len(q[2]) / RATE for q in qs[:turns]])) + gap_s
    wavs, layouts = [], []
    for j in range(k):  # the sessions' questions spread over one question period
        w = work / f"mic-{k}-{j}.wav"
        layouts.append(mic_wav(w, qs[:turns], lead_s=2.0 + j * period / k, gap_s=gap_s))
        wavs.append(w)
    st0 = srv.status()
    browsers = [Chromium(srv.url + "?autostart=1&bench=1", w) for w in wavs]
    try:
        for b in browsers:
            await b.start()
        t0 = time.monotonic()
        deadline = t0 + 60
        while srv.status()["sessions"] < k and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        run_s = max(lay[-1] for lay in layouts) + settle_s
        rss_during = []
        while time.monotonic() - t0 < run_s:
            await asyncio.sleep(5)
            st = srv.status()
            rss_during.append(st["rss_mb"])
            if st["sessions"] < k:
                break  # a session ended early: report what it got
        stats = [await b.stats() for b in browsers]
        st1 = srv.status()
    finally:
        for b in browsers:
            await b.close()
    deadline = time.monotonic() + 60
    while srv.status()["sessions"] and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    lat, checks, errors, raw = [], [], [], []
    for s, lay in zip(stats, layouts, strict=True):
        if not s:
            errors.append("no page stats")
            continue
        t0_ms = s.get("micStartAt") or 0.0
        raw.append({"layout_ends_s": [round(x, 2) for x in lay],
                    "page_mic_ends_s": [round((x - t0_ms) / 1000, 2) for x in s.get("micEnds", [])],
                    "reply_onsets_s": [round((x - t0_ms) / 1000, 2) for x in s.get("replyOnsets", [])]})
        if s.get("error"):
            errors.append(s["error"])
        got, check = latencies(s, lay)
        lat += got
        checks.append(check)
    answered = [x for x in lat if x is not None]
    within = sum(1 for x in answered if x <= LIMIT_S)
    return {
        "sessions": k, "questions": len(lat), "replied": len(answered),
        "within_limit": round(within / len(lat), 3) if lat else None,
        "p50_s": _pct(answered, 50), "p95_s": _pct(answered, 95),
        "max_s": round(max(answered), 3) if answered else None,
        "latencies_s": lat, "end_check_ms": checks, "page_errors": errors, "timeline": raw,
        "sessions_seen": st1["sessions"], "rss_before_mb": st0["rss_mb"],
        "rss_with_sessions_mb": max(rss_during, default=st1["rss_mb"]),
        "loop_lag_max_ms": st1["loop_lag_ms"]["max"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


LIMIT_S = 1.5


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def _bench(cfg, counts: list[int], turns: int, gap_s: float, work: Path) -> dict:
    qs = await questions(cfg, turns)
    srv = start_server(cfg, work, max_sessions=max(counts))
    try:
        await asyncio.sleep(3.0)
        rss0 = srv.status()["rss_mb"]
        rows = []
        for k in counts:
            print(f"bench serve: {k} session(s), {turns} questions each ...", file=sys.stderr,
                  flush=True)
            rows.append(await one_count(srv, k, qs, turns, gap_s, work, settle_s=15.0))
            r = rows[-1]
            print(f"  replied {r['replied']}/{r['questions']}, within {LIMIT_S} s: "
                  f"{r['within_limit']}, p50 {r['p50_s']} s, p95 {r['p95_s']} s, "
                  f"load {r['load_avg_1m']}", file=sys.stderr, flush=True)
        every = [r for r in srv.records() if r.get("user")]
        recs = [r for r in every if r.get("voice_to_face_s") is not None]
        v2f = [r["voice_to_face_s"] for r in recs if not r.get("interrupted")]
    finally:
        srv.stop()
    ok = [r["sessions"] for r in rows if r["within_limit"] == 1.0]
    for r in rows:
        r["rss_per_session_mb"] = round((r["rss_with_sessions_mb"] - rss0) / r["sessions"], 1)
    return {
        "rss_idle_mb": rss0, "counts": rows,
        "sessions_all_within_limit": max(ok, default=0),
        "server_voice_to_face_p50_s": _pct(v2f, 50), "server_voice_to_face_p95_s": _pct(v2f, 95),
        "server_turns": len(every), "server_turns_shown": len(recs),
        "server_turns_interrupted": sum(bool(r.get("interrupted")) for r in every),
        "server_turns_unanswered": sum(not r.get("assistant") for r in every),
        "questions": [f"{q[0]}: {q[1]}" for q in qs],
    }


def run(cfg, sessions: tuple[int, ...] = (1, 2, 3, 4), turns: int = 10, gap_s: float = 8.0) -> dict:
    """Measure with ``cfg``; returns the figures (and prints a table on stderr)."""
    cfg.llm.max_tokens = min(cfg.llm.max_tokens, 40)  # short replies: the first sound is what counts
    with tempfile.TemporaryDirectory(prefix="aa-bench-serve-") as tmp:
        result = asyncio.run(_bench(cfg, list(sessions), turns, gap_s, Path(tmp)))
    result.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  load_avg_1m_end=round(os.getloadavg()[0], 2), limit_s=LIMIT_S, gap_s=gap_s,
                  machine=f"{platform.machine()}, {os.cpu_count()} cores (browsers on it too)",
                  stt=cfg.stt.provider, llm=f"{cfg.llm.provider}:{cfg.llm.llama_cpp.model}",
                  tts=cfg.tts.provider, lipsync=cfg.lipsync.engine)
    print(table(result), file=sys.stderr)
    return result


def table(result: dict) -> str:
    lines = [f"serve, browser side ({result['date']}, {result['machine']})",
             f"{'sessions':>8} {'replied':>8} {'<=1.5s':>7} {'p50 s':>6} {'p95 s':>6} "
             f"{'RSS MB':>7} {'MB/sess':>7} {'load':>5}"]
    for r in result["counts"]:
        lines.append(f"{r['sessions']:>8} {r['replied']:>4}/{r['questions']:<3} "
                     f"{r['within_limit']!s:>7} {r['p50_s']!s:>6} {r['p95_s']!s:>6} "
                     f"{r['rss_with_sessions_mb']!s:>7} {r['rss_per_session_mb']!s:>7} "
                     f"{r['load_avg_1m']:>5}")
    lines.append(f"idle RSS {result['rss_idle_mb']} MB; sessions with every reply within "
                 f"{result['limit_s']} s: {result['sessions_all_within_limit']}")
    bad = [c for r in result["counts"] for c in r["end_check_ms"] if c is None or not -300 <= c <= 900]
    if bad:
        lines.append(f"WARNING: the page's own end-of-speech check disagrees with the wav layout "
                     f"({bad} ms): the latencies may be off")
    return "\n".join(lines)


def main() -> None:
    """CLI entry: prints the JSON result (the table goes to stderr)."""
    from avatar_agent.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="1,2,3,4", help="session counts to run, e.g. 1,2,3,4")
    ap.add_argument("--turns", type=int, default=10, help="questions per session")
    ap.add_argument("--gap-s", type=float, default=8.0, help="silence after each question")
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    os.chdir(ROOT)
    cfg = load_config(args.config, args.overrides)
    counts = tuple(int(x) for x in args.sessions.split(",") if x.strip())
    print(json.dumps(run(cfg, counts, args.turns, args.gap_s), indent=2))


if __name__ == "__main__":
    main()

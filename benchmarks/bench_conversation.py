"""Conversation quality of ``talk``: does it hear, answer right, remember, never copy or drift?

Spoken dialogues (``conversation_set.py``: facts, arithmetic, yes/no, one-word
instructions, follow-ups, memory probes, chit-chat, pauses inside some turns) are played
into the virtual mic of a real ``python -m avatar_agent talk`` process (window on Xvfb,
speaker on a null sink: ``tests/harness``) by four voice families
(``conversation_voices.py``: espeak-ng voices and speeds, Piper joe, Kokoro-82M, human
recordings). Each dialogue is a fresh ``talk`` process, so its history is its own. What
the avatar heard and said, and its timings, come from the JSONL transcript.

Per turn and in total (and per voice family): heard (WER against the script; turns with
WER ≤ 0.25), right (answer key), memory (probes right), copies (a reply equal to an
earlier one, any length), parrots (the reply repeats the user's words), language drift,
empty and cut replies, splits (the VAD committed inside one utterance) and false cuts
(the pieces stayed separate turns, not rejoined), end of speech →
first reply audio at the speaker p50/p95. Writes ``benchmarks/out/conversation-*.json``
and ``.md`` (per-turn table).

    python benchmarks/bench_conversation.py [--limit N] [--voices espeak,piper,kokoro,human]
        [--rotate turn|dialogue] [--set llm.llama_cpp.model=NAME ...]
    avatar-agent bench conversation [--set ...]

``--rotate turn`` (default, the full run): the voice families take turns within each
dialogue, plus the human dialogue; ``--rotate dialogue``: each dialogue in one family
(``--limit 4``: one dialogue per family, the short validation run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
sys.path.insert(0, str(HERE))

import avdevices  # noqa: E402
import conversation_score as score  # noqa: E402
from conversation_set import DIALOGUES, Turn  # noqa: E402
from conversation_voices import BECKETT, FAMILIES, TWO_CITIES, Clip  # noqa: E402

OUT = HERE / "out"
HEARD_OK = 0.25       # a turn counts as heard when its WER is at most this
SETTLE_S = 1.0        # listening, and no new transcript line, this long: the turn is over
TURN_TIMEOUT_S = 90.0
DEAF_S = 8.0          # still listening this long after the clip, no state change: heard nothing
_STATE = re.compile(r"\bstate (listening|thinking|speaking)\b")
_HUMAN_FILES = {BECKETT: ("beckett.wav",), TWO_CITIES: ("two_cities.wav",)}


@dataclass
class PlannedTurn:
    """A turn to play: the script's turn (or a human recording's stand-in) and its audio."""

    turn: Turn
    clip: Clip


@dataclass
class TalkProcess:
    """One ``python -m avatar_agent talk -v`` on the virtual devices; its log is read for
    the state lines ("state listening") and kept in ``log``."""

    config: Path
    transcript: Path
    log: Path
    proc: subprocess.Popen | None = None
    state: str = ""
    state_t: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start ``talk`` and a thread that follows its output."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avatar_agent", "talk", "-v", "--config", str(self.config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._follow, name="talk-log", daemon=True).start()

    def _follow(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log, "a", encoding="utf-8", buffering=1) as fh:  # line by line: readable live
            for line in self.proc.stdout:
                fh.write(line)
                if line.startswith("listening"):
                    self.ready.set()
                m = _STATE.search(line)
                if m:
                    self.state, self.state_t = m.group(1), time.monotonic()
        self.ready.set()  # exited: nobody waits for ever

    def records(self) -> list[dict]:
        """The transcript so far."""
        if not self.transcript.exists():
            return []
        lines = self.transcript.read_text(encoding="utf-8").splitlines()
        return [json.loads(x) for x in lines if x.strip()]

    def alive(self) -> bool:
        """Still running?"""
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> int | None:
        """Quit as Ctrl-C does; kill after 30 s."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def plan(families: list[str], rotate: str, limit: int | None, cfg) -> list[tuple[str, list[PlannedTurn]]]:
    """The dialogues to run, each turn with its clip. ``rotate``: ``turn`` (families take
    turns inside each dialogue, the human dialogue last) or ``dialogue`` (one family per
    dialogue, in ``families`` order)."""
    import conversation_voices as voices

    piper = voices.PiperVoice(cfg) if "piper" in families else None
    kokoro = voices.KokoroVoice() if "kokoro" in families else None
    counts = dict.fromkeys(FAMILIES, 0)

    def clip(turn: Turn, family: str) -> Clip:
        k = counts[family]
        counts[family] += 1
        if family == "espeak":
            return voices.speak_espeak(turn.text, k, turn.pause_s)
        if family == "piper":
            assert piper is not None
            return piper.speak(turn.text, turn.pause_s)
        assert kokoro is not None
        return kokoro.speak(turn.text, k, turn.pause_s)

    def human() -> tuple[str, list[PlannedTurn]]:
        return "human", [PlannedTurn(Turn(c.script, "human"), c) for c in voices.human_clips()]

    synthetic = [f for f in families if f != "human"]
    out: list[tuple[str, list[PlannedTurn]]] = []
    if rotate == "dialogue":
        for i, family in enumerate(families):
            if family == "human":
                out.append(human())
            else:
                d = DIALOGUES[i % len(DIALOGUES)]
                out.append((f"{d.name}/{family}", [PlannedTurn(t, clip(t, family)) for t in d.turns]))
    else:
        g = 0
        for d in DIALOGUES if synthetic else ():
            turns = []
            for t in d.turns:
                turns.append(PlannedTurn(t, clip(t, synthetic[g % len(synthetic)])))
                g += 1
            out.append((d.name, turns))
        if "human" in families:
            out.append(human())
    return out[:limit] if limit else out


def _wait_turn(talk: TalkProcess, n0: int, played_t: float) -> list[dict]:
    """Wait until the turn played at ``played_t`` is over: a new transcript line, and the
    avatar listening with nothing new for :data:`SETTLE_S`; returns the new lines."""
    deadline = played_t + TURN_TIMEOUT_S
    seen, seen_t = n0, played_t
    while time.monotonic() < deadline and talk.alive():
        recs = talk.records()
        now = time.monotonic()
        if len(recs) != seen:
            seen, seen_t = len(recs), now
        settled = (talk.state in ("listening", "") and now - talk.state_t >= SETTLE_S
                   and now - seen_t >= SETTLE_S and now - played_t >= SETTLE_S)
        if len(recs) > n0 and settled:
            return recs[n0:]
        if talk.state == "listening" and talk.state_t < played_t and now - played_t >= DEAF_S:
            return []  # it never left listening: heard nothing
        time.sleep(0.1)
    return talk.records()[n0:]


def _score_turn(pt: PlannedTurn, recs: list[dict], earlier: list[str]) -> dict:
    """One row of the per-turn table."""
    t, c = pt.turn, pt.clip
    # a line marked "merged" is a cut the next turn rejoined (issue 19 item 4): its words
    # are in that turn's text again
    kept = [r for r in recs if not r.get("merged")] or recs
    heard = " ".join(r.get("user", "") for r in kept if r.get("user")).strip()
    last = recs[-1] if recs else {}
    said = (last.get("assistant") or "").strip()
    if c.passage:
        w, ref = score.span_wer(c.script, heard)
    else:
        w, ref = score.wer(c.script, heard), c.script
    m = last.get("metrics") or {}
    empty = not said
    copy = score.is_copy(said, earlier)
    parrot = score.is_parrot(said, heard)
    drift = bool(said) and score.is_drift(said)
    right = score.key_match(said, t.key, t.exact)
    if right is not None:  # "Eu não pode ser Anna" names Anna, but not for this listener
        right = right and not drift
    return {
        "kind": t.kind, "family": c.family, "voice": c.voice, "script": ref,
        "heard": heard, "wer": round(w, 3), "said": said, "right": right,
        "memory": t.kind == "memory", "copy": copy, "parrot": parrot, "drift": drift,
        "empty": empty, "cut": bool(said) and score.is_cut(said, bool(last.get("interrupted"))),
        "sensible": not (empty or copy or parrot or drift),
        "pause": "|" in t.text, "records": len(recs),
        "split": len(recs) > 1,        # the VAD committed inside the utterance
        "false_cut": len(kept) > 1,    # ... and the pieces stayed separate turns
        "error": last.get("error"),
        "first_audio_s": m.get("first_frame_s"), "audio_made_s": m.get("first_audio_s"),
        "stt_s": m.get("stt_s"), "first_token_s": m.get("first_token_s"),
    }


def _run_dialogue(name: str, turns: list[PlannedTurn], config: Path, work: Path) -> tuple[list[dict], dict]:
    import soundfile as sf

    safe = name.replace("/", "_")
    talk = TalkProcess(config=config, transcript=work / f"{safe}.jsonl", log=work / f"{safe}.log")
    t0 = time.monotonic()
    talk.start()
    talk.ready.wait(300)
    start_s = time.monotonic() - t0
    rows: list[dict] = []
    try:
        if not talk.alive():
            raise RuntimeError(f"talk exited at start ({talk.log}): "
                               + talk.log.read_text(encoding="utf-8")[-800:])
        time.sleep(1.0)  # past talk's mic drain
        for i, pt in enumerate(turns):
            wav = work / f"{safe}-{i:02d}.wav"
            sf.write(str(wav), pt.clip.pcm, 16000, subtype="PCM_16")
            n0 = len(talk.records())
            subprocess.run(avdevices.play_cmd(wav), check=True, timeout=60)
            recs = _wait_turn(talk, n0, time.monotonic())
            row = {"dialogue": name, "turn": i + 1, **_score_turn(pt, recs, [r["said"] for r in rows])}
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
            if not talk.alive():
                break
    finally:
        code = talk.close()
    return rows, {"dialogue": name, "start_s": round(start_s, 1), "exit": code,
                  "wall_s": round(time.monotonic() - t0, 1)}


def _line(r: dict) -> str:
    flags = [k for k in ("copy", "parrot", "drift", "empty", "cut", "split", "false_cut") if r[k]]
    right = {True: "RIGHT", False: "WRONG", None: "sense" if r["sensible"] else "NONSENSE"}[r["right"]]
    lat = "-" if r["first_audio_s"] is None else f"{r['first_audio_s']:.2f}s"
    return (f"[{r['dialogue']} {r['turn']}] {r['family']}:{r['voice']} WER {r['wer']:.2f} {right} {lat} "
            f"{' '.join(flags)}\n   heard: {r['heard']!r}\n   said:  {r['said']!r}")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def summarise(rows: list[dict]) -> dict:
    """Totals over ``rows`` (all turns, or one family's)."""
    keyed = [r for r in rows if r["right"] is not None]
    probes = [r for r in rows if r["memory"]]
    unkeyed = [r for r in rows if r["right"] is None]
    lat = [r["first_audio_s"] for r in rows if r["first_audio_s"] is not None]
    return {
        "turns": len(rows),
        "heard_ok": sum(r["wer"] <= HEARD_OK for r in rows),
        "wer_mean": round(float(np.mean([r["wer"] for r in rows])), 3) if rows else None,
        "keyed": len(keyed), "right": sum(bool(r["right"]) for r in keyed),
        "memory_probes": len(probes), "memory_right": sum(bool(r["right"]) for r in probes),
        "unkeyed": len(unkeyed), "unkeyed_sensible": sum(r["sensible"] for r in unkeyed),
        "copies": sum(r["copy"] for r in rows), "parrots": sum(r["parrot"] for r in rows),
        "drifts": sum(r["drift"] for r in rows), "empty": sum(r["empty"] for r in rows),
        "cut": sum(r["cut"] for r in rows),
        "pause_turns": sum(r["pause"] for r in rows),
        "splits": sum(r["split"] for r in rows),
        "false_cuts": sum(r["false_cut"] for r in rows),
        "false_cuts_on_pause_turns": sum(r["false_cut"] for r in rows if r["pause"]),
        "first_audio_p50_s": _pct(lat, 50), "first_audio_p95_s": _pct(lat, 95),
    }


def _cell(text: str, n: int = 90) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def markdown(result: dict) -> str:
    """The per-turn table and the totals, as markdown."""
    t = result["total"]
    lines = [f"# Conversation benchmark, {result['date']}"
             + ("" if result.get("complete", True) else " (INCOMPLETE: stopped half-way)"), "",
             f"llm `{result['llm']}`, stt `{result['stt']}`, tts `{result['tts']}`; "
             f"voices {result['voices']}, rotate {result['rotate']}; {t['turns']} turns in "
             f"{result['wall_s']} s; load average {result['load_avg_1m']}; overrides {result['overrides']}",
             "", "| family | turns | heard ≤0.25 | right | memory | sensible (unkeyed) | copies | drift | "
             "empty | cut | splits / false cuts (pause turns) | first audio p50 / p95 s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in [("all", t), *result["per_family"].items()]:
        lines.append(
            f"| {name} | {s['turns']} | {s['heard_ok']}/{s['turns']} | {s['right']}/{s['keyed']} | "
            f"{s['memory_right']}/{s['memory_probes']} | {s['unkeyed_sensible']}/{s['unkeyed']} | "
            f"{s['copies']} | {s['drifts']} | {s['empty']} | {s['cut']} | "
            f"{s['splits']} / {s['false_cuts']} ({s['false_cuts_on_pause_turns']}/{s['pause_turns']}) | "
            f"{s['first_audio_p50_s']} / {s['first_audio_p95_s']} |")
    lines += ["", "| dialogue | # | voice | script | heard | WER | said | verdict | first audio s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["turns"]:
        flags = [k for k in ("copy", "parrot", "drift", "empty", "cut", "split", "false_cut") if r[k]]
        verdict = {True: "right", False: "**wrong**", None: "sense" if r["sensible"] else "**nonsense**"}[r["right"]]
        if r["memory"]:
            verdict += " (memory)"
        lines.append(f"| {r['dialogue']} | {r['turn']} | {r['family']}:{r['voice']} | {_cell(r['script'])} | "
                     f"{_cell(r['heard'])} | {r['wer']:.2f} | {_cell(r['said'], 120)} | "
                     f"{' '.join([verdict, *flags])} | {r['first_audio_s']} |")
    return "\n".join(lines) + "\n"


def run(cfg, families: list[str] | None = None, rotate: str = "turn", limit: int | None = None,
        overrides: list[str] | None = None) -> dict:
    """Run the dialogues through ``talk`` with ``cfg``; writes the JSON and markdown
    reports to ``benchmarks/out`` and returns the totals."""
    import yaml

    families = list(families or FAMILIES)
    t0 = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix=f"conversation-{stamp}-", dir=OUT))
    dialogues = plan(families, rotate, limit, cfg)
    rows: list[dict] = []
    runs: list[dict] = []
    loads: list[float] = []

    def result() -> dict:
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_avg_1m": round(max(loads, default=os.getloadavg()[0]), 2),  # the worst seen
            "llm": f"{cfg.llm.provider}:{cfg.llm.llama_cpp.model}", "stt": cfg.stt.provider,
            "tts": cfg.tts.provider, "voices": ",".join(families), "rotate": rotate,
            "overrides": overrides or [], "wall_s": round(time.monotonic() - t0, 1),
            "dialogues": runs, "turns": rows, "work_dir": str(work),
            "complete": len(runs) == len(dialogues),
        }

    stem = OUT / f"conversation-{stamp}"
    avdevices.start()
    try:
        for name, turns in dialogues:
            conf = cfg.model_copy(deep=True)
            conf.transcript.path = work / f"{name.replace('/', '_')}.jsonl"
            path = work / "config.yaml"
            path.write_text(yaml.safe_dump(conf.model_dump(mode="json")), encoding="utf-8")
            got, info = _run_dialogue(name, turns, path, work)
            rows += got
            runs.append(info)
            loads.append(os.getloadavg()[0])
            if len(runs) < len(dialogues):  # a run stopped half-way still leaves its turns
                _write(result(), stem, quiet=True)
    finally:
        avdevices.stop()
    return _write(result(), stem)


def _write(result: dict, stem: Path, quiet: bool = False) -> dict:
    """Add the totals to ``result``, write ``stem``.json and .md (``quiet``: without
    printing the tables); return the totals."""
    rows = result["turns"]
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    result["total"] = summarise(rows)
    result["per_family"] = {f: summarise([r for r in rows if r["family"] == f]) for f in families}
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    md = markdown(result)
    stem.with_suffix(".md").write_text(md, encoding="utf-8")
    if not quiet:
        print(md, file=sys.stderr)
    return {k: result[k] for k in ("date", "llm", "voices", "rotate", "wall_s", "total", "per_family")} | {
        "report": str(stem.with_suffix(".md"))}


def rescore(report: Path) -> dict:
    """Score a finished run again from its transcripts (after a change to the keys or the
    scoring): reads ``report`` (a conversation-*.json), writes ``*-rescored.json``/``.md``."""
    result = json.loads(report.read_text(encoding="utf-8"))
    work = Path(result["work_dir"])
    by_name = {d.name: d for d in DIALOGUES}
    rows, lines, seen = [], {}, {}
    for old in result["turns"]:
        name = old["dialogue"]
        if name not in lines:
            path = work / f"{name.replace('/', '_')}.jsonl"
            lines[name] = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            seen[name] = 0
        recs = lines[name][seen[name]: seen[name] + old["records"]]
        seen[name] += old["records"]
        d = by_name.get(name.split("/")[0])
        if d is None:  # a human recording: its passage and its stand-in turn
            turn = Turn(old["script"], "human")
            passage = next(p for p in (BECKETT, TWO_CITIES) if old["voice"].split("#")[0] in _HUMAN_FILES[p])
            clip = Clip(np.zeros(0, np.float32), old["family"], old["voice"], passage, True)
        else:
            turn = d.turns[old["turn"] - 1]
            clip = Clip(np.zeros(0, np.float32), old["family"], old["voice"], turn.script)
        earlier = [r["said"] for r in rows if r["dialogue"] == name]
        rows.append({"dialogue": name, "turn": old["turn"], **_score_turn(PlannedTurn(turn, clip), recs, earlier)})
    result["turns"] = rows
    return _write(result, report.with_name(report.stem + "-rescored"))


def main() -> None:
    """CLI entry: prints the totals as JSON (the tables go to stderr and benchmarks/out)."""
    from avatar_agent.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for talk, e.g. llm.llama_cpp.model=smollm2-135m")
    ap.add_argument("--voices", default=",".join(FAMILIES),
                    help=f"voice families, comma-separated, from {','.join(FAMILIES)}")
    ap.add_argument("--rotate", choices=["turn", "dialogue"], default="turn",
                    help="families take turns within dialogues, or one family per dialogue")
    ap.add_argument("--limit", type=int, default=None, help="run only the first N dialogues")
    ap.add_argument("--rescore", type=Path, metavar="JSON",
                    help="score a finished run (benchmarks/out/conversation-*.json) again, run nothing")
    args = ap.parse_args()
    if args.rescore is not None:
        print(json.dumps(rescore(args.rescore), indent=2))
        return
    families = [f.strip() for f in args.voices.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown voice family {unknown[0]!r}: choose from {', '.join(FAMILIES)}")
    os.chdir(ROOT)
    cfg = load_config(None, args.overrides)
    print(json.dumps(run(cfg, families, args.rotate, args.limit, args.overrides), indent=2))


if __name__ == "__main__":
    main()

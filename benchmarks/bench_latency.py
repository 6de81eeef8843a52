"""Live latency and A/V sync of ``talk`` on the virtual device harness.

1. Voice-to-face latency: the real :class:`~avatar_agent.live.Conversation` (real mic
   and speaker streams, real window on Xvfb, the embedded models from the config) is
   asked 20 questions played into the virtual mic: by default the non-Piper fixture set
   (espeak-ng voices and speeds, quiet, loud and noisy; ``benchmarks/make_questions.py``),
   or Piper, or both in turn (``--voices``). Per turn: end of user speech → transcript,
   → first LLM token, → first clause, → its audio made, → first frame on screen, which
   the presenter shows when the speaker's clock reaches it: the first reply audio at the
   speaker (voice-to-face). Reported as p50/p95/max.
2. A/V offset over a 20 s reply: the avatar says a long text (TTS + lip-sync chunks
   queued as produced); for every frame shown, the audio clock minus the frame's
   scheduled time.

Uses the device harness in ``tests/harness`` (a private instance).
Run: ``python benchmarks/bench_latency.py [--turns N] [--reply-s S] [--voices V]`` or
``avatar-agent bench latency``.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import avdevices  # noqa: E402

QUESTIONS = [
    "What is the capital of France?", "How are you today?", "What color is the sky?",
    "Can you tell me a joke?", "What is two plus two?", "Where do penguins live?",
    "What is your name?", "Do you like music?", "How far away is the moon?",
    "What should I eat for lunch?", "Why is the sea salty?", "What time is it in Tokyo?",
    "Who wrote Romeo and Juliet?", "What is the biggest animal?", "How do birds fly?",
    "What is the weather like today?", "Can you help me with my homework?",
    "What is a black hole?", "How many legs does a spider have?", "What is your favorite book?",
    "Where is the Eiffel Tower?", "How do I make a cup of tea?",
]
LONG_TEXT = (
    "Once upon a time a small robot lived at the bottom of the sea. Every morning it "
    "cleaned the coral, counted the fish, and listened to the whales singing far away. "
    "One day it found a glowing shell that hummed a quiet song. The robot carried the "
    "shell through dark caves and across wide sandy plains, asking every creature it met "
    "where the song came from. The octopus did not know. The old turtle only smiled. At "
    "last a tiny seahorse told the robot that the shell belonged to the moon, which had "
    "dropped it long ago while looking at its own reflection on the waves. So the robot "
    "climbed the tallest rock, waited for the night, and held the shell up high. The moon "
    "leaned down, took its shell back, and in return it gave the robot a single beam of "
    "silver light, which shines on the sea floor to this day. And whenever the whales "
    "sing, the robot hums along, because now it knows the song by heart."
)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _abs_stats(name: str, values: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max of ``|values|``."""
    a = np.abs(values) if values else None
    return {f"{name}_p50_abs": None if a is None else round(float(np.median(a)), 2),
            f"{name}_p95_abs": None if a is None else round(float(np.percentile(a, 95)), 2),
            f"{name}_max_abs": None if a is None else round(float(a.max()), 2)}


async def _session(cfg, turns: int, reply_s: float, work: Path, voices: str = "piper") -> dict:
    from avatar_agent.audio.capture import MicCapture
    from avatar_agent.audio.io import write_wav
    from avatar_agent.audio.playback import Playback
    from avatar_agent.face.avatar import load_avatar_image
    from avatar_agent.live import Conversation
    from avatar_agent.models import ModelStore
    from avatar_agent.pipeline import Pipeline
    from avatar_agent.render.window import Presenter

    pipeline = Pipeline.from_config(cfg, ModelStore(progress=False))
    load_s = await asyncio.to_thread(pipeline.load)
    state = await pipeline.prepare_avatar(load_avatar_image(cfg))
    await pipeline.warm_up(state)  # as talk does
    mic = MicCapture(sample_rate=16000, block_ms=cfg.audio.block_ms, latency=cfg.audio.latency)
    pb = Playback(block_ms=cfg.audio.output_block_ms, latency=cfg.audio.latency)
    mic.start()
    pb.start()
    presenter = Presenter(clock=pb, idle_fn=lambda t: pipeline.engine.idle_frame(state, t),
                          fps=pipeline.engine.fps, title="avatar_bench")
    presenter.start()
    conv = Conversation(cfg=cfg, pipeline=pipeline, mic=mic, playback=pb, presenter=presenter,
                        avatar_state=state)
    runner = asyncio.create_task(conv.run())
    # who asks, turn by turn: the non-Piper fixture set (benchmarks/make_questions.py),
    # the answering Piper voice, or both in turn ("mixed")
    who = {"espeak": ["espeak"], "piper": ["piper"], "mixed": ["espeak", "piper"]}[voices]
    asks = [who[i % len(who)] for i in range(turns)]
    espeak = []
    if "espeak" in asks:
        from make_questions import fixture_set

        espeak = [pcm for _, pcm in fixture_set()]
    wavs = []
    for i, kind in enumerate(asks):
        k = asks[:i].count(kind)
        if kind == "espeak":
            wavs.append(write_wav(work / f"q{i}.wav", espeak[k % len(espeak)], 16000))
        else:  # made up front, not in turns
            pcm = [c.pcm async for c in pipeline.tts.synthesize(QUESTIONS[k % len(QUESTIONS)])]
            wavs.append(write_wav(work / f"q{i}.wav", np.concatenate(pcm), pipeline.tts_rate()))
    try:
        await asyncio.sleep(1.0)
        for i, wav in enumerate(wavs):
            player = await asyncio.create_subprocess_exec(*avdevices.play_cmd(wav))
            await player.wait()
            deadline = time.monotonic() + 120
            while len(conv.turns) <= i and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the conversation
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.8)  # past the echo tail and the VAD hangover
            if len(conv.turns) > i:
                m = conv.turns[i].metrics
                stages = " ".join(f"{k}={getattr(m, k):.3f}" for k in (
                    "stt_s", "first_token_s", "first_sentence_s", "first_audio_s") if getattr(m, k) is not None)
                print(f"turn {i + 1}/{len(wavs)}: voice-to-face {m.first_frame_s} s ({stages}; "
                      f"{conv.turns[i].user!r} -> {' '.join(p.chunk.text for p in conv.turns[i].played)[:80]!r})",
                      file=sys.stderr, flush=True)
        # the long reply: TTS + lip-sync chunks queued as they are produced
        conv.quit()
        await runner
        offsets, dropped, frames, t_first = [], 0, 0, None
        shows = []

        async def show(chunk) -> None:
            nonlocal frames
            if frames / pipeline.engine.fps >= reply_s:
                return  # long enough: the rest is not queued
            shows.append(presenter.play(chunk, pb.enqueue(chunk.audio, chunk.sample_rate)))
            frames += len(chunk.frames)

        await pipeline.say(LONG_TEXT + " " + LONG_TEXT, state, show)
        await asyncio.to_thread(shows[-1].done.wait, reply_s + 60)
        for s in shows:
            offsets += s.offsets_ms
            dropped += s.dropped
            t_first = t_first or s.first_shown_t
        reply_len = sum(len(s.chunk.audio) / s.chunk.sample_rate for s in shows)
    finally:
        if not runner.done():
            conv.quit()
            await runner
        mic.close()
        pb.close()
        presenter.stop()
        await pipeline.aclose()
    recs = [t for t in conv.turns if t.metrics.first_frame_s is not None and not t.interrupted]
    col = {k: [getattr(t.metrics, k) for t in recs if getattr(t.metrics, k) is not None]
           for k in ("stt_s", "first_token_s", "first_sentence_s", "first_audio_s", "first_frame_s")}
    # first reply frames rendered (before the speaker and the window): the rest of voice-to-face
    # is the speaker's queue and output latency
    col["frames_ready_s"] = [t.metrics.stages["lipsync_ready"] for t in recs if "lipsync_ready" in t.metrics.stages]
    # the transcript decoded (Moonshine: fed while spoken, decoded 100 ms into the pause)
    col["transcript_ready_s"] = [t.metrics.stages["transcript_ready"] for t in recs
                                 if "transcript_ready" in t.metrics.stages]
    abs_off = np.abs(offsets) if offsets else np.zeros(1)
    return {
        "turns": len(conv.turns), "answered": len(recs),
        "load_s": {k: round(v, 3) for k, v in load_s.items()},
        **{f"{k}_p50": _pct(v, 50) for k, v in col.items()},
        **{f"{k}_p95": _pct(v, 95) for k, v in col.items()},
        **{f"{k}_max": round(max(v), 3) if v else None for k, v in col.items()},
        "voice_to_face_s": [round(v, 3) for v in col["first_frame_s"]],
        # the reply's first frame on screen vs the audio clock at that moment (turn by turn)
        **_abs_stats("first_frame_av_offset_ms", [t.metrics.av_offsets_ms[0] for t in recs
                                                   if t.metrics.av_offsets_ms]),
        "frames_dropped_turns": sum(t.metrics.frames_dropped for t in recs),
        "mic_overflows": mic.overflows, "speaker_underflows": pb.underflows,
        "av_reply_s": round(reply_len, 1), "av_frames": frames, "av_dropped": dropped,
        "av_offset_ms_median": round(float(np.median(offsets)), 2) if offsets else None,
        "av_offset_ms_p95_abs": round(float(np.percentile(abs_off, 95)), 2),
        "av_offset_ms_max_abs": round(float(abs_off.max()), 2),
        "av_offset_ms_min": round(float(np.min(offsets)), 2) if offsets else None,
    }


def run(cfg, turns: int = 20, reply_s: float = 20.0, voices: str = "espeak") -> dict:
    """Run both measurements with ``cfg`` (the embedded stack by default); returns numbers."""
    avdevices.start()
    # the reply's length does not change the time to its first frame; short replies only
    # keep 20+ turns within minutes
    cfg.llm.max_tokens = min(cfg.llm.max_tokens, 40)
    sys.setswitchinterval(0.001)  # as talk does
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg.transcript.path = Path(tmp) / "bench.jsonl"
            result = asyncio.run(_session(cfg, turns, reply_s, Path(tmp), voices))
    finally:
        avdevices.stop()
    result.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  load_avg_1m=round(os.getloadavg()[0], 2),
                  llm_threads=cfg.llm.llama_cpp.n_threads,
                  machine=f"{platform.machine()}, {os.cpu_count()} cores",
                  stt=cfg.stt.provider, llm=f"{cfg.llm.provider}:{cfg.llm.llama_cpp.model}",
                  tts=cfg.tts.provider, lipsync=cfg.lipsync.engine, voices=voices)
    return result


def main() -> None:
    """CLI entry: prints the JSON result."""
    from avatar_agent.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--reply-s", type=float, default=20.0, help="length of the A/V sync reply")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--voices", choices=["espeak", "piper", "mixed"], default="espeak",
                    help="who asks: the espeak-ng fixture set (not Piper), the answering Piper "
                         "voice, or both in turn")
    args = ap.parse_args()
    os.chdir(ROOT)
    cfg = load_config(None, args.overrides)
    print(json.dumps(run(cfg, args.turns, args.reply_s, args.voices), indent=2))


if __name__ == "__main__":
    main()

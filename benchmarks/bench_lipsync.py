"""Benchmark the viseme lip-sync engine: frames/s on one core at 512² and 1080p, and a
contact sheet of speech and silence frames for a person to look at.

    .venv/bin/python benchmarks/bench_lipsync.py [--seconds 10] [--out benchmarks/out]

The wav2lip engine has its own benchmark (``benchmarks/bench_wav2lip.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
TEXT = ("Hello! I am the avatar of this project. My mouth follows the sound of my voice, "
        "and it rests when I am quiet. Shall we talk about the weather, or about you?")


def _speech(cfg) -> np.ndarray:
    """Real speech from the bundled Piper voice, at 16 kHz, with a second of silence after."""
    from piper import PiperVoice

    from avatar_agent.audio.io import resample
    from avatar_agent.models import ModelStore

    voice = PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")))
    pcm = np.concatenate([c.audio_float_array for c in voice.synthesize(TEXT)]).astype(np.float32)
    pcm = resample(pcm, voice.config.sample_rate, SR)
    return np.concatenate([np.zeros(SR // 2, np.float32), pcm, np.zeros(SR, np.float32)])


def _portraits() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "examples"))
    from make_assets import portrait

    hopper = portrait("hopper")
    scale = 1080 / hopper.shape[0]
    big = cv2.resize(hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros((1080, 1920, 3), np.uint8)  # a landscape 1080p frame, face in the middle
    x0 = (1920 - big.shape[1]) // 2
    canvas[:, x0:x0 + big.shape[1]] = big
    return {"astronaut_512": portrait("astronaut"), "hopper_1080p": canvas}


def _sheet(frames: np.ndarray, opens: np.ndarray, box: tuple[int, int, int, int], path: Path) -> None:
    """Face crops of the 6 most open frames and 3 silent ones, labelled, in one PNG."""
    x1, y1, x2, y2 = box
    talk = np.argsort(-opens)[:6]
    talk = np.sort(talk)
    quiet = np.nonzero(opens == 0)[0]
    picks = list(talk) + list(quiet[np.linspace(0, len(quiet) - 1, 3).astype(int)] if len(quiet) else [])
    tiles = []
    for k in picks:
        tile = cv2.resize(frames[k][y1:y2, x1:x2], (256, 256 * (y2 - y1) // max(x2 - x1, 1)))
        label = f"#{k} open {opens[k]:.2f}" if opens[k] > 0 else f"#{k} silence"
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(tiles, axis=1))


def run(cfg, *, out_dir: Path | None = None, repeats: int = 3) -> dict:
    """Viseme frames/s on one core (render and idle) per portrait size; writes contact sheets."""
    from avatar_agent.lipsync.viseme import VisemeEngine
    from avatar_agent.models import ModelStore

    cv2.setNumThreads(1)  # "one core": OpenCV would otherwise spread remap over all cores
    out_dir = Path(out_dir) if out_dir is not None else ROOT / "benchmarks" / "out"
    cfg = cfg.model_copy(deep=True)
    cfg.lipsync.blink = True
    cfg.lipsync.head_motion = False
    pcm = _speech(cfg)
    results: dict = {"audio_s": round(len(pcm) / SR, 2), "threads": 1}
    for name, image in _portraits().items():
        engine = VisemeEngine(cfg=cfg, store=ModelStore(progress=False))
        t0 = time.perf_counter()
        state = engine.prepare(image)
        prepare_s = time.perf_counter() - t0
        best = np.inf
        for _ in range(repeats):
            engine.reset(state)
            t0 = time.perf_counter()
            frames = engine.render(state, pcm, SR)
            best = min(best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_idle = 250
        for k in range(n_idle):
            engine.idle(state, k / engine.fps)
        idle_s = time.perf_counter() - t0
        engine.reset(state)
        opens = state.mouth.step(pcm, SR).open
        x1, y1, x2, y2 = (int(v) for v in state.face.box)
        pad = (x2 - x1) // 3
        box = (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, image.shape[1]), min(y2 + pad, image.shape[0]))
        _sheet(frames, opens, box, out_dir / f"viseme_sheet_{name}.png")
        results[name] = {
            "size": f"{image.shape[1]}x{image.shape[0]}",
            "frames": len(frames),
            "render_fps": round(len(frames) / best, 1),
            "ms_per_frame": round(1000 * best / len(frames), 2),
            "idle_fps": round(n_idle / idle_s, 1),
            "prepare_s": round(prepare_s, 3),
            "speaking_frames": int((opens > 0).sum()),
        }
    return results


def main() -> None:
    """Print the results as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from avatar_agent.config import Config

    print(json.dumps(run(Config(), out_dir=args.out, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()

"""Benchmark the viseme lip-sync engine: frames/s on one core at 512² and 1080p, and a
contact sheet of speech and silence frames for a person to look at.

    .venv/bin/python benchmarks/bench_lipsync.py [--repeats 3] [--out benchmarks/out]
    .venv/bin/python benchmarks/bench_lipsync.py --sheet docs/visemes.png   # one crop per viseme class
    .venv/bin/python benchmarks/bench_lipsync.py --quality   # lag, r, open/closed, PSNR on the mp4

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


def _speech(cfg) -> tuple[np.ndarray, tuple]:
    """Real speech from the bundled Piper voice (noise off) at 16 kHz, with half a second of
    silence before and a second after, and its phoneme timings (s, as the TTS sends them)."""
    from piper import PiperVoice, SynthesisConfig

    from avatar_agent.audio.io import resample
    from avatar_agent.models import ModelStore
    from avatar_agent.tts.piper import _timings
    from avatar_agent.types import PhonemeTiming

    voice = PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")), include_alignments=True)
    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    parts, phonemes, t = [np.zeros(SR // 2, np.float32)], [], 0.5
    for chunk in voice.synthesize(TEXT, syn_config=syn, include_alignments=True):
        phonemes += [PhonemeTiming(p.phoneme, p.start + t, p.end + t) for p in _timings(chunk) or ()]
        parts.append(resample(chunk.audio_float_array.astype(np.float32), chunk.sample_rate, SR))
        t += len(parts[-1]) / SR
    parts.append(np.zeros(SR, np.float32))
    return np.concatenate(parts), tuple(phonemes)


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
    pcm, phonemes = _speech(cfg)
    results: dict = {"audio_s": round(len(pcm) / SR, 2), "threads": 1, "phonemes": len(phonemes)}
    for name, image in _portraits().items():
        engine = VisemeEngine(cfg=cfg, store=ModelStore(progress=False))
        t0 = time.perf_counter()
        state = engine.prepare(image)
        prepare_s = time.perf_counter() - t0
        best = np.inf
        for _ in range(repeats):
            engine.reset(state)
            t0 = time.perf_counter()
            frames = engine.render(state, pcm, SR, phonemes)  # shapes from the timings
            best = min(best, time.perf_counter() - t0)
        # no timings (OpenAI/Coqui TTS, a wav): the audio viseme model shapes the lips
        best_audio = np.inf
        for _ in range(repeats if state.mouth.model is not None else 0):
            engine.reset(state)
            t0 = time.perf_counter()
            engine.render(state, pcm, SR)
            best_audio = min(best_audio, time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_idle = 250
        for k in range(n_idle):
            engine.idle(state, k / engine.fps)
        idle_s = time.perf_counter() - t0
        engine.reset(state)
        opens = state.mouth.step(pcm, SR, phonemes).open
        x1, y1, x2, y2 = (int(v) for v in state.face.box)
        pad = (x2 - x1) // 3
        box = (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, image.shape[1]), min(y2 + pad, image.shape[0]))
        _sheet(frames, opens, box, out_dir / f"viseme_sheet_{name}.png")
        results[name] = {
            "size": f"{image.shape[1]}x{image.shape[0]}",
            "frames": len(frames),
            "render_fps": round(len(frames) / best, 1),
            "ms_per_frame": round(1000 * best / len(frames), 2),
            "render_fps_audio_model": (round(len(frames) / best_audio, 1)
                                       if np.isfinite(best_audio) else None),
            "idle_fps": round(n_idle / idle_s, 1),
            "prepare_s": round(prepare_s, 3),
            "speaking_frames": int((opens > 0).sum()),
        }
    return results


def viseme_sheet(path: Path, level: float = 0.8, tile: int = 120) -> Path:
    """One mouth crop per viseme class (rest, M B P, F V, O U W, E I, A) on both portraits,
    drawn with the shape the engine gives that class's sound held at ``level`` loudness
    (0..1): the committed ``docs/visemes.png``."""
    from avatar_agent.config import Config
    from avatar_agent.face.analyzer import FaceAnalyzer
    from avatar_agent.lipsync.mouth import VISEMES, _shape
    from avatar_agent.lipsync.warp import FaceWarp
    from avatar_agent.models import ModelStore
    from avatar_agent.types import PhonemeTiming

    analyzer = FaceAnalyzer(cfg=Config(), store=ModelStore(progress=False))
    rows = []
    sys.path.insert(0, str(ROOT / "examples"))
    from make_assets import portrait

    for which in ("astronaut", "hopper"):
        image = portrait(which)
        face = analyzer.analyze(image)
        warp = FaceWarp(image, face)
        cx, cy = (float(c) for c in warp.centre)
        iod = warp.iod
        x1, x2 = int(cx - 0.75 * iod), int(cx + 0.75 * iod)
        y1, y2 = int(cy - 0.5 * iod), int(cy + 0.75 * iod)
        tiles = []
        for name, sym in VISEMES.items():
            frame = image.copy()
            if sym:
                opened, (rounding, wide, bite) = _shape(level, 0.5, (PhonemeTiming(sym, 0.0, 1.0),))
                warp.mouth(frame, float(opened), float(rounding), True, float(wide), float(bite))
            crop = frame[max(y1, 0):y2, max(x1, 0):x2]
            t = cv2.resize(crop, (tile, round(tile * crop.shape[0] / crop.shape[1])), interpolation=cv2.INTER_AREA)
            band = np.full((18, tile, 3), 255, np.uint8)
            cv2.putText(band, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(np.concatenate([band, t]))
        height = min(t.shape[0] for t in tiles)
        rows.append(np.concatenate([t[:height] for t in tiles], axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


QUALITY_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs away.",
                "Speech is made of syllables. Each one opens the mouth a little, then closes it again.",
                "Maybe my mother will bake bread for everyone who visits on Friday.")


def _voice_pcm(voice: str, text: str) -> np.ndarray:
    """Speech at 16 kHz: ``piper`` (noise off) or ``espeak-ng:VOICE:SPEED``."""
    import io
    import subprocess
    import wave

    from avatar_agent.audio.io import resample

    if voice == "piper":
        from piper import PiperVoice, SynthesisConfig

        from avatar_agent.models import ModelStore

        v = PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")))
        syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        pcm = np.concatenate([c.audio_float_array for c in v.synthesize(text, syn)])
        return resample(pcm.astype(np.float32), v.config.sample_rate, SR)
    _, name, speed = voice.split(":")
    out = subprocess.run(["espeak-ng", "-v", name, "-s", speed, "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    return resample(pcm, rate, SR)


def quality(voices=("piper", "espeak-ng:en-us:150", "espeak-ng:en-gb+f3:170"),
            portraits=("astronaut", "hopper")) -> dict:
    """Timing and picture quality as the tests measure them, on the mp4 ``render`` writes
    (2 s chunks, the config's ``output.*``), decoded with PyAV: the face mesh re-detects the
    inner-lip gap; lag/r against the per-frame speech envelope; voiced frames (> -35 dBFS)
    open by > 0.03 inter-ocular; silent frames (< -50 dBFS for 5 frames) within 0.025 of
    the photo; median PSNR outside the lower-face box vs the photo."""
    import tempfile

    import av

    from avatar_agent.config import Config
    from avatar_agent.face.analyzer import FaceAnalyzer, FaceLandmarks
    from avatar_agent.face.mesh import roi_from_landmarks
    from avatar_agent.lipsync.viseme import VisemeEngine
    from avatar_agent.models import ModelStore
    from avatar_agent.render.mp4 import Mp4Writer

    sys.path.insert(0, str(ROOT / "examples"))
    from make_assets import portrait

    store = ModelStore(progress=False)
    cfg = Config(lipsync={"blink": False, "head_motion": False}, face={"cache": False})
    analyzer = FaceAnalyzer(cfg=cfg, store=store)
    hop, fps = SR // 25, 25
    results: dict = {}
    for which in portraits:
        image = portrait(which)
        image = image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2]
        rest = analyzer.analyze(image)
        roi = roi_from_landmarks(rest.points)

        def aperture(frame, rest=rest, roi=roi):
            return FaceLandmarks(analyzer.landmarks(frame, roi)[0], rest.box, 1.0).mouth_aperture()

        photo = aperture(image)
        x1, y1, x2, y2 = rest.lower_face_box()
        outside = np.ones(image.shape[:2], bool)
        outside[max(y1, 0):y2, max(x1, 0):x2] = False
        for voice in voices:
            pause = np.zeros(SR // 2, np.float32)
            pcm = np.concatenate([pause] + [x for t in QUALITY_TEXT for x in (_voice_pcm(voice, t), pause)])
            engine = VisemeEngine(cfg=cfg, store=store)
            state = engine.prepare(image)
            frames = np.concatenate([engine.render(state, pcm[s:s + 2 * SR], SR) for s in range(0, len(pcm), 2 * SR)])
            path = Path(tempfile.mkdtemp()) / "q.mp4"
            o = cfg.output
            with Mp4Writer(path, fps=fps, sample_rate=SR, crf=o.crf, preset=o.preset, pix_fmt=o.pix_fmt) as w:
                w.add_frames(frames)
                w.add_audio(pcm, SR)
            with av.open(str(path)) as c:
                decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
            ap = np.array([aperture(f) for f in decoded])
            env = np.array([np.sqrt(np.mean(pcm[k * hop:(k + 1) * hop] ** 2)) if k * hop < len(pcm) else 0.0
                            for k in range(len(ap))])
            rs = {lag: round(float(np.corrcoef(ap[max(lag, 0):len(ap) + min(lag, 0)],
                                               env[max(-lag, 0):len(env) + min(-lag, 0)])[0, 1]), 3)
                  for lag in range(-3, 4)}
            voiced = env > 10 ** (-35 / 20)
            quiet = env < 10 ** (-50 / 20)
            padded = np.concatenate([[True] * 3, quiet, [True]])
            silent = np.all([padded[i:i + len(quiet)] for i in range(5)], axis=0)
            psnr = [10 * np.log10(255.0**2 / max(np.mean((f[outside].astype(np.float64) - image[outside]) ** 2), 1e-9))
                    for f in decoded]
            results[f"{which}/{voice}"] = {
                "best_lag": max(rs, key=rs.get), "r": rs,
                "voiced_open": round(float(np.mean(ap[voiced] - photo > 0.03)), 3),
                "silent_closed": round(float(np.mean(np.abs(ap[silent] - photo) <= 0.025)), 3),
                "psnr_outside_db": round(float(np.median(psnr)), 2), "frames": len(decoded),
            }
            print(which, voice, results[f"{which}/{voice}"], file=sys.stderr, flush=True)
    return results


def main() -> None:
    """Print the results as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sheet", type=Path, default=None,
                    help="only write the viseme contact sheet here (e.g. docs/visemes.png)")
    ap.add_argument("--quality", action="store_true",
                    help="only measure timing and picture quality on render's mp4 (as the tests do)")
    args = ap.parse_args()
    from avatar_agent.config import Config

    if args.quality:
        print(json.dumps(quality(), indent=2))
        return
    if args.sheet is not None:
        print(viseme_sheet(args.sheet))
        return
    print(json.dumps(run(Config(), out_dir=args.out, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()

"""``train-visemes``: train the audio -> viseme-class model the viseme engine uses when the
TTS gives no phoneme timings, export it to ONNX, and evaluate it on held-out voices.

Data: varied English sentences (a seeded template grammar) spoken by the project's Piper
voice at several length/noise settings (onnxruntime seeded, so the noise repeats), at
16 or 22.05 kHz, at a random gain, with pauses around them. Labels: the viseme class
(``mouth.viseme_class``, the mapping the MouthTracker draws with) of the sound under each
frame's instant + ``PHONEME_LEAD_S``, from Piper's phoneme timings. Features:
``audio_visemes.features`` (what the engine computes at run time). Network: three
dilated 1D convolutions over the 24 mel frames and two dense layers (about 74 k weights),
trained with PyTorch (one thread, deterministic algorithms, seeded) and written to ONNX
with the onnx helper (no exporter variance), so the same command and seed give the same
file bit for bit. Evaluation: espeak-ng voices (never trained on) with espeak's own
phoneme timings, against the best loudness-only predictor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.io import resample
from ..errors import InputError, MissingExtraError
from ..lipsync.audio_visemes import MODEL_PATH, N_CTX, N_MELS, VisemeModel, features
from ..lipsync.mouth import (
    PHONEME_LEAD_S,
    VISEME_CLASSES,
    MouthTracker,
    clean_phonemes,
    viseme_class,
)
from ..types import PhonemeTiming

log = logging.getLogger(__name__)
FPS = 25.0
HIDDEN = 64
EVAL_VOICES = ("en-us", "en-us+f3", "en-gb-x-rp")
EVAL_SPEEDS = (140, 175, 210)
# espeak-ng voices for training: other accents and variants than the evaluation's (never
# en-us, British English (en-gb, en-gb-x-rp) or the f3 variant)
TRAIN_ESPEAK = ("en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("", "+m1", "+m4", "+f1", "+f4", "+f5")
# held-out text (never produced by the training grammar): Harvard sentences and others
EVAL_SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "Who would move a movie to Friday?",
    "Maybe my mother will bake bread for everyone who visits.",
    "We view the blue moon through a few old woods.",
    "Pick a fresh peach, please, and feed the sheep.",
)

# ------------------------------------------------------------------ training text
_NAMES = ["Mary", "Bob", "Peter", "Fiona", "Victor", "Uma", "Owen", "Eve", "Walter", "Zoe", "Maya",
          "Paul", "Ruth", "George", "Irene", "Bill", "Amy", "Theo", "Judy", "Leo", "Nora", "Sam"]
_NOUNS = ["apple", "boat", "moon", "fish", "violin", "window", "pebble", "map", "shoe", "river",
          "beam", "forest", "mouth", "bubble", "feather", "valley", "pump", "wheel", "cheese",
          "garden", "blue book", "rope", "phone", "balloon", "mirror", "puppy", "loop", "office",
          "bottle", "frog", "village", "tooth", "cup", "key", "wave", "harbor", "puzzle", "vase",
          "umbrella", "fountain", "pillow", "mop", "tree", "smooth stone", "knife", "bridge", "goose"]
_ADJS = ["big", "blue", "happy", "smooth", "famous", "purple", "empty", "tiny", "heavy", "cool",
         "bright", "humble", "fuzzy", "warm", "brave", "old", "pale", "deep", "cheap", "rough"]
_VERBS = ["moved", "found", "pushed", "bought", "painted", "fixed", "opened", "carried", "weighed",
          "viewed", "wiped", "loved", "shaped", "washed", "measured", "put away", "brought", "fed",
          "approved", "mopped", "peeled", "folded", "improved", "bumped", "shook", "chose"]
_PLACES = ["by the pool", "in the morning", "before noon", "over the bay", "at the museum",
           "near the market", "every Friday", "with a smile", "under the bridge", "for the team",
           "in the blue room", "after the movie", "on the beach", "from the roof", "at home"]
_TEMPLATES = [
    "{name} {verb} the {adj} {noun} {place}.",
    "Why did {name} {verb2} the {noun}?",
    "The {adj} {noun} was {verb} by {name} {place}.",
    "Please {verb2} my {noun}, {name}, and bring a {adj} {noun2}.",
    "{name} and {name2} {verb} a {noun} {place}, then {verb3} the {noun2}.",
    "Oh, what a {adj} {noun}!",
    "Maybe we should {verb2} the {adj} {noun} {place}.",
    "If {name} {verb} the {noun}, we will move the {noun2} too.",
    "Who {verb} {num} {noun}s {place}?",
    "I think the {noun} is {adj}, but the {noun2} is {adj2}.",
    "Yes, {name}, you may {verb2} it {place}.",
    "Look! {name} {verb} a {adj} {noun}.",
]
_BASE = {"moved": "move", "found": "find", "pushed": "push", "bought": "buy", "painted": "paint",
         "fixed": "fix", "opened": "open", "carried": "carry", "weighed": "weigh", "viewed": "view",
         "wiped": "wipe", "loved": "love", "shaped": "shape", "washed": "wash", "measured": "measure",
         "put away": "put away", "brought": "bring", "fed": "feed", "approved": "approve",
         "mopped": "mop", "peeled": "peel", "folded": "fold", "improved": "improve",
         "bumped": "bump", "shook": "shake", "chose": "choose"}
_NUMS = ["two", "three", "five", "seven", "twelve", "fifty", "ninety", "a few", "some"]


def training_sentences(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` varied English sentences from the template grammar (seeded)."""
    def pick(words):
        return words[int(rng.integers(len(words)))]

    out = []
    for _ in range(n):
        template = pick(_TEMPLATES)
        out.append(template.format(
            name=pick(_NAMES), name2=pick(_NAMES), noun=pick(_NOUNS), noun2=pick(_NOUNS),
            adj=pick(_ADJS), adj2=pick(_ADJS), verb=pick(_VERBS), verb2=_BASE[pick(_VERBS)],
            verb3=pick(_VERBS), place=pick(_PLACES), num=pick(_NUMS)))
    return out


# ------------------------------------------------------------------ data
@dataclass
class Utterance:
    """Speech with its phoneme timings (s)."""

    pcm: np.ndarray
    sr: int
    phonemes: tuple[PhonemeTiming, ...]


def piper_corpus(minutes: float, seed: int) -> list[Utterance]:
    """About ``minutes`` of Piper speech (varied settings), deterministic for ``seed``."""
    import onnxruntime as ort

    ort.set_seed(seed)  # Piper's noise is drawn inside the ONNX graph: seed it before loading
    from piper import PiperVoice, SynthesisConfig

    from ..models import ModelStore
    from ..tts.piper import _timings

    voice = PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")),
                            include_alignments=True)
    rng = np.random.default_rng(seed)
    settings = [(ls, ns, nw) for ls in (0.8, 1.0, 1.25) for ns, nw in ((0.333, 0.4), (0.667, 0.8), (0.9, 1.0))]
    out: list[Utterance] = []
    total = 0.0
    while total < minutes * 60:
        text = training_sentences(rng, 1)[0]
        ls, ns, nw = settings[int(rng.integers(len(settings)))]
        syn = SynthesisConfig(length_scale=ls, noise_scale=ns, noise_w_scale=nw)
        pcm, phon, t = [], [], 0.0
        rate = 22050
        for chunk in voice.synthesize(text, syn_config=syn, include_alignments=True):
            rate = chunk.sample_rate
            phon += [PhonemeTiming(p.phoneme, p.start + t, p.end + t) for p in _timings(chunk) or ()]
            pcm.append(chunk.audio_float_array.astype(np.float32))
            t += len(pcm[-1]) / rate
        if not pcm or not phon:
            continue
        out.append(_vary(np.concatenate(pcm), rate, phon, rng))
        total += len(out[-1].pcm) / out[-1].sr
    return out


def _vary(audio: np.ndarray, rate: int, phon, rng: np.random.Generator) -> Utterance:
    """A voice's vocal tract imitated longer or shorter by playing it slower or faster
    (formants, pitch and durations all scale by alpha: vocal tract length perturbation),
    then the variety a user's audio has: 16 or 22.05 kHz, spectral tilt, level, pauses
    around the speech, sometimes a little noise."""
    alpha = float(rng.uniform(0.82, 1.25))
    sr = int(rng.choice([16000, 22050]))
    audio = resample(audio.astype(np.float32), int(round(rate * alpha)), sr)
    tilt = float(rng.uniform(-0.4, 0.6))
    audio = (audio - tilt * np.concatenate([[0.0], audio[:-1]])).astype(np.float32)
    gain = 10 ** (rng.uniform(-14.0, 2.0) / 20) / max(float(np.abs(audio).max()), 1e-3) * 0.5
    pre, post = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
    audio = np.concatenate([np.zeros(int(pre * sr), np.float32), audio * gain,
                            np.zeros(int(post * sr), np.float32)]).astype(np.float32)
    if rng.random() < 0.5:
        audio += (rng.standard_normal(len(audio)) * 10 ** (rng.uniform(-90, -55) / 20)).astype(np.float32)
    phon = [PhonemeTiming(p.phoneme, p.start / alpha + pre, p.end / alpha + pre) for p in phon]
    return Utterance(audio, sr, tuple(phon))


def espeak_corpus(minutes: float, seed: int) -> list[Utterance]:
    """About ``minutes`` of espeak-ng speech from voices the evaluation never uses (other
    accents and voice variants), with espeak's own phoneme timings; deterministic."""
    from .espeak import espeak_speech

    rng = np.random.default_rng(seed + 1)
    out: list[Utterance] = []
    total = 0.0
    while total < minutes * 60:
        text = training_sentences(rng, 1)[0]
        voice = TRAIN_ESPEAK[int(rng.integers(len(TRAIN_ESPEAK)))]
        variant = TRAIN_VARIANTS[int(rng.integers(len(TRAIN_VARIANTS)))]
        pcm, rate, phon = espeak_speech(text, voice + variant, int(rng.integers(130, 221)))
        if len(pcm) and phon:
            out.append(_vary(pcm, rate, phon, rng))
            total += len(out[-1].pcm) / out[-1].sr
    return out


def frame_table(u: Utterance, step: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames every ``step`` video frames (at ``FPS``): their audio end (samples, as the
    engine's loudness window), viseme label and loudness (dBFS) as the engine sees it."""
    tracker = MouthTracker(fps=FPS)
    sounds = clean_phonemes(u.phonemes)
    starts = np.array([p.start for p in sounds])
    n = int(len(u.pcm) * FPS / u.sr)
    ks = np.arange(0.0, n, step)
    ends, labels, levels = [], [], []
    x = u.pcm.astype(np.float64)
    for k in ks:
        a, b = tracker._window(k, u.sr)
        end = tracker._model_end(k, u.sr)
        if max(b, end) > len(u.pcm):
            break
        t = k / FPS + PHONEME_LEAD_S
        i = int(np.searchsorted(starts, t, side="right")) - 1
        label = viseme_class(sounds[i].phoneme) if i >= 0 and t < sounds[i].end else 0
        seg = x[max(a, 0):b]
        levels.append(10 * np.log10(max(float(np.sum(seg ** 2)) / max(b - a, 1), 1e-12)))
        ends.append(end)
        labels.append(label)
    return np.array(ends, np.int64), np.array(labels, np.int64), np.array(levels, np.float32)


def dataset(utts: list[Utterance], step: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and loudness of every frame of ``utts``."""
    xs, ys, ls = [], [], []
    for u in utts:
        ends, labels, levels = frame_table(u, step)
        xs.append(features(u.pcm, 0, ends, u.sr))
        ys.append(labels)
        ls.append(levels)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ls)


def espeak_set(voice: str, speed: int, sr: int = 16000) -> list[Utterance]:
    """The held-out sentences spoken by espeak-ng (``voice``, ``speed`` wpm) at ``sr``."""
    from .espeak import espeak_speech

    out = []
    for text in EVAL_SENTENCES:
        pcm, rate, phon = espeak_speech(text, voice, speed)
        out.append(Utterance(resample(pcm, rate, sr) if rate != sr else pcm, sr, phon))
    return out


# ------------------------------------------------------------------ baseline and scores
def loudness_baseline(levels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The best any loudness-only predictor does on these frames: each 1 dB loudness bin
    predicts its own most frequent class *in this very data* (an oracle upper bound)."""
    bins = np.clip(np.floor(levels), -120, 0).astype(np.int64) + 120
    table = np.zeros((121, len(VISEME_CLASSES)), np.int64)
    np.add.at(table, (bins, labels), 1)
    return table.argmax(1)[bins]


def scores(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Frame accuracy and per-class recall."""
    per = {name: round(float(np.mean(pred[labels == c] == c)), 3)
           for c, name in enumerate(VISEME_CLASSES) if np.any(labels == c)}
    return {"accuracy": round(float(np.mean(pred == labels)), 4), "recall": per}


def evaluate(model_path: Path, voices=EVAL_VOICES, speeds=EVAL_SPEEDS) -> dict:
    """Model vs loudness-only baseline on espeak-ng voices (never trained on)."""
    model = VisemeModel(model_path)
    out = {}
    for voice in voices:
        for speed in speeds:
            x, y, lv = dataset(espeak_set(voice, speed))
            pred = model.probs(x).argmax(1)
            out[f"{voice}@{speed}"] = {"frames": int(len(y)), "model": scores(pred, y),
                                       "baseline": scores(loudness_baseline(lv, y), y)}
    return out


def speed_ms_per_s(model_path: Path, seconds: float = 20.0) -> float:
    """Features + inference, ms per second of 16 kHz audio, one-second chunks, one thread."""
    model = VisemeModel(model_path)
    sr = 16000
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * sr)) * 0.05).astype(np.float32)
    tracker = MouthTracker(fps=FPS)
    ks = np.arange(int(seconds * FPS) - 3)
    ends = np.array([tracker._model_end(k, sr) for k in ks])
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for s in range(0, len(ks), int(FPS)):
            e = ends[s:s + int(FPS)]
            model.probs(features(audio, 0, e, sr))
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / seconds


# ------------------------------------------------------------------ network
def _torch():
    try:
        import torch
    except ImportError:
        raise MissingExtraError("train-visemes", "convert", "torch") from None
    try:
        import onnx  # noqa: F401 - checked before the long data generation
    except ImportError:
        raise MissingExtraError("train-visemes", "convert", "onnx") from None
    return torch


def _net(torch, n_classes: int):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv1d(N_MELS, HIDDEN, 3), nn.ReLU(),
        nn.Conv1d(HIDDEN, HIDDEN, 3, dilation=2), nn.ReLU(),
        nn.Conv1d(HIDDEN, HIDDEN, 3, dilation=4), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(HIDDEN * (N_CTX - 14), HIDDEN), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(HIDDEN, n_classes))


def write_onnx(net, mean: np.ndarray, std: np.ndarray, path: Path) -> None:
    """The trained network as a plain ONNX graph (normalisation, convs, dense, softmax)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise MissingExtraError("train-visemes", "convert", "onnx") from None

    layers = [m for m in net if hasattr(m, "weight")]
    inits = [numpy_helper.from_array(mean.reshape(-1, 1).astype(np.float32), "mean"),
             numpy_helper.from_array((1.0 / std).reshape(-1, 1).astype(np.float32), "inv_std")]
    nodes = [helper.make_node("Transpose", ["mel"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Sub", ["t", "mean"], ["c"]),
             helper.make_node("Mul", ["c", "inv_std"], ["h0"])]
    h = "h0"
    for i, layer in enumerate(layers):
        w = layer.weight.detach().numpy().astype(np.float32)
        b = layer.bias.detach().numpy().astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        if w.ndim == 3:
            nodes.append(helper.make_node("Conv", [h, f"w{i}", f"b{i}"], [f"z{i}"], kernel_shape=[3],
                                          dilations=[int(layer.dilation[0])]))
        else:
            if i == 3:  # the first dense layer reads the flattened (channels, time) map
                nodes.append(helper.make_node("Flatten", [h], ["flat"], axis=1))
                h = "flat"
            nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [f"z{i}"], transB=1))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i}"]))
            h = f"a{i}"
        else:
            nodes.append(helper.make_node("Softmax", [f"z{i}"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "visemes",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", N_CTX, N_MELS])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(VISEME_CLASSES)])],
        inits)
    graph.doc_string = "mel: (batch, 24 frames, 40 bands) dB; probs: " + ", ".join(VISEME_CLASSES)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="avatar_agent train-visemes")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def train(out: Path = MODEL_PATH, *, seed: int = 0, minutes: float = 20.0, epochs: int = 20,
          espeak_share: float = 0.3, evaluate_voices: bool = True, report: Path | None = None) -> dict:
    """Generate data, train, export ``out`` (ONNX) and evaluate; returns the report."""
    torch = _torch()
    if minutes <= 0 or epochs <= 0 or not 0 <= espeak_share < 1:
        raise InputError("--minutes and --epochs must be positive, --espeak-share in [0, 1)")
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    utts = piper_corpus(minutes * (1 - espeak_share), seed)
    n_val = max(1, len(utts) // 10) if len(utts) > 1 else 0
    train_u, val_u = utts[n_val:], utts[:n_val]  # validation: Piper sentences not trained on
    extra = espeak_corpus(minutes * espeak_share, seed) if espeak_share > 0 else []
    train_u = train_u + extra
    x, y, _ = dataset(train_u, step=0.5)  # two frames per video frame: more, shifted examples
    xv, yv, lv = dataset(val_u) if val_u else (x[:0], y[:0], np.zeros(0, np.float32))
    t_data = time.perf_counter() - t0
    mean = x.astype(np.float64).mean((0, 1)).astype(np.float32)
    std = (x.astype(np.float64).std((0, 1)) + 1e-3).astype(np.float32)
    net = _net(torch, len(VISEME_CLASSES))
    xt = torch.from_numpy((x - mean) / std).transpose(1, 2).contiguous()
    yt = torch.from_numpy(y)
    xvt = torch.from_numpy((xv - mean) / std).transpose(1, 2).contiguous()
    yvt = torch.from_numpy(yv)
    batch = 256
    steps = epochs * max(1, (len(xt) + batch - 1) // batch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(xt), batch):
            idx = order[s:s + batch]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.no_grad():
            vl = float(loss_fn(net(xvt), yvt)) if len(xvt) else float("nan")
            va = float((net(xvt).argmax(1) == yvt).float().mean()) if len(xvt) else float("nan")
        curve.append({"epoch": epoch + 1, "train_loss": round(total / len(xt), 4),
                      "val_loss": round(vl, 4), "val_acc": round(va, 4)})
        log.info("epoch", extra=curve[-1])
    t_train = time.perf_counter() - t0 - t_data
    out = Path(out)
    write_onnx(net, mean, std, out)
    # the exported graph must compute what torch computed
    check = VisemeModel(out).probs(xv[:256] if len(xv) else x[:256])
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(((xv[:256] if len(xv) else x[:256]) - mean) / std)
                                .transpose(1, 2).contiguous()), 1).numpy()
    result = {
        "model": str(out), "bytes": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "seed": seed, "minutes": minutes, "epochs": epochs,
        "espeak_share": espeak_share, "utterances": len(utts) + len(extra), "train_frames": int(len(y)), "val_frames": int(len(yv)),
        "audio_s": round(sum(len(u.pcm) / u.sr for u in utts + extra), 1),
        "class_share": {n: round(float(np.mean(y == c)), 3) for c, n in enumerate(VISEME_CLASSES)},
        "data_s": round(t_data, 1), "train_s": round(t_train, 1),
        "onnx_vs_torch_max_diff": float(np.abs(check - ref).max()),
        "curve": curve,
    }
    if len(yv):
        pv = VisemeModel(out).probs(xv).argmax(1)
        result["piper_val"] = {"model": scores(pv, yv), "baseline": scores(loudness_baseline(lv, yv), yv)}
    if evaluate_voices:
        result["ms_per_s_audio"] = round(speed_ms_per_s(out), 2)
        result["espeak"] = evaluate(out)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1) + "\n")
    return result

"""One real offline turn end to end: question wav -> STT -> LLM -> TTS -> viseme -> mp4.

Uses the real bundled models (faster-whisper tiny.en, SmolLM2 GGUF, Piper joe, MediaPipe
face) on the generated example assets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avatar_agent.config import load_config
from avatar_agent.render.mp4 import probe
from avatar_agent.reply import reply_async

ROOT = Path(__file__).resolve().parent.parent
QUESTION = ROOT / "examples" / "assets" / "question.wav"
# Grace Hopper: closed lips in the photo, so "closed" is unambiguous for the face mesh
# (the astronaut smiles with teeth showing; through H.264 her mesh gap wanders by ~0.03)
FACE = ROOT / "examples" / "assets" / "hopper.png"


@pytest.fixture(scope="module")
def turn(tmp_path_factory, store):
    tmp = tmp_path_factory.mktemp("reply")
    # blinks off: they move eye landmarks, which the aperture is normalised by
    cfg = load_config(None, [f"transcript.path={tmp / 't.jsonl'}", f"avatar.image={FACE}",
                             "lipsync.blink=false"])
    out = tmp / "reply.mp4"
    result = asyncio.run(reply_async(cfg, QUESTION, out, store=store))
    return result, out, tmp / "t.jsonl"


def _decode(path: Path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, pcm, rate


def test_transcript_and_reply(turn):
    result, _, jsonl = turn
    words = result.transcript.text.lower().replace("!", "").replace("?", "").replace(",", "").split()
    assert words == ["hello", "what", "is", "the", "capital", "of", "france"]
    assert len(result.reply_text.split()) >= 2
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records[-1]["user"] == result.transcript.text
    assert records[-1]["assistant"] == result.reply_text
    # the turn's timings, all from the end of the question, in the order the stages run
    m = records[-1]["metrics"]
    order = ["stt_s", "first_token_s", "first_sentence_s", "first_audio_s", "first_frame_s",
             "total_s"]
    assert 0 < m["stt_s"], m
    assert [m[k] for k in order] == sorted(m[k] for k in order), m
    assert {k: m[k] for k in order} == {k: round(getattr(result.metrics, k), 4) for k in order}


def test_mp4_streams_have_equal_duration(turn):
    result, out, _ = turn
    frames, pcm, rate = _decode(out)
    info = probe(out)  # the container's stream durations: what a player shows
    assert info["audio_s"] > 0.8  # a spoken answer, not a blip
    assert abs(info["video_s"] - info["audio_s"]) <= 0.040, info
    assert info["frames"] == len(frames) and abs(len(frames) / 25.0 - info["video_s"]) < 1e-3
    # decoded AAC carries up to one 1024-sample frame of encoder padding beyond the end
    assert -0.040 <= len(pcm) / rate - info["video_s"] <= 0.040 + 1024 / rate
    assert frames[0].shape == cv2.imread(str(FACE)).shape


def test_mouth_moves_on_speech_and_is_closed_on_silence(turn):
    _, out, _ = turn
    frames, pcm, rate = _decode(out)
    source = cv2.imread(str(FACE)).astype(np.int16)
    diffs = np.stack([np.abs(f.astype(np.int16) - source).mean(axis=2) for f in frames])
    # pixels that change over time (the encoder's error on still content is static)
    moving = np.stack(frames).astype(np.float32).std(axis=0).mean(axis=2) > 12
    ys, xs = np.nonzero(moving)
    assert len(ys) > 50, "the mouth never moved"
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = source.shape[:2]
    assert (y1 - y0) * (x1 - x0) < 0.1 * h * w, "changes spread beyond the mouth region"
    box = diffs[:, y0:y1, x0:x1].mean(axis=(1, 2))
    hop = rate // 25
    level = np.array([np.sqrt(np.mean(pcm[k * hop:(k + 1) * hop] ** 2)) if k * hop < len(pcm) else 0
                      for k in range(len(frames))])
    loud = level > np.percentile(level, 70)
    quiet = level < 10 ** (-45 / 20)
    # silence long enough for the mouth to have closed (the engine closes over <= 4 frames),
    # and not right before an onset (the mouth opens a little ahead of the sound, as lips do);
    # the reply ends with a short closing silence, so such frames always exist
    padded = np.concatenate([[True] * 6, quiet, [True]])
    silent = np.all([padded[i:i + len(quiet)] for i in range(8)], axis=0)
    assert silent.sum() >= 2, f"the reply has no silent stretch to check: {np.round(20 * np.log10(level + 1e-9))}"
    assert box[loud].mean() > 2.5 * box[silent].mean()
    # closed on silence, measured as the face mesh sees it: the inner-lip gap of silent
    # frames is the photo's own; speech frames open it
    from avatar_agent.config import Config
    from avatar_agent.face.analyzer import FaceAnalyzer, FaceLandmarks
    from avatar_agent.face.mesh import roi_from_landmarks
    from avatar_agent.models import ModelStore

    analyzer = FaceAnalyzer(cfg=Config(), store=ModelStore())
    rest = analyzer.analyze(source.astype(np.uint8))
    roi = roi_from_landmarks(rest.points)

    def aperture(frame):
        return FaceLandmarks(analyzer.landmarks(frame, roi)[0], rest.box, 1.0).mouth_aperture()

    photo = aperture(source.astype(np.uint8))  # the photo's own gap, measured the same way
    closed = [aperture(frames[k]) for k in np.nonzero(silent)[0]]
    opened = [aperture(frames[k]) for k in np.nonzero(loud)[0]]
    assert max(abs(a - photo) for a in closed) < 0.025, (closed, photo)
    assert np.mean(opened) > photo + 0.04, (opened, photo)


def test_render_with_a_video_avatar(tmp_path, store, hopper_bgr):
    """``render --video``: the face video loops under the lip-sync, in sync with the audio."""
    from avatar_agent.render.mp4 import Mp4Writer
    from avatar_agent.reply import render_file

    video = tmp_path / "loop.mp4"
    with Mp4Writer(video, fps=25, sample_rate=16000) as w:  # a 2 s loop: the head sways
        for k in range(50):
            m = np.float32([[1, 0, 3 * np.sin(k / 8)], [0, 1, 2 * np.sin(k / 6)]])
            w.add_frames(cv2.warpAffine(hopper_bgr, m, hopper_bgr.shape[1::-1], borderMode=cv2.BORDER_REPLICATE))
        w.add_audio(np.zeros(32000, np.float32), 16000)
    cfg = load_config(None, [f"avatar.video={video}", "lipsync.blink=false"])
    out = render_file(cfg, QUESTION, tmp_path / "r.mp4")
    info = probe(out)
    assert abs(info["video_s"] - info["audio_s"]) <= 0.040
    frames, _, _ = _decode(out)
    top = slice(0, 100)  # hair and background: only the video's own motion moves them
    assert np.abs(frames[8][top].astype(int) - frames[20][top]).mean() > 1.0

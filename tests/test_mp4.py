"""The mp4 writer: H.264 + AAC, equal durations, frames and audio aligned by construction."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avatar_agent.render.mp4 import Mp4Writer, probe
from avatar_agent.types import FrameChunk


def _decode(path: Path) -> tuple[list[np.ndarray], list[float], np.ndarray, int]:
    frames, times, audio = [], [], []
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        for frame in c.decode(v):
            frames.append(frame.to_ndarray(format="bgr24"))
            times.append(float(frame.pts * v.time_base))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate = a.rate
        for frame in c.decode(a):
            audio.append(frame.to_ndarray().reshape(-1))
    return frames, times, np.concatenate(audio), rate


def test_durations_equal_and_flash_aligned_with_click(tmp_path: Path):
    fps, sr = 25, 22050
    n_frames = 3 * fps
    frames = np.full((n_frames, 240, 320, 3), 40, np.uint8)
    audio = np.zeros(int(n_frames / fps * sr), np.float32)
    flash = 40  # frame 40 is white and a click sounds at 40/25 s
    frames[flash] = 255
    start = int(flash / fps * sr)
    audio[start:start + 400] = np.sin(np.arange(400) * 2 * np.pi * 1000 / sr) * 0.8
    out = tmp_path / "a.mp4"
    with Mp4Writer(out, fps=fps, sample_rate=sr) as w:
        for i in range(0, n_frames, 25):  # streamed in one-second chunks
            seg = audio[int(i / fps * sr):int((i + 25) / fps * sr)]
            w.add_chunk(FrameChunk(frames=frames[i:i + 25], fps=fps, audio=seg, sample_rate=sr))
    info = probe(out)
    assert info["frames"] == n_frames and info["fps"] == fps
    decoded, times, pcm, rate = _decode(out)
    assert len(decoded) == n_frames
    video_s = len(decoded) / fps
    # AAC adds encoder priming/padding; what a player plays must match within one frame (40 ms)
    audio_s = len(pcm) / rate
    assert abs(video_s - audio_s) <= 0.040, (video_s, audio_s)
    assert abs(info["video_s"] - info["audio_s"]) <= 0.040
    bright = int(np.argmax([f.mean() for f in decoded]))
    assert bright == flash and abs(times[bright] - flash / fps) < 1e-3
    click_t = int(np.argmax(np.abs(pcm) > 0.4)) / rate
    assert abs(click_t - flash / fps) <= 0.040, click_t


def test_odd_frame_sizes_and_other_audio_rates(tmp_path: Path):
    out = tmp_path / "b.mp4"
    with Mp4Writer(out, fps=25, sample_rate=22050) as w:
        w.add_frames(np.zeros((25, 101, 99, 3), np.uint8))
        w.add_audio(np.zeros(16000, np.float32), 16000)  # resampled to the file's rate
    info = probe(out)
    assert (info["width"], info["height"]) == (98, 100)
    assert abs(info["audio_s"] - 1.0) <= 0.040


def test_unwritable_output_is_an_input_error(tmp_path: Path):
    from avatar_agent.errors import InputError

    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        Mp4Writer(tmp_path / "file" / "x.mp4")

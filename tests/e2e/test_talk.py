"""``avatar-agent talk`` end to end on virtual devices: real mic, speaker and window.

One ``talk`` process (real models, real sounddevice streams, real OpenCV window on
Xvfb) serves the tests of this module in order: a spoken question is answered, a reply
is interrupted by a second question, and ``q`` ends it. Sound is recorded from the
``e2e_mix`` sink (left: what the program's mic hears, right: what it plays), so the
user's speech and the avatar's voice share one timeline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from avatar_agent.audio.io import write_wav

from .conftest import ROOT, Recorder, end_process, play_into_mic, remap, screenshot, window_id

pytestmark = pytest.mark.e2e

TITLE = "avatar_e2e"
RATE = 48000
# status dot colours (BGR) drawn by the presenter
STATUS = {"listening": (80, 200, 80), "thinking": (60, 180, 240), "speaking": (230, 120, 60)}

# Timing bounds: about 2-3x the figures README.md states, so a turn several times slower
# than it should be fails, but a 2-core machine with other jobs on it (as in
# benchmarks/RESULTS.md, plus this test's own screenshots and recorder) passes. Not sized
# for a machine 10x oversubscribed (load average 20: STT alone took 9 s there).
# - Voice-to-face: README "about 1.3-1.6 s (p50) on a 2-core CPU"; RESULTS p95 2.97 s over
#   20 turns (this is the first turn: a short history). 6 s is 2x that p95 (3.75x the
#   p50); measured here 5.1 s with the 2 cores at load average 4-5 (two other test jobs).
#   Finer regressions (a few hundred ms) are the benchmark's job, not this test's.
VOICE_TO_FACE_MAX_S = 6.0
# - The reply heard at the speaker vs that figure: the same moment measured from outside
#   (end of the question on the mic channel -> first reply sound), give or take the VAD's
#   end-of-speech estimate (test_vad: within 0.35 s), the voice's own leading silence and
#   the device buffers.
EAR_VS_LOG_MAX_S = 0.75
# - A/V: README / RESULTS "+-20 ms" (max 14.8-15.8 ms over a 65 s reply); 3x.
AV_OFFSET_MAX_MS = 60
# - Barge-in (user's onset -> the avatar silent at the speaker): RESULTS 60-90 ms with a
#   headset (this test: audio.echo=none), 60-210 ms with the echo gate. 0.3 s is ~3x the
#   headset figure (measured here: 90 and 270 ms, the 2 cores at load average 15-20);
#   a barge-in that waited for the VAD's utterance (0.3 s of voice + 0.6 s hangover) fails.
BARGE_IN_MAX_S = 0.3


class TalkApp:
    """The running ``talk`` subprocess, its output lines and its transcript."""

    def __init__(self, transcript: Path, work: Path) -> None:
        self.transcript = transcript
        self.work = work
        self.lines: list[tuple[float, str]] = []
        cmd = [sys.executable, "-m", "avatar_agent", "talk", "-v",
               "--set", f"transcript.path={transcript}", "--set", f"window.title={TITLE}",
               "--set", "lipsync.head_motion=false",
               # the virtual room has no acoustic echo (a headset): no echo gate needed; the
               # gate itself is tested with a simulated echo path in test_orchestrator.py
               "--set", "audio.echo=none"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def wait_line(self, pattern: str, after: float = 0.0, timeout: float = 120.0) -> float:
        """Monotonic time of the first output line matching ``pattern`` after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if t >= after and re.search(pattern, line):
                    return t
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(f"no line /{pattern}/ from talk (rc={self.proc.poll()}); output:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self.lines[-n:] if "QFont" not in line)

    def records(self) -> list[dict]:
        if not self.transcript.exists():
            return []
        return [json.loads(x) for x in self.transcript.read_text().splitlines() if x.strip()]

    def wait_records(self, n: int, timeout: float = 120.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.records()
            if len(recs) >= n:
                return recs
            assert self.proc.poll() is None, f"talk exited early:\n{self.tail()}"
            time.sleep(0.1)
        pytest.fail(f"no transcript record #{n} after {timeout} s; output:\n{self.tail()}")


@pytest.fixture(scope="module")
def app(avdevices, store, tmp_path_factory):
    work = tmp_path_factory.mktemp("talk")
    talk = TalkApp(work / "transcript.jsonl", work)
    try:
        talk.wait_line(r"^listening \(window: on\)", timeout=240)
        talk.wid = window_id(TITLE)
        assert talk.wid, "the talk window never appeared"
        yield talk
    finally:
        end_process(talk.proc, 10)


# ------------------------------------------------------------------------ screen helpers
def _status(img: np.ndarray) -> str | None:
    """The presenter's state from its status dot (bottom-left of the image)."""
    h = img.shape[0]
    bar = max(18, h // 22)
    y, x = h - bar // 2, bar // 2 + 4
    color = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(axis=0)
    name, ref = min(STATUS.items(), key=lambda kv: np.abs(color - kv[1]).sum())
    return name if np.abs(color - ref).sum() < 90 else None


def _shoot(app: TalkApp, path: Path) -> np.ndarray:
    """A screenshot of the window content, re-mapping a window that stays black."""
    for attempt in range(4):
        shot = screenshot(path.with_suffix(".ppm"), app.wid)  # one window, uncompressed: fast
        if shot.max() > 12:
            return shot
        if attempt == 2:
            remap(app.wid)
        time.sleep(0.3)
    pytest.fail("the window stayed black (even after re-mapping it)")


def _speech_segments(x: np.ndarray, thr: float = 0.01, gap_s: float = 0.35):
    """[(start, end)] in seconds of the loud parts of ``x`` (gaps shorter than gap_s joined)."""
    hop = RATE // 100
    env = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1) > thr
    segs, start, quiet = [], None, 0
    for i, loud in enumerate(env):
        if loud:
            if start is None:
                start = i
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.01 >= gap_s:
                segs.append((start * 0.01, (i - quiet + 1) * 0.01))
                start, quiet = None, 0
    if start is not None:
        segs.append((start * 0.01, (len(env) - quiet) * 0.01))
    return segs


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


# ------------------------------------------------------------------------ the tests
def test_answers_a_spoken_question_with_a_moving_mouth(app, speak, store, tmp_path):
    question = "What is the capital of France?"
    wav = write_wav(tmp_path / "q.wav", speak(question, sr=22050), 22050)
    idle = _shoot(app, tmp_path / "idle.png")
    assert _status(idle) == "listening"
    shots: list[tuple[float, np.ndarray]] = []
    stop = threading.Event()

    def shoot_loop() -> None:
        i = 0
        while not stop.is_set():
            shots.append((time.monotonic(), _shoot(app, tmp_path / f"s{i % 4}.png")))
            i += 1

    rec = Recorder(tmp_path / "mix.wav")
    time.sleep(0.3)
    shooter = threading.Thread(target=shoot_loop, daemon=True)
    try:
        play_into_mic(wav)
        shooter.start()
        recs = app.wait_records(1, timeout=120)
        time.sleep(1.0)
    finally:
        stop.set()
        shooter.join(30)
        mic, spk = rec.stop()
    after = _shoot(app, tmp_path / "after.png")
    record = recs[0]

    # the transcript in the JSONL matches the question
    assert set(_words(question)) <= set(_words(record["user"])), record["user"]
    assert record["assistant"] and not record["error"] and not record["interrupted"]
    # a reply is heard: non-silent, plausible length, after the question
    q_end = _speech_segments(mic)[-1][1]
    reply = [s for s in _speech_segments(spk) if s[0] > q_end - 0.05]
    heard_s = sum(e - s for s, e in reply)
    assert 0.5 < heard_s < 40, (reply, heard_s)
    # voice-to-face latency and A/V offsets are logged, and they are what was heard
    v2f = record["voice_to_face_s"]
    ear = reply[0][0] - q_end  # end of the question -> first reply sound, from outside
    print(f"voice-to-face {v2f:.3f} s (heard after {ear:.3f} s), "
          f"A/V offsets {record['metrics']['av_offsets_ms']} ms")
    assert 0 < v2f < VOICE_TO_FACE_MAX_S, v2f
    assert abs(ear - v2f) < EAR_VS_LOG_MAX_S, (ear, v2f)
    assert record["metrics"]["av_offsets_ms"], record["metrics"]
    assert all(abs(o) < AV_OFFSET_MAX_MS for o in record["metrics"]["av_offsets_ms"]), record["metrics"]
    # the window: mouth moving while speaking, closed again while listening, measured as
    # the face mesh sees the screenshots (inner-lip gap / inter-ocular distance)
    speaking = [img for _, img in shots if img.shape == idle.shape and _status(img) == "speaking"]
    assert len(speaking) >= 2, f"{len(shots)} screenshots, {len(speaking)} while speaking"
    aperture, photo = _mouth_meter(idle, store)
    opened = [aperture(img) for img in speaking]
    print(f"mouth aperture: idle {photo:.3f}, speaking {np.round(opened, 3)}")
    assert max(opened) > photo + 0.04, (photo, opened)
    assert max(opened) - min(opened) > 0.02, f"the mouth did not move between shots: {opened}"
    assert _status(after) == "listening"
    assert abs(aperture(after) - photo) < 0.025, "mouth not closed while listening"


def _mouth_meter(idle: np.ndarray, store):
    """``aperture(img)`` on screenshots, and the idle face's own value."""
    from avatar_agent.config import Config
    from avatar_agent.face.analyzer import FaceAnalyzer, FaceLandmarks
    from avatar_agent.face.mesh import roi_from_landmarks

    analyzer = FaceAnalyzer(cfg=Config(), store=store)
    rest = analyzer.analyze(idle)
    roi = roi_from_landmarks(rest.points)

    def aperture(img: np.ndarray) -> float:
        return FaceLandmarks(analyzer.landmarks(img, roi)[0], rest.box, 1.0).mouth_aperture()

    return aperture, aperture(idle)


def test_barge_in_stops_playback_and_the_second_question_is_answered(app, speak, tmp_path):
    long_q = write_wav(tmp_path / "long.wav", speak(
        "Please tell me a long story about a brave little robot who explores the deep ocean.",
        sr=22050), 22050)
    stop_q = write_wav(tmp_path / "stop.wav", speak("Stop. What is two plus two?", sr=22050), 22050)
    n0 = len(app.records())
    rec = Recorder(tmp_path / "mix.wav")
    time.sleep(0.3)
    try:
        t_play = time.monotonic()
        play_into_mic(long_q)
        t_speak = app.wait_line(r"state speaking", after=t_play, timeout=120)
        # barge in while the avatar's voice is actually coming out (not in a pause
        # between two sentences)
        while time.monotonic() - t_speak < 0.4 or rec.speaker_level_now() < 0.05:
            assert time.monotonic() - t_speak < 30, "the avatar never spoke"
            time.sleep(0.02)
        play_into_mic(stop_q)
        recs = app.wait_records(n0 + 2, timeout=120)
        app.wait_line(r"state listening", after=time.monotonic() - 0.5, timeout=60)
        time.sleep(0.5)
    finally:
        mic, spk = rec.stop()
    first, second = recs[n0], recs[n0 + 1]
    assert first["interrupted"], first
    assert "plus" in _words(second["user"]) or "+" in second["user"], second["user"]
    assert second["assistant"] and not second["interrupted"], second
    # on the common timeline: the user's second question starts, the avatar falls silent
    user = _speech_segments(mic)
    assert len(user) >= 2, user
    onset = user[-1][0]
    spk_before = [s for s in _speech_segments(spk, gap_s=0.2) if s[0] < onset]
    assert spk_before and spk_before[-1][1] > onset, "the avatar was not speaking at barge-in"
    stop_latency = spk_before[-1][1] - onset
    inside = [line for _, line in app.lines if "barge-in:" in line]
    print("\n".join(line for _, line in app.lines if "duck" in line or "barge-in:" in line))
    print(f"barge-in: playback stopped {stop_latency * 1000:.0f} ms after the user's onset "
          f"({inside[-1].split(': ', 2)[-1] if inside else 'no barge-in logged'})")
    assert stop_latency < BARGE_IN_MAX_S, f"playback went on {stop_latency * 1000:.0f} ms after the user spoke"
    # the answer to the second question is heard after it
    answer = [s for s in _speech_segments(spk) if s[0] > user[-1][1] - 0.05]
    assert sum(e - s for s, e in answer) > 0.3, answer
    # what was heard of the first reply is what the history keeps
    assert first["assistant"].endswith("…") or first["assistant"] == ""


def test_q_quits_cleanly_within_two_seconds(app):
    t0 = time.monotonic()
    subprocess.run(["xdotool", "windowfocus", "--sync", app.wid, "key", "q"], timeout=10,
                   capture_output=True)
    try:
        rc = app.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"talk did not exit after q; output:\n{app.tail()}")
    took = time.monotonic() - t0
    assert rc == 0, app.tail()
    assert took < 2.0, f"quit took {took:.2f} s"
    assert "Traceback" not in "\n".join(line for _, line in app.lines)

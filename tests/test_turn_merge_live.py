"""A greeting, a pause, and the rest of the sentence: one turn in ``talk`` (issue 19, item 4).

The live :class:`~avatar_agent.live.Conversation` with the real embedded models (Moonshine
fed while the user speaks, or faster-whisper one-shot; SmolLM2; Piper; lip-sync) on the
named fake devices of ``tests/live_fakes.py``. The user says "Hello!", pauses (longer than
the 0.6 s hangover, so the turn is committed and its answer starts), then goes on "My
name is Anna and I live in Lisbon." Before ``audio.vad.merge_s`` the history kept
"Hello." → a cut reply, and the rest was a second turn.
"""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from avatar_agent.config import Config

from .live_fakes import SR
from .live_fakes import session as _session
from .live_fakes import until as _until
from .test_turn_merge import HELLO, REST, trim

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def face(store):
    import cv2

    return cv2.imread("examples/assets/face.png")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


async def _end(conv, task, stream, presenter) -> None:
    conv.quit()
    await asyncio.wait_for(task, 10)
    stream.abort()
    presenter.stop()
    await conv.pipeline.aclose()


# moonshine: the stream fed while "Hello!" was spoken goes on with the rest; 0.7 s: the
# turn is committed and its answer is being made. faster-whisper: the joined audio
# one-shot; 1.1 s (near the end of the merge window: the hangover 0.6 s + merge_s 0.6 s):
# the answer to "Hello!" may be playing already (it is stopped).
@pytest.mark.parametrize(("stt", "pause_s"), [("moonshine", 0.7), ("faster_whisper", 1.1)])
async def test_hello_pause_and_the_rest_are_one_turn(tmp_path, store, face, speak, stt, pause_s):
    cfg = Config()
    cfg.transcript.path = tmp_path / "t.jsonl"
    cfg.stt.provider = stt
    said = np.concatenate([trim(speak(HELLO)), np.zeros(int(pause_s * SR), np.float32),
                           trim(speak(REST))])
    conv, mic, stream, task, presenter = await _session(cfg, store, face)
    try:
        await asyncio.sleep(0.5)
        mic.say(said)
        await _until(lambda: any("lisbon" in _words(r.user) for r in conv.turns), 120, "the answer")
        await _until(lambda: conv.state == "listening", 60, "the end of the answer")
        lines = conv.pipeline.transcript.read()
        history = conv.pipeline.history._turns
        print(f"{stt}, pause {pause_s} s: transcript {[(x['user'], x['assistant']) for x in lines]}")
        # one user turn in the history: both parts, answered together
        assert len(history) == 1, history
        user, reply = history[0]
        assert {"hello", "anna", "lisbon"} <= _words(user), user
        assert reply and not reply.endswith("…"), reply
        # the turn answering "Hello!" had started, and was cut
        assert conv.merges == 1 and conv.barge_ins == 0
        # the transcript keeps everything: the joined turn, and the cut one, marked, when
        # it got as far as a transcript (on a loaded machine it may not have)
        *cut, last = lines
        assert last["user"] == user and last["assistant"] == reply and last.get("joined"), last
        assert not last["interrupted"] and not last["error"]
        assert all(x.get("merged") and x["interrupted"] and "hello" in _words(x["user"])
                   for x in cut), cut
    finally:
        await _end(conv, task, stream, presenter)


async def test_a_reply_already_playing_is_stopped_and_not_kept(tmp_path, store, face, speak):
    cfg = Config()
    cfg.transcript.path = tmp_path / "t.jsonl"
    # a window long enough that the answer to "Hello!" is heard before the user goes on,
    # on any machine: the merge, not a barge-in, must stop it
    cfg.audio.vad.merge_s = 20.0
    hello, rest = trim(speak(HELLO)), trim(speak(REST))
    conv, mic, stream, task, presenter = await _session(cfg, store, face)
    try:
        await asyncio.sleep(0.5)
        mic.say(hello)
        await _until(lambda: conv.state == "speaking", 120, "the answer to hello")
        await _until(lambda: stream.loud_times(), 30, "its sound")
        await asyncio.sleep(0.3)
        mic.say(rest)
        await _until(lambda: conv.merges == 1, 10, "the merge")
        t_cut = stream.played[-1][0]
        await _until(lambda: any("lisbon" in _words(r.user) for r in conv.turns), 120, "the answer")
        await _until(lambda: conv.state == "listening", 60, "the end of the answer")
        lines = conv.pipeline.transcript.read()
        history = conv.pipeline.history._turns
        print(f"transcript {[(x['user'], x['assistant']) for x in lines]}")
        assert conv.barge_ins == 0
        cut, last = lines
        # the cut reply: heard in part, in the transcript only
        assert cut.get("merged") and cut["interrupted"] and "hello" in _words(cut["user"]), cut
        assert cut["assistant"], cut
        assert len(history) == 1 and {"hello", "anna", "lisbon"} <= _words(history[0][0]), history
        assert last.get("joined") and last["assistant"] == history[0][1]
        # it fell silent at the cut, until the joined answer (made after the rest was said)
        quiet = [t for t in stream.loud_times() if t_cut + 0.05 < t < t_cut + 0.5]
        assert not quiet, "the cut reply kept playing"
    finally:
        await _end(conv, task, stream, presenter)


async def test_two_questions_with_a_normal_gap_stay_two_turns(tmp_path, store, face, speak):
    cfg = Config()
    cfg.transcript.path = tmp_path / "t.jsonl"
    first, second = trim(speak("What is the capital of France?")), trim(speak("What is two plus two?"))
    conv, mic, stream, task, presenter = await _session(cfg, store, face)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.5)
        t_end = loop.time() + mic.say(first)
        # the second question once the answer to the first is heard, and the hangover
        # (0.6 s) and the merge window (0.6 s) after it are over: a barge-in, no merge
        await _until(lambda: conv.state == "speaking", 120, "the first answer")
        await asyncio.sleep(max(0.3, t_end + 2.0 - loop.time()))
        mic.say(second)
        await _until(lambda: any("plus" in _words(r.user) for r in conv.turns), 120, "the second turn")
        await _until(lambda: conv.state == "listening", 60, "the end of the answer")
        lines = conv.pipeline.transcript.read()
        history = conv.pipeline.history._turns
        print(f"transcript {[(x['user'], x['assistant']) for x in lines]}")
        assert len(lines) == 2 and len(history) == 2, (lines, history)
        assert "france" in _words(history[0][0]) and "plus" not in _words(history[0][0])
        assert "plus" in _words(history[1][0]) and "france" not in _words(history[1][0])
        assert lines[0]["interrupted"] and history[0][1] == lines[0]["assistant"]  # what was heard
        assert not any(x.get("merged") or x.get("joined") for x in lines), lines
    finally:
        await _end(conv, task, stream, presenter)

"""Merging a turn the user goes on with (issue 19, item 4): the VAD and the decision.

Real Piper speech with real pauses through the real :class:`VadSegmenter`, its events
through :func:`avatar_agent.turn_taking.decide` with the state a conversation would have
(no devices, no models but the voice). "Hello!" + a pause longer than the hangover +
"My name is Anna …" used to be two utterances and two turns ("Hello." → a cut reply in
the history); with ``merge_s`` the second part rejoins the first: one utterance, one turn.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar_agent.audio.vad import (
    SpeechPause,
    SpeechRejoin,
    SpeechResume,
    SpeechStart,
    VadSegmenter,
)
from avatar_agent.turn_taking import Action, decide
from avatar_agent.types import Utterance

SR = 16000
HELLO = "Hello!"
REST = "My name is Anna and I live in Lisbon."


def trim(pcm: np.ndarray, thr: float = 0.01) -> np.ndarray:
    """``pcm`` without the voice's own leading and trailing silence (Piper adds ~0.25 s
    in all), so a pause put between two parts is the pause the listener hears."""
    loud = np.nonzero(np.abs(pcm) > thr)[0]
    return pcm[loud[0]:loud[-1] + 1] if len(loud) else pcm


def _room(*parts: np.ndarray | float) -> np.ndarray:
    """Speech parts and pauses (seconds) in a row, under one faint steady room noise."""
    pcm = np.concatenate([np.zeros(int(p * SR), np.float32) if isinstance(p, float) else p
                          for p in parts])
    return pcm + (np.random.default_rng(1).standard_normal(len(pcm)) * 0.002).astype(np.float32)


def _events(seg: VadSegmenter, pcm: np.ndarray, t0: float = 50.0) -> list:
    out = []
    for i in range(0, len(pcm), 320):
        out.extend(seg.push(pcm[i:i + 320], t0 + i / SR))
    return out


def _actions(events: list, *, speaking_after_commit: bool = False, barge_in: bool = True) -> list[str]:
    """Walk the events as the conversation does (its ``early`` flag), ``speaking`` once a
    turn was committed when ``speaking_after_commit``; returns the actions' names."""
    early = speaking = False
    out = []
    for ev in events:
        action = decide(ev, speaking=speaking, barge_in=barge_in, early=early, turn_model=False)
        out.append(f"{type(ev).__name__}:{action}")
        if action in (Action.START_EARLY, Action.START):
            early = action == Action.START_EARLY
        elif action in (Action.DROP_EARLY, Action.KEEP, Action.MERGE, Action.WAIT):
            early = False
        if action in (Action.MERGE, Action.BARGE_IN, Action.DROP_EARLY):
            speaking = False  # the reply was cut
        elif isinstance(ev, Utterance):
            speaking = speaking_after_commit
    return out


@pytest.fixture(scope="module")
def parts(speak) -> tuple[np.ndarray, np.ndarray]:
    return trim(speak(HELLO)), trim(speak(REST))


def _seg(merge_s: float = 0.6) -> VadSegmenter:
    return VadSegmenter(sample_rate=SR, hangover_ms=600, early_ms=200, merge_s=merge_s)


def test_going_on_after_the_commit_merges_into_one_utterance(parts):
    hello, rest = parts
    pcm = _room(0.5, hello, 0.7, rest, 1.5)
    events = _events(_seg(), pcm)
    assert _actions(events) == [
        "SpeechStart:nothing",
        "SpeechPause:start_early",   # the early answer to "Hello!"
        "Utterance:keep",            # the hangover commits it
        "SpeechRejoin:merge",        # the user goes on: that turn is dropped
        "SpeechPause:start_early",   # the joined utterance answered at its pause
        "Utterance:keep",
    ]
    start = events[0]
    first, last = [e for e in events if isinstance(e, Utterance)]
    # the joined utterance is all of it: both parts and the pause, from the first onset
    assert last.t_start == first.t_start == start.t
    assert last.duration_s > len(hello) / SR + 0.7 + len(rest) / SR - 0.1
    assert np.array_equal(last.pcm[:len(first.pcm)], first.pcm)
    # the pause is digital silence up to the pre-roll of the second part (while the
    # avatar speaks the mic holds its echo there: the STT must not hear it)
    assert not last.pcm[len(first.pcm):len(first.pcm) + int(0.15 * SR)].any()
    rejoin = next(e for e in events if isinstance(e, SpeechRejoin))
    assert 0.6 < rejoin.t - first.t_end < 0.8  # the pause as the VAD measured it


def test_while_the_avatar_speaks_the_merge_wins_over_barge_in(parts):
    hello, rest = parts
    events = _events(_seg(), _room(0.5, hello, 1.1, rest, 1.5))
    acts = _actions(events, speaking_after_commit=True)
    assert "SpeechRejoin:merge" in acts and not any("barge_in" in a for a in acts), acts
    # barge-in off: the reply goes on, and is dropped when the joined speech commits
    acts = _actions(events, speaking_after_commit=True, barge_in=False)
    assert "SpeechRejoin:wait" in acts, acts


def test_without_merge_the_continuation_is_a_new_turn(parts):
    hello, rest = parts
    events = _events(_seg(0.0), _room(0.5, hello, 0.7, rest, 1.5))
    assert [type(e).__name__ for e in events] == [
        "SpeechStart", "SpeechPause", "Utterance", "SpeechStart", "SpeechPause", "Utterance"]


def test_a_normal_gap_between_two_questions_stays_two_turns(speak):
    a, b = trim(speak("What is the capital of France?")), trim(speak("What is two plus two?"))
    # 1.4 s of silence: past the hangover (0.6 s) and the merge window (0.6 s) after it
    events = _events(_seg(), _room(0.5, a, 1.4, b, 1.5))
    assert not any(isinstance(e, SpeechRejoin) for e in events)
    utts = [e for e in events if isinstance(e, Utterance)]
    assert len(utts) == 2 and utts[1].t_start > utts[0].t_end + 1.2
    assert _actions(events, speaking_after_commit=True).count("SpeechStart:barge_in") == 1


def test_a_short_pause_inside_the_speech_stays_one_utterance(parts):
    hello, rest = parts
    events = _events(_seg(), _room(0.5, hello, 0.4, rest, 1.5))  # under the hangover
    acts = _actions(events)
    assert acts == ["SpeechStart:nothing", "SpeechPause:start_early", "SpeechResume:drop_early",
                    "SpeechPause:start_early", "Utterance:keep"], acts


def test_a_turn_answered_in_full_seals_its_speech(parts):
    hello, rest = parts
    pcm = _room(0.5, hello, 0.7, rest, 1.5)
    seg = _seg()
    cut = int((0.5 + len(hello) / SR + 0.65) * SR) // 320 * 320  # just after the commit
    events = _events(seg, pcm[:cut])
    first = next(e for e in events if isinstance(e, Utterance))
    seg.seal(first.t_start + 1.0)  # another utterance's turn: nothing happens
    seg.seal(first.t_start)        # its own turn ran to its end
    later = _events(seg, pcm[cut:], t0=50.0 + cut / SR)
    assert isinstance(later[0], SpeechStart) and not any(isinstance(e, SpeechRejoin) for e in later)


def test_decide_the_rest_of_the_table():
    utt = Utterance(pcm=np.zeros(160, np.float32), sample_rate=SR, t_start=1.0, t_end=1.01)
    kw = {"barge_in": True, "early": False, "turn_model": False}
    assert decide(SpeechStart(1.0), speaking=False, **kw) == Action.NOTHING
    assert decide(SpeechStart(1.0), speaking=True, **kw) == Action.BARGE_IN
    assert decide(SpeechStart(1.0), speaking=True, **(kw | {"barge_in": False})) == Action.NOTHING
    assert decide(SpeechRejoin(1.0), speaking=False, **(kw | {"barge_in": False})) == Action.MERGE
    assert decide(SpeechPause(utt), speaking=False, **(kw | {"turn_model": True})) == Action.ASK_MODEL
    assert decide(SpeechResume(1.0), speaking=False, **kw) == Action.NOTHING
    assert decide(utt, speaking=True, **kw) == Action.START

"""What a VAD event does to the live turn: the turn-taking decision, without any I/O.

:class:`~avatar_agent.live.Conversation` asks :func:`decide` for every event of its
:class:`~avatar_agent.audio.vad.VadSegmenter` and carries out the answer (start, cancel,
flush). Kept apart so the rules can be read, and tested, in one place::

    SpeechStart   while the avatar speaks (barge-in on)   → BARGE_IN  cut the reply, keep what was heard
    SpeechRejoin  the user goes on after a commit         → MERGE     drop the turn answering the cut part
                  (while the avatar speaks, barge-in off) → WAIT      the reply goes on; dropped at the commit
    SpeechPause   200 ms into a pause                     → START_EARLY, or ASK_MODEL (audio.vad.turn_model)
    SpeechResume  the pause was inside the question       → DROP_EARLY (an early turn leaves no record)
    Utterance     the hangover ended the speech           → KEEP (the early turn answers it) or START

A merge never leaves the cut part and its cut reply in the history ("Hello." → "…",
issue 19): the joined utterance is answered as one turn.
"""

from __future__ import annotations

import enum

from .audio.vad import SpeechPause, SpeechRejoin, SpeechResume, SpeechStart, VadEvent
from .types import Utterance


class Action(enum.StrEnum):
    """What the conversation does with one VAD event."""

    NOTHING = "nothing"
    BARGE_IN = "barge_in"        # flush the reply now; the history keeps what was heard
    MERGE = "merge"              # flush and drop the running turn: transcript only, no history
    WAIT = "wait"                # the user goes on, but may not interrupt: drop the turn at the commit
    START_EARLY = "start_early"  # answer at the pause (dropped if the user goes on)
    ASK_MODEL = "ask_model"      # ask the turn-end model whether to answer at the pause
    DROP_EARLY = "drop_early"    # the early answer was premature: it leaves no record
    KEEP = "keep"                # the early turn already answers this very speech
    START = "start"              # a newer question: cut the running turn, answer this one


def decide(event: VadEvent, *, speaking: bool, barge_in: bool, early: bool,
           turn_model: bool) -> Action:
    """The action for ``event``. ``speaking``: the avatar's reply is playing;
    ``barge_in``: ``audio.barge_in``; ``early``: the running turn started at a pause of
    the speech still in progress; ``turn_model``: an end-of-turn model gates early answers."""
    if isinstance(event, SpeechStart):
        return Action.BARGE_IN if speaking and barge_in else Action.NOTHING
    if isinstance(event, SpeechRejoin):
        return Action.WAIT if speaking and not barge_in else Action.MERGE
    if isinstance(event, SpeechPause):
        return Action.ASK_MODEL if turn_model else Action.START_EARLY
    if isinstance(event, SpeechResume):
        return Action.DROP_EARLY if early else Action.NOTHING
    if isinstance(event, Utterance):
        return Action.KEEP if early else Action.START
    return Action.NOTHING  # SpeechDrop: a cough or a click

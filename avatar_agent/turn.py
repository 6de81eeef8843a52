"""One conversational turn, for every front end: the one place to read how a turn goes.

``talk`` and ``serve`` (:class:`avatar_agent.live.Conversation`), ``reply`` and ``say``
(:mod:`avatar_agent.reply`) all run :func:`run_turn`::

    hear (STT; ``say`` skips it)
      → answer (:meth:`Pipeline.respond`: LLM → TTS → lip-sync, streamed)
        or speak a fixed text (``say``, or the "didn't hear anything" prompt)
      → every chunk to the front end's :class:`TurnOutput` (speaker + screen, WebRTC
        tracks, or the mp4)
      → wait until it was played (:meth:`TurnOutput.drain`)
      → record: history, the JSONL transcript, metrics.

A failing stage (an error, or a stage past its ``timeouts.*``) gives the apology, which
was synthesized at warm-up, so it is heard even when the TTS itself is down; a turn never
ends the conversation. Cancelling the turn's task (barge-in, a newer question, quit)
still records it, with the part of the reply the listener heard (or only in the
transcript, marked ``merged``, when the user went on and the next turn answers it all).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AvatarError
from .pipeline import COULD_NOT_ANSWER, HEARD_NOTHING
from .types import FrameChunk, Transcript, TurnMetrics, Utterance

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .stt.base import STTStream

log = logging.getLogger(__name__)


class TurnState(enum.StrEnum):
    """What the avatar is doing (the window's status line, the page's status)."""

    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass
class TurnResult:
    """What one turn did: the user's words, the reply as heard, timings, what went wrong."""

    transcript: Transcript = field(default_factory=lambda: Transcript(text=""))
    reply_text: str = ""
    mode: str = "reply"
    heard_nothing: bool = False
    failed: str | None = None  # the error the apology stood for
    interrupted: bool = False  # cancelled: barge-in, a newer question, quit
    discard: bool = False  # set before cancelling: the turn leaves no record (a false start)
    merged: bool = False  # set before cancelling: the user went on, the next turn answers it all
    # (the transcript keeps this one, marked; the history does not)
    t_end: float = 0.0  # monotonic end of the user's speech: the origin of every metric
    metrics: TurnMetrics = field(default_factory=TurnMetrics)

    def summary(self) -> str:
        """Human-readable lines for the CLI."""
        m = self.metrics
        stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in m.stages.items())
        lines = [f"you said: {self.transcript.text or '(nothing)'}",
                 f"avatar:   {self.reply_text}",
                 f"timings:  {stages}"]
        if m.first_frame_s is not None:
            lines.append(f"first frame after {m.first_frame_s * 1000:.0f} ms; total {m.total_s or 0:.2f} s")
        return "\n".join(lines)


class TurnOutput:
    """Where a turn's chunks go. A front end overrides :meth:`emit` and what else it needs;
    the defaults suit a file (everything written counts as heard)."""

    live = False  # True: a listener is there (a failed apology is logged, not raised)

    def emit(self, chunk: FrameChunk) -> Awaitable[None] | None:
        """Play or write one chunk (called in order, on the loop)."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Return once everything emitted has been played (or written)."""

    def heard(self) -> str | None:
        """The reply text the listener got, or None for all of it."""
        return None

    def set_state(self, state: TurnState) -> None:
        """The turn moved on (thinking, speaking)."""

    def finish(self, result: TurnResult) -> dict[str, Any]:
        """The turn is over: complete ``result`` from the output's side; extra fields
        for the transcript record."""
        return {}


async def run_turn(pipeline: Pipeline, state: Any, out: TurnOutput, *,
                   utterance: Utterance | None = None, text: str | None = None,
                   say: str | None = None, stream: tuple[STTStream, Hashable] | None = None,
                   mode: str = "reply", quiet_on_nothing: bool = False,
                   result: TurnResult | None = None) -> TurnResult:
    """Run one turn of ``pipeline`` for the avatar ``state`` into ``out``.

    Input is one of ``utterance`` (speech, heard by the STT — fed while spoken when
    ``stream`` is given), ``text`` (what the user typed) or ``say`` (spoken as is: no STT,
    no LLM, no apology, not recorded). ``quiet_on_nothing``: an utterance with no words
    (noise, a cough) ends the turn silently instead of asking again (live front ends).
    ``result``: the record to fill, so the caller holds it while the turn runs.
    """
    result = result if result is not None else TurnResult()
    result.mode = mode
    m = result.metrics
    result.t_end = utterance.t_end if utterance is not None and utterance.t_end > 0 else time.monotonic()
    t0 = time.perf_counter() - (time.monotonic() - result.t_end)  # metrics origin, perf clock
    spoken: list[str] = []
    speaking = False
    record = say is None

    def emit(chunk: FrameChunk) -> Awaitable[None] | None:
        nonlocal speaking
        if chunk.text:
            spoken.append(chunk.text)
        if not speaking:
            speaking = True
            out.set_state(TurnState.SPEAKING)
        return out.emit(chunk)

    try:
        out.set_state(TurnState.THINKING)
        if say is not None:
            await pipeline.say(say, state, emit)  # a failure is the command's error
        else:
            try:
                if utterance is not None:
                    result.transcript = await pipeline.hear(utterance, m, stream=stream)
                    m.stt_s = time.monotonic() - result.t_end
                else:
                    result.transcript = Transcript(text=text or "")
                if not result.transcript.text:
                    result.heard_nothing = True
                    if quiet_on_nothing:  # stay quiet, keep listening
                        log.info("heard nothing")
                        record = False
                        return result
                    await pipeline.say(HEARD_NOTHING, state, emit)
                else:
                    await pipeline.respond(result.transcript.text, state, emit, t0=t0, metrics=m)
            except Exception as exc:  # a failing turn never ends the conversation
                result.failed = str(exc) if isinstance(exc, AvatarError) else type(exc).__name__
                # a file command reports it as its error line; live, the log is the report
                log.log(logging.WARNING if out.live else logging.INFO, "turn failed: %s", result.failed)
                try:
                    await pipeline.say(COULD_NOT_ANSWER, state, emit)
                except Exception as again:
                    if not out.live:
                        raise
                    log.warning("apology failed: %s", type(again).__name__)  # stay silent, listen
        await out.drain()
    except BaseException:
        result.interrupted = True  # cancelled (or the output itself failed)
        raise
    finally:
        if record and not result.discard:
            _record(pipeline, result, out, spoken)
    return result


def _record(pipeline: Pipeline, result: TurnResult, out: TurnOutput, spoken: list[str]) -> None:
    """History, metrics and the JSONL line of a finished (or cancelled) turn."""
    user = result.transcript.text
    heard = out.heard()
    result.reply_text = heard if heard is not None else " ".join(s.strip() for s in spoken if s.strip())
    m = result.metrics
    if m.total_s is None or result.interrupted:
        m.total_s = time.monotonic() - result.t_end
    m.stages.setdefault("total", m.total_s)
    extra = out.finish(result)
    if not user and not spoken:  # cancelled before a word was heard or said
        return
    if user and not result.failed and not result.merged:
        pipeline.remember(user, result.reply_text)
    pipeline.transcript.append({
        "mode": result.mode, "user": user, "assistant": result.reply_text,
        "heard_nothing": result.heard_nothing, "interrupted": result.interrupted,
        "error": result.failed, "metrics": m.as_dict(),
        **({"merged": True} if result.merged else {}), **extra,
    })

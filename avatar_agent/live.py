"""``avatar-agent talk``: the live conversation on real devices.

    mic ─MicCapture→ AudioBlock* ─VadSegmenter→ SpeechStart / Utterance
        ─Pipeline.hear/respond→ FrameChunk* ─Playback (master clock) + Presenter (window)

:class:`Conversation` is the state machine (listening → thinking → speaking). The
listener task never stops while the app runs; each turn is one named, cancellable task.
Barge-in: speech onset while the avatar speaks cancels the turn, flushes playback
(silence from the next block on), returns the window to the idle face, and keeps in the
history only the part of the reply that was heard. Merge (``audio.vad.merge_s``): speech
that starts again right after a turn was committed ("Hello! … My name is Anna") joins
that utterance; the turn answering the first part is dropped (the transcript keeps it,
marked ``merged``; the history does not) and the joined utterance is one turn
(:mod:`avatar_agent.turn_taking` holds the rules). Echo: while the avatar speaks the
mic's quiet frames (``audio.echo_gate_db``) count as silence, so its own voice neither
barges in nor gets transcribed; without barge-in the mic is ignored while it speaks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import signals
from .audio.capture import MicCapture
from .audio.io import rms_db
from .audio.playback import Playback, Scheduled
from .audio.turn_end import SmartTurn
from .audio.vad import SpeechPause, SpeechStart, VadSegmenter
from .config import Config
from .errors import DeviceError
from .pipeline import Pipeline
from .render.window import ChunkShow, Presenter, check_display
from .stt.base import STTStream
from .stt.feeder import SpeechFeeder
from .transport import MicSource, Screen, SpeakerClock
from .turn import TurnOutput, TurnResult, TurnState, run_turn
from .turn_taking import Action, decide
from .types import AudioBlock, FrameChunk, TurnMetrics, Utterance
from .workers import Worker

log = logging.getLogger(__name__)

_UNDUCK_S = 0.25  # a duck not confirmed as speech by then was a noise: resume the reply
_PLAYOUT_SLACK_S = 3.0  # a reply not heard this long after it should have ended: device lost
_KEEP_TURNS = 100  # finished turn records kept in memory (the JSONL transcript has them all)
# reply audio queued ahead of the speaker at most: rendering waits beyond it, so a long
# reply holds ~4 s of frames in memory (~80 MB at 512x512), not all of them (~60 MB per
# 3 s), and a barge-in throws little rendered work away
_AHEAD_S = 4.0
_NO_FRAMES = np.zeros((0, 0, 0, 3), np.uint8)
_NO_AUDIO = np.zeros(0, np.float32)


@dataclass
class _Played:
    chunk: FrameChunk
    at: Scheduled
    show: ChunkShow | None


@dataclass
class TurnRecord:
    """What one live turn did, for the JSONL transcript and the tests."""

    user: str = ""
    t_end: float = 0.0  # monotonic end of the user's speech: the origin of every metric
    played: list[_Played] = field(default_factory=list)
    metrics: TurnMetrics = field(default_factory=TurnMetrics)
    interrupted: bool = False
    error: str | None = None
    merged: bool = False  # cut because the user went on: joined into the next turn
    joined: bool = False  # answers an utterance that rejoined a cut one


def heard_text(played: list[_Played], heard_pos: int) -> str:
    """The reply text the listener heard by timeline position ``heard_pos``.

    Whole sentences that finished count fully; the one cut off keeps the share of its
    words matching the share of its audio heard (speech rate is near constant). A
    sentence's text rides on its first chunk; the chunks after it without text (a
    streamed TTS's pieces, the reply's first chunk played in two) are its audio too.
    """
    groups: list[tuple[list[str], int, int]] = []  # (words, start, length) per sentence
    for item in played:
        if item.chunk.text or not groups:
            groups.append((item.chunk.text.split(), item.at.start, item.at.length))
        else:
            text, start, _ = groups[-1]
            groups[-1] = (text, start, item.at.start + item.at.length - start)
    words: list[str] = []
    for parts, start, total in groups:
        got = min(max(heard_pos - start, 0), total)
        if got >= total:
            words.extend(parts)
        elif got > 0:
            words.extend(parts[: int(len(parts) * got / total)])
            words.append("…")
            break
        else:
            break
    return " ".join(words)


class Conversation:
    """Listens, answers, and gets interrupted. Run with :meth:`run` until :meth:`quit`."""

    def __init__(self, *, cfg: Config, pipeline: Pipeline, mic: MicSource, playback: SpeakerClock,
                 presenter: Screen, avatar_state: Any) -> None:
        # any transport (avatar_agent/transport.py): talk's devices, serve's WebRTC tracks
        self.cfg = cfg
        self.pipeline = pipeline      # STT → LLM → TTS → lip-sync, one turn at a time
        self.mic = mic                # 16 kHz blocks from the device callback
        self.playback = playback      # speaker queue; its sample count is the master clock
        self.presenter = presenter    # window thread, frames paced by that clock
        self.avatar_state = avatar_state
        self.vad = VadSegmenter.from_config(cfg.audio.vad, mic.sample_rate)
        # streaming STT: the utterance is fed to the STT while it is spoken
        self.feeder = SpeechFeeder(pipeline.stt, self.vad, prefetch_ms=cfg.stt.prefetch_ms,
                                   enabled=cfg.stt.stream and hasattr(pipeline.stt, "open_stream"))
        self.state = TurnState.LISTENING
        self.turns: collections.deque[TurnRecord] = collections.deque(maxlen=_KEEP_TURNS)
        self.barge_ins = 0
        self.merges = 0  # turns cut because the user went on (their speech answered as one)
        self._turn: asyncio.Task | None = None
        self._current: _LiveOutput | None = None
        self._quit = asyncio.Event()
        self._fatal: BaseException | None = None
        self._early = False  # the running turn started at a pause, before the hangover
        self._joining = False  # the speech in progress rejoined a committed utterance
        # audio.vad.turn_model: at a pause, an end-of-turn model decides whether to answer
        # early; it runs on its own worker while the listener goes on (``_gate``)
        vad = cfg.audio.vad
        self.turn_end = (SmartTurn.from_store(threads=vad.turn_threads)
                         if vad.turn_model == "smart_turn" and vad.early_ms > 0 else None)
        self._turn_worker = Worker("turn-end")
        self._gate: asyncio.Task | None = None  # P(turn complete) of the pending pause
        self._gate_until = 0.0
        self._loud_t = 0.0  # capture time of the last loud mic block while speaking

    # ---------------------------------------------------------------- control
    def quit(self) -> None:
        """Ask the conversation to end (loop thread)."""
        self._quit.set()

    def _set_state(self, state: TurnState) -> None:
        if state != TurnState.SPEAKING:
            self.playback.duck(False)
        self.state = state
        self.presenter.set_state(state)
        log.info("state %s", state)

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        """Listen until :meth:`quit`; raises :class:`DeviceError` when the mic is lost for good."""
        self.mic.drain()  # audio captured while the models loaded is stale
        if self.turn_end is not None:
            self._turn_worker.submit(self.turn_end.load)  # a failure shows at the first pause
        listener = asyncio.create_task(self._listen_forever(), name="talk-listen")
        quitter = asyncio.create_task(self._quit.wait(), name="talk-quit")
        try:
            await asyncio.wait([listener, quitter], return_when=asyncio.FIRST_COMPLETED)
            if listener.done() and not listener.cancelled() and listener.exception() is not None:
                raise listener.exception()
            if self._fatal is not None:
                raise self._fatal
        finally:
            for task in (listener, quitter):
                task.cancel()
            self._drop_gate()
            self._turn_worker.close()
            await self._cancel_turn(record_heard=True)
            # bounded: a task that swallowed its cancellation must not hold up the exit
            _, stuck = await asyncio.wait([listener, quitter], timeout=1.0)
            if stuck:
                log.warning("tasks did not stop at quit", extra={
                    "tasks": [t.get_name() for t in stuck]})
            for task in (listener, quitter):
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: already raised above if it mattered

    async def _listen_forever(self) -> None:
        retries = self.cfg.audio.device_retries
        while True:
            try:
                await self._listen()
                return
            except DeviceError as exc:
                if retries <= 0:
                    raise
                retries -= 1
                log.warning("mic lost, reopening", extra={"error": str(exc), "left": retries})
                self.mic.close()
                await asyncio.sleep(1.0)
                with contextlib.suppress(DeviceError):
                    self.mic.start()

    async def _listen(self) -> None:
        async for block in self.mic.blocks():
            gated = self._gated(block)
            self._duck(block, gated)
            events = self.vad.push(block.pcm, block.t, gate=gated)
            self.feeder.update(events)
            for event in events:
                await self._on_vad(event)
            if self._gate is not None and self._gate.done():
                await self._gate_done()
            await self.feeder.collect()

    def _duck(self, block: AudioBlock, gated: bool) -> None:
        """Silence the reply at the first loud mic block while speaking (possible barge-in).

        The VAD needs ``onset_ms`` of voice to confirm speech, and a reply often goes on
        over unvoiced consonants ("s", "t") before that; ducking at once keeps barge-in
        within 150 ms of the user's first sound. No confirmation within ``_UNDUCK_S``:
        a false alarm, the reply resumes.
        """
        if self.state != TurnState.SPEAKING or not self.cfg.audio.barge_in:
            return
        if not gated and self.vad.loud(block.pcm):
            if not self.playback.ducked:
                self.playback.duck(True)
                log.info("ducked: possible barge-in")
            self._loud_t = block.t
        elif self.playback.ducked and block.t - self._loud_t > _UNDUCK_S:
            self.playback.duck(False)
            log.info("unducked: no speech followed")

    async def _on_vad(self, event) -> None:
        action = decide(event, speaking=self.state == TurnState.SPEAKING,
                        barge_in=self.cfg.audio.barge_in, early=self._early,
                        turn_model=self.turn_end is not None)
        if isinstance(event, SpeechStart):
            self._joining = False  # new speech: a new turn
        elif not isinstance(event, SpeechPause):
            self._drop_gate()  # a resume or the hangover decide now, whatever the model says
        if action == Action.BARGE_IN:
            await self._barge_in(event.t)
        elif action in (Action.MERGE, Action.WAIT):
            self._joining = True
            self._early = False  # the early turn answered the cut part only
            if action == Action.MERGE and self._turn is not None and not self._turn.done():
                self.merges += 1
                log.info("merge: the user went on after the commit; the cut turn is dropped")
                await self._cancel_turn(record_heard=True, merged=True)
        elif action == Action.START_EARLY:  # answer early; dropped if the user goes on
            await self._start_early(event.utterance)
        elif action == Action.ASK_MODEL:  # unless the turn-end model hears a sentence going on
            self._drop_gate()
            self._gate = asyncio.create_task(self._turn_complete(event.utterance),
                                             name="talk-turn-end")
        elif action == Action.DROP_EARLY:  # it was a pause inside the question, not its end
            self._early = False
            await self._cancel_turn(record_heard=False)
        elif action == Action.KEEP:  # the early turn already answers this very speech
            self._early = False
        elif action == Action.START:  # a newer question wins
            await self._cancel_turn(record_heard=True, merged=self._joining)
            self._start_turn(event, self.feeder.take(event))

    async def _start_early(self, utt: Utterance) -> None:
        # a turn still running here answers an earlier part of this speech (WAIT) or an
        # earlier question
        await self._cancel_turn(record_heard=True, merged=self._joining)
        self._early = True
        self._start_turn(utt, self.feeder.take(utt))

    # ---------------------------------------------------------------- turn-end model
    async def _turn_complete(self, utt: Utterance) -> tuple[float, Utterance]:
        assert self.turn_end is not None
        return await self._turn_worker.run(self.turn_end.predict, utt.pcm, utt.sample_rate), utt

    def _drop_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.cancel()

    async def _gate_done(self) -> None:
        """The model answered for the pending pause (still a pause: a resume or the
        hangover drop the gate): answer early when it heard a finished turn."""
        gate, self._gate = self._gate, None
        assert gate is not None
        if gate.cancelled():
            return
        exc = gate.exception()
        if exc is not None:  # the hangover still ends the turn: degraded, not broken
            log.warning("turn-end model failed: waiting for the hangover", extra={"error": str(exc)})
            return
        p, utt = gate.result()
        log.info("turn end: p %.2f", p)
        if p >= self.cfg.audio.vad.turn_threshold:
            await self._start_early(utt)

    def _gated(self, block: AudioBlock) -> bool:
        """Echo gate: is this mic block to be treated as silence?

        While the avatar speaks (and ``echo_tail_ms`` after), a block counts only when it
        is louder than both ``echo_gate_db`` and the speaker's own level around that
        moment plus ``echo_return_db``: the user talking over the avatar, not its echo.
        """
        audio = self.cfg.audio
        speaking = self.state == TurnState.SPEAKING or block.t < self._gate_until
        if not speaking or audio.echo == "none":
            return False
        if not audio.barge_in:
            return True
        dur = len(block.pcm) / block.sample_rate
        ref = self.playback.level_db(block.t - 0.06, block.t + dur)
        return rms_db(block.pcm) < max(audio.echo_gate_db, ref + audio.echo_return_db)

    # ---------------------------------------------------------------- barge-in
    async def _barge_in(self, t_onset: float) -> None:
        heard = self.playback.flush()  # silence from the next block on
        self.presenter.clear()
        t_flush = time.monotonic()
        self.barge_ins += 1
        log.info("barge-in: onset to flush %.1f ms", (t_flush - t_onset) * 1000)
        if self._current is not None:
            self._current.record.metrics.stages["barge_in_onset_to_flush"] = t_flush - t_onset
        await self._cancel_turn(record_heard=True, heard_pos=heard)

    async def _cancel_turn(self, *, record_heard: bool, heard_pos: int | None = None,
                           merged: bool = False) -> None:
        """Stop the running turn. ``record_heard``: it is recorded with the part of the
        reply that was heard (else it leaves no record); ``merged``: in the transcript
        only, marked as merged into the next turn, never in the history."""
        task, self._turn = self._turn, None
        if task is None or task.done():
            return
        out = self._current
        if heard_pos is None:
            heard_pos = self.playback.flush()
            self.presenter.clear()
        if out is not None:
            out.heard_pos = heard_pos
            out.result.discard = not record_heard
            out.result.merged = merged
            out.record.merged = merged
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the turn records itself (run_turn), with what was heard
        self._current = None
        try:  # after a render still running; bounded, so a stuck one never holds up a quit
            async with asyncio.timeout(2.0):
                await self.pipeline.reset_avatar(self.avatar_state)
        except TimeoutError:
            log.warning("lip-sync busy for 2 s: the mouth was not reset after the cut turn")
        self._set_state(TurnState.LISTENING)

    # ---------------------------------------------------------------- one turn
    def _start_turn(self, utt: Utterance, heard: tuple[STTStream, Hashable] | None = None) -> None:
        record = TurnRecord(t_end=utt.t_end, joined=self._joining)
        # end of speech -> this turn starts (early_ms, plus the turn-end model; or the hangover)
        record.metrics.stages["commit"] = max(0.0, time.monotonic() - utt.t_end)
        out = _LiveOutput(self, record)
        self._current = out
        self._turn = asyncio.create_task(self._run_turn(out, utt, heard), name="talk-turn")
        self._turn.add_done_callback(self._turn_done)

    def _turn_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # only device loss gets here: the app cannot go on
            self._fatal = exc
            self._quit.set()

    async def _run_turn(self, out: _LiveOutput, utt: Utterance,
                        heard: tuple[STTStream, Hashable] | None) -> None:
        # the one turn path (avatar_agent/turn.py); this front end plays into the speaker
        # and the screen, and stays quiet on noise
        await run_turn(self.pipeline, self.avatar_state, out, utterance=utt, stream=heard,
                       mode="talk", quiet_on_nothing=True, result=out.result)
        # answered in full: speech after this is a new turn, not a continuation
        self.vad.seal(utt.t_start)
        self._current = None
        self._turn = None
        self._set_state(TurnState.LISTENING)

    def _play(self, record: TurnRecord, chunk: FrameChunk) -> None:
        at = self.playback.enqueue(chunk.audio, chunk.sample_rate)
        show = self.presenter.play(chunk, at)
        record.played.append(_Played(chunk, at, show))

    async def _wait_playout(self, record: TurnRecord) -> None:
        if not record.played:
            return
        end = record.played[-1].at.end
        deadline = time.monotonic() + self.playback.queued_s() + _PLAYOUT_SLACK_S
        while self.playback.heard_position() < end:
            if time.monotonic() > deadline or not self.playback.active:
                await self._speaker_lost()  # the rest of this reply went with the device
                return
            await asyncio.sleep(0.01)
        # the tail of our voice may still ring in the room: keep the gate shut a little
        self._gate_until = time.monotonic() + self.cfg.audio.echo_tail_ms / 1000.0
        # let the window show the last frame; its flags are threading.Events set by the
        # window thread, polled here so a quit never waits on a thread
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not all(  # noqa: ASYNC110
                item.show is None or item.show.done.is_set() for item in record.played):
            await asyncio.sleep(0.01)

    async def _speaker_lost(self) -> None:
        """The speaker stopped mid-reply: what was queued for it is dropped (the turn
        records the reply as heard up to here), and the speaker is reopened
        (``audio.device_retries`` times, 1 s apart) so the conversation goes on; a speaker
        that stays gone ends it (DeviceError, exit 7)."""
        heard = self.playback.flush()
        self.presenter.clear()
        if self._current is not None and self._current.heard_pos is None:
            self._current.heard_pos = heard
        for left in range(self.cfg.audio.device_retries, 0, -1):
            log.warning("speaker lost, reopening", extra={"left": left - 1})
            self.playback.close()
            await asyncio.sleep(1.0)
            try:
                self.playback.start()
                return
            except DeviceError:
                continue
        raise DeviceError("the audio output stopped playing (device lost?)",
                          hint="reconnect the speaker or check audio.output_device")

    def _finish_record(self, record: TurnRecord, result: TurnResult) -> dict[str, Any]:
        record.user = result.transcript.text
        record.error = result.failed
        record.interrupted = result.interrupted
        m = record.metrics
        shows = [p.show for p in record.played if p.show is not None]
        if shows and shows[0].first_shown_t is not None and record.played:
            # voice-to-face: end of user speech → first reply frame on screen
            lipsync_ready = m.first_frame_s
            m.first_frame_s = shows[0].first_shown_t - record.t_end
            if lipsync_ready is not None:
                m.stages["lipsync_ready"] = lipsync_ready
        m.frames_dropped = sum(s.dropped for s in shows)
        m.av_offsets_ms = [s.start_offset_ms for s in shows if s.start_offset_ms is not None]
        all_offsets = [o for s in shows for o in s.offsets_ms]
        if all_offsets:
            m.stages["av_offset_max_ms"] = max(abs(o) for o in all_offsets)
        _release_shown(record, everything=True)  # the record outlives the turn: text and timing only
        if record.user or record.played:
            self.turns.append(record)
        log.info("turn done: voice_to_face_s=%s interrupted=%s frames_dropped=%d",
                 None if m.first_frame_s is None else round(m.first_frame_s, 3),
                 record.interrupted, m.frames_dropped)
        _trim_heap()
        extra: dict[str, Any] = {"voice_to_face_s": m.first_frame_s}
        if record.joined:  # the user text holds every part of what they said
            extra["joined"] = True
        return extra


class _LiveOutput(TurnOutput):
    """A live turn's output: the speaker queue and the screen, heard up to a barge-in."""

    live = True

    def __init__(self, conv: Conversation, record: TurnRecord) -> None:
        self.conv = conv
        self.record = record
        self.result = TurnResult(metrics=record.metrics)
        self.heard_pos: int | None = None  # set on barge-in: where the listener stopped hearing

    async def emit(self, chunk: FrameChunk) -> None:
        conv = self.conv
        while conv.playback.active and conv.playback.queued_s() > _AHEAD_S:  # noqa: ASYNC110
            _release_shown(self.record)  # polls the speaker's clock: nothing to await on
            await asyncio.sleep(0.05)
        _release_shown(self.record)
        if not conv.playback.active:  # lost while the reply was being made
            await conv._speaker_lost()  # reopened: the rest of the reply plays there
        conv._play(self.record, chunk)

    async def drain(self) -> None:
        await self.conv._wait_playout(self.record)

    def heard(self) -> str:
        pos = self.heard_pos if self.heard_pos is not None else self.conv.playback.heard_position()
        return heard_text(self.record.played, pos)

    def set_state(self, state: TurnState) -> None:
        self.conv._set_state(state)

    def finish(self, result: TurnResult) -> dict[str, Any]:
        return self.conv._finish_record(self.record, result)


def _release_shown(record: TurnRecord, everything: bool = False) -> None:
    """Drop the frames and audio of the chunks already shown (all: ``everything``); the
    record keeps their text and timing (what :func:`heard_text` needs)."""
    for item in record.played:
        if not len(item.chunk.frames) and not len(item.chunk.audio):
            continue
        if everything or (item.show is not None and item.show.done.is_set()):
            light = dataclasses.replace(item.chunk, frames=_NO_FRAMES, audio=_NO_AUDIO)
            item.chunk = light
            if item.show is not None:
                item.show.chunk = light


def _trim_heap() -> None:
    """Give the freed frame buffers of a turn back to the OS (glibc keeps them otherwise).

    A turn allocates ~100 MB of frames on the lip-sync thread and frees them on others;
    glibc keeps such freed memory in its per-thread arenas. Measured in a 20-turn soak of
    ``talk``: resident size after warm-up 710-730 MB with the trim, 840-870 MB without.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (musl): nothing to trim
        return None


_LIBC = _load_libc()
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameters (malloc.h)
_M_ARENA_MAX = -8


def tune_allocator() -> None:
    """Keep a long-running process's memory flat: frames (0.8 MB each at 512x512) get
    their own mappings, returned to the OS when freed, instead of glibc's heap, whose
    dynamic threshold moves them there after the first free and then keeps the
    fragments; and few arenas for the many worker threads. Call before the models load
    (their threads create arenas). Measured in a 100-turn soak of ``talk``: see
    benchmarks/RESULTS.md ("soak")."""
    if _LIBC is None:
        return
    try:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        _LIBC.mallopt(_M_ARENA_MAX, 2)
    except AttributeError:  # not glibc
        pass


# -------------------------------------------------------------------- the command
def run_talk(cfg: Config, window: bool = True) -> int:
    """``avatar-agent talk``: run the live conversation; returns the exit code.

    ``q``/Esc in the window, Ctrl-C or SIGTERM end it cleanly with 0. A missing or lost
    device raises :class:`DeviceError` (one line, exit code 7).
    """
    # hand the GIL over more often (default 5 ms): the audio callbacks need it within a
    # 10-20 ms block while model threads run Python code
    sys.setswitchinterval(0.001)
    tune_allocator()
    try:
        return asyncio.run(_talk(cfg, window))
    except KeyboardInterrupt:  # Ctrl-C before the loop installed its handler
        return 0


async def _talk(cfg: Config, window: bool) -> int:
    from .face.avatar import load_avatar_image
    from .models import ModelStore

    loop = asyncio.get_running_loop()
    if window:
        check_display()
    mic = MicCapture(device=cfg.audio.input_device, sample_rate=cfg.audio.sample_rate,
                     block_ms=cfg.audio.block_ms, latency=cfg.audio.latency)
    playback = Playback(device=cfg.audio.output_device, block_ms=cfg.audio.output_block_ms,
                        latency=cfg.audio.latency)
    mic.start()  # fail fast on a missing device, before loading models
    try:
        image = load_avatar_image(cfg)
    except BaseException:
        mic.close()
        raise
    pipeline = Pipeline.from_config(cfg, ModelStore(progress=False))
    presenter: Presenter | None = None
    recorder = None
    try:
        load_times = await pipeline.aload()
        avatar_state = await pipeline.prepare_avatar(image)
        log.info("models loaded", extra={k: round(v, 3) for k, v in load_times.items()})
        warm_s = await pipeline.warm_up(avatar_state)
        log.info("warm-up %.2f s", warm_s)
        playback.start()
        conv_box: list[Conversation] = []
        presenter = Presenter(
            clock=playback, idle_fn=lambda t: pipeline.engine.idle_frame(avatar_state, t),
            fps=pipeline.engine.fps, title=cfg.window.title, show_status=cfg.window.show_status,
            scale=cfg.window.scale, window=window,
            on_quit=lambda: loop.call_soon_threadsafe(lambda: conv_box and conv_box[0].quit()))
        if cfg.window.record is not None:
            from .render.session import SessionRecorder

            recorder = SessionRecorder(cfg.window.record, fps=pipeline.engine.fps,
                                       playback=playback, presenter=presenter)
        presenter.start()
        conv = Conversation(cfg=cfg, pipeline=pipeline, mic=mic, playback=playback,
                            presenter=presenter, avatar_state=avatar_state)
        conv_box.append(conv)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, conv.quit)
        print(f"listening (window: {'on' if window else 'off'}); press q in the window or "
              "Ctrl-C to quit", flush=True)
        await conv.run()
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        signals.take_back()  # a quit signal in the tear-down exits at once
        mic.close()
        playback.close()
        if presenter is not None:
            presenter.stop()
        if recorder is not None:
            recorder.close()
        await pipeline.aclose()

"""``avatar-agent serve``: the live conversation in a browser, several sessions at once.

One aiohttp app serves the page (``GET /``), the signalling (``POST /offer``: the
browser's SDP offer in, the answer out; aiortc's "server" example pattern) and a status
(``GET /api/status``); with ``server.avatar: per_session`` also ``POST /avatar`` (a
portrait the page uploads, checked: size, decodable image, one usable face; the offer
names it). Each peer connection is one :class:`Session`: its own
:class:`~avatar_agent.live.Conversation` (history, VAD, avatar state, barge-in) over the
WebRTC transport of :mod:`avatar_agent.web.rtc` — the very engine ``talk`` runs over the
sound card and the window.

Shared between sessions: the loaded models (STT, LLM, TTS, lip-sync engine) and their
single-thread workers, so each model serves one call at a time, in arrival order; the
lip-sync *state* (mouth, counters, blink clock) is per session. A data channel
("events") carries status, transcript and per-turn latency to the page. A session ends
when the peer goes away (tab closed, connection failed, "bye" on the channel), when no
microphone audio arrives for ``server.audio_timeout_s``, or at shutdown; everything
it made (tasks, the presenter thread, tracks, the peer connection) is closed then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

from aiohttp import web
from aioice import ice as aioice_ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from .. import signals
from ..config import Config
from ..errors import AvatarError
from ..live import Conversation, tune_allocator
from ..pipeline import Pipeline
from ..render.window import ChunkShow, Presenter
from ..transcript import TranscriptLog
from ..types import FrameChunk, Transcript, TurnMetrics, Utterance
from .page import PAGE
from .rtc import RtcMic, RtcSpeaker, RtcVideoTrack

log = logging.getLogger(__name__)

# aioice ends a connection after 6 consent checks in a row without an answer, each sent
# once with a 0.5 s timeout: on a loaded machine (event loop or browser late by 0.5 s
# at every check for 30 s) it dropped healthy sessions. Sessions whose peer is really
# gone end sooner by the microphone watchdog (server.audio_timeout_s).
aioice_ice.CONSENT_FAILURES = max(aioice_ice.CONSENT_FAILURES, 24)

_MAX_SDP = 64 * 1024  # an offer is a few kB
_UPLOAD_SIDE = 1024  # uploaded portraits are scaled down to this (every frame is encoded)
_UPLOAD_PIXELS = 50_000_000  # refused before decoding: a 5 MB png can hold a huge picture
_UPLOAD_KEEP_S = 1800.0  # an uploaded portrait is kept this long for (re)starts


# -------------------------------------------------------------------- per-session parts
class _SessionTranscript:
    """The shared JSONL transcript, each record tagged with the session; also sent to the page."""

    def __init__(self, shared: TranscriptLog, session: Session) -> None:
        self.shared = shared
        self.session = session
        self.path = shared.path

    def append(self, record: dict[str, Any]) -> bool:
        rec = {**record, "mode": "serve", "session": self.session.id}
        self.session.on_turn(rec)
        return self.shared.append(rec)

    def read(self) -> list[dict[str, Any]]:
        return self.shared.read()


class _SessionPipeline(Pipeline):
    """A session's view of the shared pipeline: same models and workers, own history."""

    def __init__(self, base: Pipeline, session: Session) -> None:
        super().__init__(cfg=session.cfg, stt=base.stt, llm=base.llm, tts=base.tts,
                         engine=base.engine, transcript=_SessionTranscript(base.transcript, session))
        # one lip-sync thread for all sessions: safe for every engine (wav2lip's
        # inference request is not re-entrant); the state passed in is the session's
        self._lipsync = base._lipsync
        self._session = session

    async def hear(self, utt: Utterance, metrics: TurnMetrics | None = None,
                   **kw: Any) -> Transcript:
        self._session.send({"type": "hearing",
                            "since_end_ms": round((time.monotonic() - utt.t_end) * 1000, 1)})
        result = await super().hear(utt, metrics, **kw)
        if result.text:
            self._session.send({"type": "user", "text": result.text})
        return result

    async def aclose(self) -> None:  # the models belong to the server
        return None


class _WebPresenter(Presenter):
    """The stock presenter without a window; status and reply text also go to the page."""

    def __init__(self, session: Session, **kw: Any) -> None:
        super().__init__(window=False, **kw)
        self._session = session

    def set_state(self, state: str) -> None:
        super().set_state(state)
        self._session.send({"type": "status", "state": state})

    def play(self, chunk: FrameChunk, at: Any) -> ChunkShow:
        if chunk.text:
            self._session.send({"type": "assistant", "text": chunk.text})
        return super().play(chunk, at)


# -------------------------------------------------------------------- one browser session
class Session:
    """One peer connection: its tracks, its conversation, and its cleanup."""

    def __init__(self, server: AvatarServer, pc: RTCPeerConnection) -> None:
        self.server = server
        self.id = uuid.uuid4().hex[:12]
        self.pc = pc
        self.cfg = server.session_cfg
        self.loop = asyncio.get_running_loop()
        self.mic = RtcMic(sample_rate=self.cfg.audio.sample_rate, block_ms=self.cfg.audio.block_ms)
        self.speaker = RtcSpeaker(block_ms=self.cfg.audio.output_block_ms)
        self.video = RtcVideoTrack(self.loop)
        self.channel = None
        self.conv: Conversation | None = None
        self.presenter: _WebPresenter | None = None
        self.pipeline: _SessionPipeline | None = None
        self.state: Any = None
        self.task: asyncio.Task | None = None
        self.turns = 0
        self.started = time.monotonic()
        self._outbox: list[str] = []
        self._closing: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.end_reason = ""

    # ---------------------------------------------------------------- page events
    def send(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` as JSON on the data channel (queued until it opens; loop thread)."""
        text = json.dumps(msg, default=str)
        ch = self.channel
        if self.closed.is_set() or self.pc.connectionState in ("failed", "closed"):
            return  # aiortc would fail the send in a task nobody awaits
        if ch is None or ch.readyState != "open":
            self._outbox.append(text)
            del self._outbox[:-200]
            return
        try:
            ch.send(text)
        except Exception:  # the channel closed under us: the session is ending anyway
            log.debug("data channel send failed", exc_info=True)

    def on_channel(self, channel) -> None:
        self.channel = channel

        @channel.on("open")
        def _open() -> None:
            self._flush_outbox()

        @channel.on("message")
        def _message(text: Any) -> None:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                if json.loads(text).get("type") == "bye":
                    self.close("the page said bye")

        if channel.readyState == "open":
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        out, self._outbox = self._outbox, []
        for text in out:
            with contextlib.suppress(Exception):
                self.channel.send(text)

    def on_turn(self, rec: dict[str, Any]) -> None:
        self.turns += 1
        v2f = rec.get("voice_to_face_s")
        self.send({"type": "turn", "user": rec.get("user"), "assistant": rec.get("assistant"),
                   "interrupted": rec.get("interrupted"), "error": rec.get("error"),
                   "voice_to_face_ms": None if v2f is None else round(v2f * 1000)})

    # ---------------------------------------------------------------- lifecycle
    async def prepare(self, base: Pipeline, image) -> None:
        """Everything but the conversation task: avatar state, presenter, pipeline view."""
        self.state = await base.prepare_avatar(image)
        engine = base.engine
        self.pipeline = _SessionPipeline(base, self)
        self.speaker.start()
        state = self.state
        self.presenter = _WebPresenter(self, clock=self.speaker,
                                       idle_fn=lambda t: engine.idle_frame(state, t), fps=engine.fps)
        self.presenter.on_frame = self.video.push
        self.presenter.start()
        self.conv = Conversation(cfg=self.cfg, pipeline=self.pipeline, mic=self.mic,
                                 playback=self.speaker, presenter=self.presenter,
                                 avatar_state=self.state)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"serve-session-{self.id}")

    async def _run(self) -> None:
        timeout = self.server.cfg.server.audio_timeout_s
        watchdog = asyncio.create_task(self._watch_audio(timeout), name=f"serve-watch-{self.id}")
        try:
            self.send({"type": "session", "id": self.id, "mouth": self._mouth_box()})
            self.send({"type": "status", "state": self.conv.state})
            await self.conv.run()
            if not self.end_reason:
                self.end_reason = "the microphone track ended"
        except Exception as exc:  # one session's failure never takes the server down
            self.end_reason = f"failed: {type(exc).__name__}: {exc}"
            log.warning("session %s failed: %s", self.id, exc)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self._cleanup()

    def _mouth_box(self) -> list[float] | None:
        """The region lip-sync changes, as fractions of the frame (the page watches it)."""
        face, image = getattr(self.state, "face", None), getattr(self.state, "image", None)
        if face is None or image is None or not hasattr(face, "lower_face_box"):
            return None
        h, w = image.shape[:2]
        x1, y1, x2, y2 = face.lower_face_box(0.0)
        return [round(x1 / w, 4), round(y1 / h, 4), round(x2 / w, 4), round(y2 / h, 4)]

    async def _watch_audio(self, limit_s: float) -> None:
        """End the session when the microphone sends nothing for ``limit_s``: never
        started, or stopped (a browser that died sends no goodbye, and ICE would take
        30 s to notice). A live browser sends a packet every 20 ms, silence included."""
        while True:
            await asyncio.sleep(min(1.0, limit_s))
            last = self.mic.last_audio_t
            if time.monotonic() - (last if last is not None else self.started) < limit_s:
                continue
            what = "no microphone audio" if last is None else "the microphone stopped"
            text = f"{what} for {limit_s:g} s"
            self.send({"type": "error", "text": text})
            self.close(text)
            return

    def close(self, reason: str) -> None:
        """End the session (idempotent, loop thread): the conversation stops, then cleanup."""
        if not self.end_reason:
            self.end_reason = reason
        if self.conv is not None:
            self.conv.quit()
        self.mic.close()
        if self.task is None and self._closing is None:  # never started: clean up here
            self._closing = asyncio.create_task(self._cleanup(), name=f"serve-close-{self.id}")

    async def _cleanup(self) -> None:
        if self.closed.is_set():
            return
        self.mic.close()
        self.speaker.close()
        self.video.stop()
        if self.presenter is not None:
            await asyncio.to_thread(self.presenter.stop)
            self.presenter.on_frame = None
        if self.state is not None and self.pipeline is not None:
            with contextlib.suppress(RuntimeError):  # the server is closing its workers
                await self.pipeline.reset_avatar(self.state)
        with contextlib.suppress(Exception):
            await self.pc.close()
        self.server.forget(self)
        self.conv = self.pipeline = self.presenter = self.state = None
        self.channel = None
        self.closed.set()
        log.info("session %s ended after %.1f s, %d turns: %s", self.id,
                 time.monotonic() - self.started, self.turns, self.end_reason)


# -------------------------------------------------------------------- the server
class AvatarServer:
    """Loaded models, the session table, and the aiohttp routes."""

    def __init__(self, cfg: Config, pipeline: Pipeline, image) -> None:
        self.cfg = cfg
        self.base = pipeline
        self.image = image
        self.session_cfg = cfg.model_copy(deep=True)
        self.session_cfg.audio.echo = cfg.server.echo
        self.sessions: dict[str, Session] = {}
        self._reserved = 0  # offers being answered (count against the limit)
        self.started = 0
        self.ended = 0
        self.refused = 0
        self.lags: collections.deque[float] = collections.deque(maxlen=200)  # last 10 s
        self.lag_max_ms = 0.0
        self._lag_task: asyncio.Task | None = None
        # per_session: uploaded portraits (id -> (time, image)), the newest few; each
        # session still prepares its own avatar state from the image
        self.avatars: collections.OrderedDict[str, tuple[float, Any]] = collections.OrderedDict()
        self._checking = asyncio.Semaphore(2)  # portraits checked at once

    # ---------------------------------------------------------------- bookkeeping
    def forget(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.ended += 1

    def _token_ok(self, given: Any) -> bool:
        want = self.cfg.server.token
        if not want:
            return True
        return isinstance(given, str) and hmac.compare_digest(given.encode(), want.encode())

    def _ice(self) -> RTCConfiguration:
        # no STUN by default (aiortc's default asks a public STUN server): host candidates
        # reach a LAN; across NAT, list a TURN server in server.ice_servers
        return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in self.cfg.server.ice_servers])

    # ---------------------------------------------------------------- routes
    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_SDP * 2)
        app.router.add_get("/", self.page)
        app.router.add_post("/offer", self.offer)
        app.router.add_post("/avatar", self.upload_avatar)
        app.router.add_get("/api/status", self.status)
        app.on_startup.append(self._start_lag_watch)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _start_lag_watch(self, app: web.Application) -> None:
        # aiortc encodes every outgoing frame in the loop's default executor (min(32,
        # cores + 4) threads): with a few sessions the 20 ms audio frames queued behind
        # the video frames and the audio fell behind real time. Enough threads that
        # every track has one; the OS shares the cores between them.
        from concurrent.futures import ThreadPoolExecutor

        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(
            max_workers=8 + 4 * self.cfg.server.max_sessions, thread_name_prefix="serve-codec"))
        self._lag_task = asyncio.create_task(self._watch_lag(), name="serve-loop-lag")

    async def _watch_lag(self) -> None:
        """Event-loop lag (ms late for a 50 ms sleep): the media and ICE consent checks
        (0.5 s to answer) run on this loop, so lag is what an overloaded server shows first."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lag = (time.monotonic() - t - 0.05) * 1000
            self.lags.append(lag)
            self.lag_max_ms = max(self.lag_max_ms, lag)

    async def page(self, request: web.Request) -> web.Response:
        if not self._token_ok(request.query.get("token")):
            return web.Response(status=403, text="error: this server needs ?token=... in the address\n")
        ice = [s.model_dump(exclude_none=True) for s in self.cfg.server.ice_servers]
        page = PAGE.replace("__ICE_SERVERS__", json.dumps(ice).replace("</", "<\\/"))
        page = page.replace("__AVATAR_MODE__", json.dumps(self.cfg.server.avatar))
        page = page.replace("__AVATAR_MAX_MB__", json.dumps(self.cfg.server.avatar_max_mb))
        return web.Response(text=page, content_type="text/html")

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "sessions": len(self.sessions), "max_sessions": self.cfg.server.max_sessions,
            "started": self.started, "ended": self.ended, "refused": self.refused,
            "threads": threading.active_count(),
            # besides the codec pool (which keeps its idle threads): model workers, the
            # presenters; back to the same count when every session has ended
            "threads_other": sorted(t.name for t in threading.enumerate()
                                    if not t.name.startswith("serve-codec")),
            "fds": _open_fds(),
            "rss_mb": _rss_mb(),
            "loop_lag_ms": {"last_10s_max": round(max(self.lags, default=0.0), 1),
                            "max": round(self.lag_max_ms, 1)},
            "presenter_threads": sum(t.name == "avatar-presenter" for t in threading.enumerate()),
            # asyncio tasks besides aiohttp's connection handlers: a session leaves none
            "tasks": sorted(n for n in map(_task_name, asyncio.all_tasks())
                            if "RequestHandler." not in n),
            "ids": sorted(self.sessions),
            "avatar": self.cfg.server.avatar, "uploaded_avatars": len(self.avatars),
        })

    async def upload_avatar(self, request: web.Request) -> web.Response:
        """``POST /avatar`` (the image file as the body): check a visitor's portrait.

        200 ``{"avatar": id, "width", "height"}`` when it can be used; otherwise one clear
        error: 403 (shared avatar / token), 413 (too large), 415 (not a readable image),
        422 (no usable face), 503 (busy checking others). Nothing is written to disk."""
        if not self._token_ok(request.query.get("token")):
            return _error(403, "wrong or missing token")
        if self.cfg.server.avatar != "per_session":
            return _error(403, "this server shows the same avatar to everyone "
                               "(server.avatar: shared)")
        limit = int(self.cfg.server.avatar_max_mb * 1024 * 1024)
        too_big = f"the portrait is larger than {self.cfg.server.avatar_max_mb:g} MB: use a smaller jpg or png"
        if (request.content_length or 0) > limit:
            return _error(413, too_big)
        if self._checking.locked():
            return _error(503, "busy checking other portraits, try again in a moment",
                          headers={"Retry-After": "2"})
        async with self._checking:
            data = bytearray()
            async for chunk in request.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > limit:
                    return _error(413, too_big)
            if not data:
                return _error(400, "no file: POST the portrait (jpg or png) as the request body")
            try:
                image = await asyncio.to_thread(_decode_portrait, bytes(data))
            except _BadUpload as exc:
                return _error(415, str(exc))
            try:
                state = await self.base.prepare_avatar(image)
            except AvatarError as exc:  # NoFaceError: none found, cut by the border, ...
                return _error(422, f"{exc.message}: use a frontal portrait with one clear face")
            except Exception as exc:  # noqa: BLE001 - a bad picture must not end the server
                log.warning("portrait check failed: %s", exc)
                return _error(422, f"the portrait could not be used ({type(exc).__name__})")
            self.base.engine.reset(state)
            del state
        avatar_id = uuid.uuid4().hex[:16]
        now = time.monotonic()
        self.avatars[avatar_id] = (now, image)
        keep = 2 * self.cfg.server.max_sessions
        for key, (t, _) in list(self.avatars.items()):
            if len(self.avatars) > keep or now - t > _UPLOAD_KEEP_S:
                del self.avatars[key]
        h, w = image.shape[:2]
        log.info("portrait %s accepted (%dx%d)", avatar_id, w, h)
        return web.json_response({"avatar": avatar_id, "width": w, "height": h})

    def _session_image(self, avatar_id: Any):
        """The image a new session shows: an uploaded portrait, or the configured one."""
        if avatar_id in (None, ""):
            return self.image
        if self.cfg.server.avatar != "per_session":
            raise _BadOffer("this server shows the same avatar to everyone (server.avatar: shared)")
        entry = self.avatars.get(avatar_id) if isinstance(avatar_id, str) else None
        if entry is None:
            raise _BadOffer("unknown portrait (expired or never uploaded): choose it again")
        self.avatars[avatar_id] = (time.monotonic(), entry[1])  # used: kept longer
        self.avatars.move_to_end(avatar_id)
        return entry[1]

    async def offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            sdp, kind = params["sdp"], params["type"]
            if not isinstance(sdp, str) or kind != "offer" or len(sdp) > _MAX_SDP:
                raise ValueError
        except Exception:
            return _error(400, "bad request: POST JSON {\"sdp\": \"<SDP offer>\", \"type\": \"offer\"}")
        if not self._token_ok(params.get("token")):
            return _error(403, "wrong or missing token")
        try:
            image = self._session_image(params.get("avatar"))
        except _BadOffer as exc:
            return _error(400, str(exc))
        limit = self.cfg.server.max_sessions
        if len(self.sessions) + self._reserved >= limit:
            self.refused += 1
            return _error(503, f"busy: {limit} session(s) already running, try again later",
                          headers={"Retry-After": "10"})
        self._reserved += 1
        pc = RTCPeerConnection(self._ice())
        session = Session(self, pc)
        try:
            answer = await self._answer(session, sdp, image)
        except _BadOffer as exc:
            session.close("bad offer")
            await session.closed.wait()
            return _error(400, f"bad offer: {exc}")
        except Exception:
            session.close("could not answer")
            await session.closed.wait()
            raise
        finally:
            self._reserved -= 1
        self.sessions[session.id] = session
        self.started += 1
        session.start()
        log.info("session %s started (%d running)", session.id, len(self.sessions))
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": session.id})

    async def _answer(self, session: Session, sdp: str, image) -> RTCSessionDescription:
        pc = session.pc

        @pc.on("datachannel")
        def _channel(channel) -> None:
            session.on_channel(channel)

        @pc.on("track")
        def _track(track) -> None:
            if track.kind == "audio" and session.mic.first_audio_t is None:
                session.mic.attach(track)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            log.info("session %s connection %s", session.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                session.close(f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise _BadOffer(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        kinds = [t.kind for t in pc.getTransceivers()]
        if "audio" not in kinds:
            raise _BadOffer("the offer has no audio (microphone) track")
        await session.prepare(self.base, image)
        pc.addTrack(session.speaker.track)
        if "video" in kinds:
            pc.addTrack(session.video)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return pc.localDescription

    async def _shutdown(self, app: web.Application) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        sessions = list(self.sessions.values())
        for s in sessions:
            s.send({"type": "error", "text": "the server is shutting down"})
            s.close("server shutdown")
        if sessions:
            await asyncio.wait([asyncio.ensure_future(s.closed.wait()) for s in sessions],
                               timeout=5.0)


def _rss_mb() -> float | None:
    """Resident memory of this process (Linux), for the status and the benchmarks."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _open_fds() -> int | None:
    """Open file descriptors of this process (Linux): sockets included, for leak checks."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _task_name(task: asyncio.Task) -> str:
    coro = task.get_coro()
    return f"{task.get_name()}:{getattr(coro, '__qualname__', type(coro).__name__)}"


class _BadOffer(Exception):
    pass


class _BadUpload(Exception):
    pass


def _decode_portrait(data: bytes):
    """An uploaded file as a (H, W, 3) BGR image, at most ``_UPLOAD_SIDE`` px on its
    longer side; :class:`_BadUpload` with a message for the page otherwise."""
    import io

    import cv2
    import numpy as np

    not_image = "not an image the server can read: use a jpg or png photo"
    try:  # the header's size first, before a small file decodes into gigabytes
        from PIL import Image

        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
        if w * h > _UPLOAD_PIXELS:
            raise _BadUpload(f"the picture is too large ({w}x{h} pixels): use at most "
                             f"{_UPLOAD_PIXELS // 1_000_000} megapixels")
    except ImportError:  # Pillow absent: OpenCV's own pixel limit applies
        pass
    except _BadUpload:
        raise
    except Exception:  # noqa: BLE001 - Pillow cannot read it: neither can we
        raise _BadUpload(not_image) from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 32:
        raise _BadUpload(not_image)
    side = max(image.shape[:2])
    if side > _UPLOAD_SIDE:
        scale = _UPLOAD_SIDE / side
        image = cv2.resize(image, (max(1, round(image.shape[1] * scale)),
                                   max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    # even sides: the VP8 encoder wants them (I420)
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
    return np.ascontiguousarray(image)


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": text}, status=status, headers=headers)


# -------------------------------------------------------------------- the command
def run_serve(cfg: Config) -> int:
    """``avatar-agent serve``: load the models once, then serve until Ctrl-C / SIGTERM."""
    import sys

    sys.setswitchinterval(0.001)  # as in talk: audio pacing needs the GIL often
    tune_allocator()  # as in talk: frames freed back to the OS, memory flat over sessions
    try:
        return asyncio.run(_serve(cfg))
    except KeyboardInterrupt:
        return 0


def _check_bind(host: str, port: int) -> None:
    """One clear line when the address cannot be listened on (in use, not ours)."""
    import socket

    from ..errors import DeviceError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeviceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          hint="check server.host / --host") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise DeviceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="pick another --port, or stop what uses it") from None


async def _serve(cfg: Config) -> int:
    import signal

    from ..errors import DeviceError
    from ..face.avatar import load_avatar_image
    from ..models import ModelStore

    _check_bind(cfg.server.host, cfg.server.port)  # before a minute of model loading
    image = load_avatar_image(cfg)
    pipeline = Pipeline.from_config(cfg, ModelStore(progress=False))
    runner: web.AppRunner | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await pipeline.aload()
        warm_state = await pipeline.prepare_avatar(image)
        await pipeline.warm_up(warm_state)
        del warm_state
        server = AvatarServer(cfg, pipeline, image)
        runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
        await runner.setup()
        host, port = cfg.server.host, cfg.server.port
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise DeviceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="pick another --port, or stop what uses it") from None
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        bound = site._server.sockets[0].getsockname()[1] if site._server else port
        url = f"http://{host}:{bound}/"
        print(f"serving on {url} (max {cfg.server.max_sessions} sessions); Ctrl-C quits",
              flush=True)
        await stop.wait()
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        signals.take_back()  # a quit signal in the tear-down exits at once
        if runner is not None:
            await runner.cleanup()
        await pipeline.aclose()

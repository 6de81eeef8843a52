"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the cloud-provider tests.

Stdlib ``http.server`` in a thread: no network, no mocks inside the client. It speaks
the three endpoints the providers use, the way OpenAI does:

- ``POST /v1/chat/completions``: JSON, or SSE (``data: {...}`` chunks, ``data: [DONE]``)
  when ``stream`` is true; one chunk per scripted token, ``token_delay_s`` apart.
- ``POST /v1/audio/transcriptions``: multipart form with a ``file`` (decoded with
  soundfile so the test can check what the client sent) -> ``{"text": ...}``.
- ``POST /v1/audio/speech``: JSON -> raw 24 kHz mono int16 PCM (``response_format=pcm``),
  a tone whose length grows with the text, streamed in deliberately odd-sized pieces.

Faults are scripted per request with :meth:`OpenAIServer.fail_next`: a status code (401,
429, 500, ...) with OpenAI-style JSON error bodies and headers, or a delay before the
response (to hit the client's timeout). Every request is recorded; a client that
closes the connection mid-stream sets :attr:`OpenAIServer.disconnected`.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

SPEECH_RATE = 24000  # OpenAI's pcm format: 24 kHz, mono, int16 little-endian
SECONDS_PER_CHAR = 0.05  # the fake voice speaks 20 characters per second


@dataclass
class Fault:
    """One scripted failure for the next matching request."""

    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (status 200 = answer normally after it)


@dataclass
class Request:
    """What the server received (for assertions)."""

    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    audio: tuple[np.ndarray, int] | None = None  # decoded upload: (pcm, sample_rate)
    audio_format: str = ""  # the upload as soundfile reads it: "WAV PCM_16 1ch"


class OpenAIServer:
    """Start with ``with OpenAIServer() as srv:``; ``srv.base_url`` ends in ``/v1``."""

    def __init__(self, *, api_key: str = "sk-test-0123456789abcdef") -> None:
        self.api_key = api_key
        self.reply_tokens: list[str] = ["Hello", " there", "!", " How", " can", " I", " help", "?"]
        self.token_delay_s = 0.0
        self.die_after_tokens: int | None = None  # next stream: the server drops the connection after this many
        self.transcript = "hello world"
        self.speech_chunk_bytes = 4801  # odd on purpose: int16 samples split across reads
        self.speech_delay_s = 0.0
        self.requests: list[Request] = []
        self.tokens_sent = 0
        self.disconnected = threading.Event()
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-server",
                                        daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``path`` (e.g. ``/v1/chat/completions``)."""
        with self._lock:
            self._faults.setdefault(path, []).extend(faults)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path) or []
            return queue.pop(0) if queue else None

    def count(self, path: str) -> int:
        """How many requests reached ``path``."""
        return sum(1 for r in self.requests if r.path == path)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error payload."""
    kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        # -------------------------------------------------------------- plumbing
        def _send_json(self, status: int, payload: dict[str, Any],
                       headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _start_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _write_chunk(self, data: bytes) -> bool:
            """Write one HTTP chunk; False when the client has gone away."""
            try:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                return True
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                server.disconnected.set()
                self.close_connection = True
                return False

        def _end_stream(self) -> None:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                server.disconnected.set()

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            req = Request(path=self.path, headers={k.lower(): v for k, v in self.headers.items()})
            if self.headers.get_content_type() == "application/json":
                req.json = json.loads(raw or b"{}")
            elif self.headers.get_content_type() == "multipart/form-data":
                req.form, req.audio, req.audio_format = _parse_form(self.headers["Content-Type"], raw)
            server.requests.append(req)

            fault = server.take_fault(self.path)
            if fault and fault.delay_s:
                time.sleep(fault.delay_s)
            if fault and fault.status != 200:
                body = fault.body or error_body(fault.status, f"scripted failure {fault.status}")
                self._send_json(fault.status, body, fault.headers)
                return
            if req.headers.get("authorization") != f"Bearer {server.api_key}":
                given = req.headers.get("authorization", "")[7:]
                # like OpenAI, echo part of the wrong key: the client must never show it
                self._send_json(401, error_body(401, f"Incorrect API key provided: {given}."))
                return
            route = {"/v1/chat/completions": self._chat, "/v1/audio/transcriptions": self._stt,
                     "/v1/audio/speech": self._speech}.get(self.path)
            if route is None:
                self._send_json(404, error_body(404, f"no route {self.path}"))
                return
            route(req)

        # -------------------------------------------------------------- endpoints
        def _chat(self, req: Request) -> None:
            body = req.json or {}
            limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 10**6)
            tokens = server.reply_tokens[:limit]
            base = {"id": "chatcmpl-test", "created": int(time.time()), "model": body.get("model")}
            if not body.get("stream"):
                self._send_json(200, {**base, "object": "chat.completion", "choices": [{
                    "index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "".join(tokens)}}]})
                return
            self._start_stream("text/event-stream")
            first = {**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
            if not self._write_chunk(f"data: {json.dumps(first)}\n\n".encode()):
                return
            die_after, server.die_after_tokens = server.die_after_tokens, None
            for k, tok in enumerate(tokens):
                if k == die_after:  # the server process dies mid-stream: no [DONE], no chunk end
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                time.sleep(server.token_delay_s)
                chunk = {**base, "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": tok}, "finish_reason": None}]}
                if not self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode()):
                    return  # client closed the stream: stop "generating"
                server.tokens_sent += 1
            last = {**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self._write_chunk(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
            self._end_stream()

        def _stt(self, req: Request) -> None:
            if req.audio is None:
                self._send_json(400, error_body(400, "file is not a readable audio file"))
                return
            self._send_json(200, {"text": server.transcript})

        def _speech(self, req: Request) -> None:
            body = req.json or {}
            if body.get("response_format") != "pcm":
                self._send_json(400, error_body(400, "this test server only speaks pcm"))
                return
            seconds = SECONDS_PER_CHAR * len(body.get("input", "")) / float(body.get("speed") or 1.0)
            t = np.arange(int(seconds * SPEECH_RATE)) / SPEECH_RATE
            pcm = (0.3 * np.sin(2 * np.pi * 220.0 * t) * 32767).astype("<i2").tobytes()
            self._start_stream("application/octet-stream")
            step = server.speech_chunk_bytes
            for start in range(0, len(pcm), step):
                time.sleep(server.speech_delay_s)
                if not self._write_chunk(pcm[start:start + step]):
                    return
            self._end_stream()

    return Handler


def _parse_form(content_type: str, raw: bytes
                ) -> tuple[dict[str, str], tuple[np.ndarray, int] | None, str]:
    """multipart/form-data -> (text fields, decoded audio of the ``file`` field, its format)."""
    import soundfile as sf

    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, str] = {}
    audio = None
    fmt = ""
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            fields["filename"] = part.get_filename() or ""
            try:
                info = sf.info(io.BytesIO(payload))
                fmt = f"{info.format} {info.subtype} {info.channels}ch"
                data, sr = sf.read(io.BytesIO(payload), dtype="float32")
                audio = (data, int(sr))
            except Exception:  # noqa: BLE001 - an unreadable upload is the client's bug, reported as 400
                audio = None
        else:
            fields[str(name)] = payload.decode()
    return fields, audio, fmt

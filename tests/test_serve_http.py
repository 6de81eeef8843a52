"""``serve``'s HTTP side without models: the token, bad offers, the limit's answer.

A real aiohttp server on 127.0.0.1 and a real client; offers are refused before any
model would be needed (the browser tests in tests/e2e/test_serve.py do the rest).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from avatar_agent.config import load_config
from avatar_agent.web.server import AvatarServer


async def _serve(*sets: str, pipeline=None):
    """The server's routes on 127.0.0.1 (any port); ``pipeline(cfg)`` makes its pipeline."""
    cfg = load_config(None, list(sets))
    srv = AvatarServer(cfg, pipeline=pipeline and pipeline(cfg), image=None)  # type: ignore[arg-type]
    runner = web.AppRunner(srv.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return srv, runner, f"http://127.0.0.1:{port}/"


async def test_token_guards_page_and_offer() -> None:
    srv, runner, url = await _serve("server.token=s3cret")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 403 and (await r.text()).startswith("error: ")
            async with http.get(url + "?token=wrong") as r:
                assert r.status == 403
            async with http.get(url + "?token=s3cret") as r:
                assert r.status == 200 and "avatarStats" in await r.text()
            async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer"}) as r:
                assert r.status == 403 and "token" in (await r.json())["error"]
            async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer",
                                                      "token": "s3cret"}) as r:
                assert r.status == 400 and (await r.json())["error"].startswith("bad offer")
            async with http.get(url + "api/status") as r:
                st = await r.json()
        assert st["sessions"] == 0 and st["presenter_threads"] == 0
    finally:
        await runner.cleanup()


async def test_page_carries_the_ice_servers_and_nothing_else_by_default() -> None:
    srv, runner, url = await _serve(
        'server.ice_servers=[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]')
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            page = await r.text()
        assert 'const ICE_SERVERS = [{"urls": "turn:turn.example.org:3478"' in page
    finally:
        await runner.cleanup()
    srv, runner, url = await _serve()
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert "const ICE_SERVERS = [];" in await r.text()
        assert srv._ice().iceServers == []  # aiortc would ask a public STUN server otherwise
    finally:
        await runner.cleanup()


def test_cli_bad_port_and_busy_port_are_one_line() -> None:
    """Before any model loads: a port out of range (exit 3), a port in use (exit 7)."""
    import socket
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "avatar_agent", "serve", *args],
                              capture_output=True, text=True, timeout=60)

    r = run("--port", "70000")
    assert r.returncode == 3 and r.stderr.startswith("error: --port 70000"), r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run("--port", str(port))
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_config_show_masks_the_token_and_turn_credential() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "avatar_agent", "config", "show",
                        "--set", "server.token=t0ken-value", "--set",
                        'server.ice_servers=[{"urls": "turn:h:3478", "username": "u", "credential": "p4ss"}]'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "t0ken-value" not in r.stdout and "p4ss" not in r.stdout
    assert "max_sessions: 4" in r.stdout and "turn:h:3478" in r.stdout


# -------------------------------------------------------------------- server.avatar
class _FaceCheck:
    """The part of the pipeline ``POST /avatar`` uses: the real viseme engine's analysis
    (face detector + mesh), no speech models."""

    def __init__(self, cfg, store) -> None:
        from avatar_agent import registry

        self.engine = registry.create("lipsync", "viseme", cfg=cfg, store=store)

    async def prepare_avatar(self, image):
        import asyncio

        return await asyncio.to_thread(self.engine.prepare, image)


async def _serve_checked(store, *sets: str):
    return await _serve("face.cache=false", *sets, pipeline=lambda cfg: _FaceCheck(cfg, store))


def _png(image) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


async def test_shared_avatar_refuses_uploads(store) -> None:
    srv, runner, url = await _serve_checked(store)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                page = await r.text()
            assert 'AVATAR_MODE = "shared"' in page and 'id="portraitRow" hidden' in page
            async with http.post(url + "avatar", data=b"\x89PNG....") as r:
                assert r.status == 403 and "same avatar" in (await r.json())["error"]
            async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer",
                                                      "avatar": "abc"}) as r:
                assert r.status == 400 and "same avatar" in (await r.json())["error"]
    finally:
        await runner.cleanup()


async def test_per_session_portrait_upload_is_checked(store, face_bgr) -> None:
    """Too large, not an image, a picture bomb, no face: one clear error each, and the
    server keeps serving; a portrait with a face is accepted (scaled to 1024 px) and an
    offer may name it (an unknown name is refused)."""
    import io

    import cv2
    import numpy as np
    from PIL import Image

    srv, runner, url = await _serve_checked(store, "server.avatar=per_session",
                                            "server.avatar_max_mb=1", "server.token=t")
    try:
        async with aiohttp.ClientSession() as http:
            async def post(data: bytes, token: str = "t") -> tuple[int, dict]:
                async with http.post(url + f"avatar?token={token}", data=data) as r:
                    return r.status, await r.json()

            async with http.get(url + "?token=t") as r:
                page = await r.text()
            assert 'AVATAR_MODE = "per_session"' in page and 'id="portrait"' in page
            assert (await post(_png(face_bgr), token="x"))[0] == 403
            code, body = await post(b"\0" * (1024 * 1024 + 10))
            assert code == 413 and "larger than 1 MB" in body["error"], body
            code, body = await post(b"")
            assert code == 400 and "no file" in body["error"], body
            code, body = await post(b"GIF89a not really a picture" * 20)
            assert code == 415 and body["error"].startswith("not an image"), body
            bomb = io.BytesIO()  # 70 Mpx of one grey: a few hundred kB as png
            Image.new("L", (10000, 7000), 128).save(bomb, "PNG")
            code, body = await post(bomb.getvalue())
            assert code == 415 and "too large (10000x7000 pixels)" in body["error"], body
            code, body = await post(_png(np.full((400, 400, 3), 120, np.uint8)))
            assert code == 422 and "no face" in body["error"], body
            # a face, twice the size: accepted, scaled down, and usable in an offer
            big = cv2.resize(face_bgr, (face_bgr.shape[1] * 3, face_bgr.shape[0] * 3))
            ok, jpg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 80])
            code, body = await post(jpg.tobytes())
            assert code == 200, body
            assert max(body["width"], body["height"]) == 1024, body
            assert srv.avatars[body["avatar"]][1].shape[:2] == (body["height"], body["width"])
            async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer", "token": "t",
                                                      "avatar": "not-uploaded"}) as r:
                assert r.status == 400 and "unknown portrait" in (await r.json())["error"]
            async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer", "token": "t",
                                                      "avatar": body["avatar"]}) as r:
                # the portrait is known: the offer gets as far as its (garbage) SDP
                assert r.status == 400 and (await r.json())["error"].startswith("bad offer")
            async with http.get(url + "api/status") as r:
                st = await r.json()
        assert st["uploaded_avatars"] == 1 and st["sessions"] == 0 and st["avatar"] == "per_session"
    finally:
        await runner.cleanup()


async def test_fifty_offers_beyond_the_limit_are_told_busy() -> None:
    """With every slot taken, 50 offers at once: 503 "busy" each with Retry-After; the
    page, the status and the refused count stay right (the browser test does this with
    3 real sessions)."""
    import asyncio

    srv, runner, url = await _serve("server.max_sessions=2")
    srv.sessions.update({"a": object(), "b": object()})  # type: ignore[dict-item]
    try:
        async with aiohttp.ClientSession() as http:
            async def knock() -> tuple[int, str | None, str]:
                async with http.post(url + "offer", json={"sdp": "v=0", "type": "offer"}) as r:
                    return r.status, r.headers.get("Retry-After"), (await r.json())["error"]

            answers = await asyncio.gather(*(knock() for _ in range(50)))
            assert all(a == (503, "10", "busy: 2 session(s) already running, try again later")
                       for a in answers), answers[:3]
            async with http.get(url) as r:
                assert r.status == 200
            async with http.get(url + "api/status") as r:
                st = await r.json()
        assert st["refused"] == 50 and st["sessions"] == 2 and st["started"] == 0
    finally:
        srv.sessions.clear()
        await runner.cleanup()

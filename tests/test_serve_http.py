"""``serve``'s HTTP side without models: the token, bad offers, the limit's answer.

A real aiohttp server on 127.0.0.1 and a real client; offers are refused before any
model would be needed (the browser tests in tests/e2e/test_serve.py do the rest).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from avatar_agent.config import load_config
from avatar_agent.web.server import AvatarServer


async def _serve(*sets: str):
    cfg = load_config(None, list(sets))
    srv = AvatarServer(cfg, pipeline=None, image=None)  # type: ignore[arg-type]
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

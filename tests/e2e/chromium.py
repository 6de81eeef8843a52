"""Headless Debian chromium for the browser tests, driven over the DevTools protocol.

A real browser: its fake capture device plays a wav file as the microphone
(``--use-file-for-fake-audio-capture``), WebRTC, Opus/VP8 and the page's JavaScript are
chromium's own. The test reads the page's state with ``Runtime.evaluate`` over the
DevTools websocket (aiohttp's client). Every instance has its own empty profile, and
:meth:`Chromium.close` always kills the whole process group.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--remote-debugging-port=0", "--remote-allow-origins=*",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless chromium showing ``url``, with ``mic_wav`` as its microphone."""

    def __init__(self, url: str, mic_wav: Path) -> None:
        self.url = url
        self.mic_wav = mic_wav
        self.profile = Path(tempfile.mkdtemp(prefix="aa-chromium-"))
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws = None
        self._ids = 0
        self.log = self.profile / "chromium.log"

    async def start(self, limit_s: float = 30.0) -> None:
        exe = chromium_path()
        assert exe, "chromium missing: run scripts/install-sysdeps.sh test (make test does)"
        args = [exe, *FLAGS, f"--user-data-dir={self.profile / 'profile'}",
                f"--use-file-for-fake-audio-capture={self.mic_wav}", self.url]
        with open(self.log, "wb") as log:  # noqa: ASYNC230 - a local file, at once
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - starts it, does not wait
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        port_file = self.profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + limit_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start: {self.log_tail()}")
            await asyncio.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        self._http = aiohttp.ClientSession()
        ws_url = None
        while ws_url is None:
            async with self._http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                pages = [t for t in await resp.json() if t.get("type") == "page"]
            if pages:
                self.target = pages[0]["id"]
                ws_url = pages[0]["webSocketDebuggerUrl"]
            elif time.monotonic() > deadline:
                raise AssertionError("chromium has no page")
            else:
                await asyncio.sleep(0.1)
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)

    async def evaluate(self, expr: str, limit_s: float = 10.0) -> Any:
        """The JSON value of JavaScript ``expr`` in the page."""
        self._ids += 1
        my = self._ids
        await self._ws.send_json({"id": my, "method": "Runtime.evaluate",
                                  "params": {"expression": f"JSON.stringify({expr})",
                                             "returnByValue": True}})
        async with asyncio.timeout(limit_s):
            while True:
                msg = await self._ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"DevTools connection lost: {msg.type}")
                data = json.loads(msg.data)
                if data.get("id") == my:
                    value = data.get("result", {}).get("result", {}).get("value")
                    return None if value is None else json.loads(value)

    async def stats(self) -> dict[str, Any]:
        return await self.evaluate("window.avatarStats || null")

    async def close_tab(self) -> None:
        """Close the page the way a user closes a tab."""
        async with self._http.get(f"http://127.0.0.1:{self.port}/json/close/{self.target}") as r:
            await r.read()

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    async def close(self) -> None:
        """Kill chromium (its whole process group) and remove the profile. Never raises."""
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

"""Headless Chromium driven over the DevTools protocol, for the `lbconsole web` tests.

The page textual-serve sends draws the terminal on a canvas, so there is no
text in the DOM to read. What the browser receives on the page's websocket is
the terminal stream itself: Chromium reports every frame (Network domain), and
pyte, a terminal emulator, turns the bytes into the screen the page shows, at
the size the page asked for. Keys go in as the browser's own input events.

Chromium may reach 127.0.0.1 only (every other name fails to resolve), so the
page's web-font link goes nowhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pyte

ONLY_LOOPBACK = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab: its terminal screen, rebuilt from the websocket frames it received."""

    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.sent: list[str] = []

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.webSocketFrameReceived":
            response = params["response"]
            if response["opcode"] == 2:  # binary: terminal output
                self.stream.feed(base64.b64decode(response["payloadData"]))
        elif method == "Network.webSocketFrameSent":
            text = params["response"]["payloadData"]
            self.sent.append(text)
            with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
                kind, data = json.loads(text)
                if kind == "resize":
                    self.screen.resize(int(data["height"]), int(data["width"]))

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.call(method, session=self.session, **params)

    async def type(self, text: str) -> None:
        """Type as a person would: into the terminal's focused text area."""
        await self.call("Runtime.evaluate", expression=(
            "document.querySelector('.xterm-helper-textarea')?.focus()"))
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                            windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                            **({"text": "\r"} if kind == "keyDown" else {}))

    async def wait_for(self, condition: Callable[[str], bool], timeout: float,
                       what: str) -> str:
        deadline = time.monotonic() + timeout
        while not condition(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the page shows:\n"
                                     f"{self.text}")
            await asyncio.sleep(0.1)
        return self.text

    async def close(self) -> None:
        await self.browser.call("Target.closeTarget", targetId=self.target)


class Browser:
    """A headless Chromium with a throw-away profile; `async with` stops it."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.process: asyncio.subprocess.Process | None = None
        self.profile = tempfile.TemporaryDirectory(prefix="lbconsole-chromium-")
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pages: dict[str, Page] = {}
        self.reader: asyncio.Task[None] | None = None
        self.drainer: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Browser:
        self.process = await asyncio.create_subprocess_exec(
            self.executable, "--headless", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile.name}", f"--host-resolver-rules={ONLY_LOOPBACK}",
            "--window-size=1280,800", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.process.stderr is not None
        endpoint = None
        deadline = time.monotonic() + 30
        while endpoint is None and time.monotonic() < deadline:
            line = await asyncio.wait_for(self.process.stderr.readline(), 30)
            if not line:
                raise RuntimeError("chromium exited before it listened")
            match = re.search(rb"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match[1].decode()
        if endpoint is None:
            raise RuntimeError("chromium did not say where it listens")
        self.drainer = asyncio.ensure_future(self._drain(self.process.stderr))
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(endpoint, max_msg_size=0)
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("Browser.close"), 5)
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.profile.cleanup()

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif "sessionId" in data and data["sessionId"] in self.pages:
                self.pages[data["sessionId"]].on_event(data["method"], data.get("params", {}))

    async def call(self, method: str, session: str | None = None,
                   **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        await self.ws.send_json(message)
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def open(self, url: str) -> Page:
        """A new tab at `url`, recording its websocket traffic from the start."""
        target = (await self.call("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.call("Target.attachToTarget", targetId=target,
                                   flatten=True))["sessionId"]
        page = Page(self, session, target)
        self.pages[session] = page
        await page.call("Network.enable")
        await page.call("Page.navigate", url=url)
        return page

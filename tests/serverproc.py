"""A calculation server subprocess for tests: its port, its control channel, cleanup by pid."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.wire import Wire

ROOT = str(Path(__file__).resolve().parent.parent)


class ServerProcess:
    """`python -m backends.server --exit-on-stdin-eof …`, with stdin as its control channel."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.orders = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    async def order(self, order: dict, timeout: float = 10.0) -> dict:
        """Send one control order; its reply (matched by id)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.orders += 1
        self.process.stdin.write(json.dumps({"id": self.orders, **order}).encode() + b"\n")
        await self.process.stdin.drain()
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            if not line:
                raise ConnectionError("server exited")
            reply = json.loads(line)
            if reply.get("id") == self.orders:
                return reply

    async def set(self, **settings: object) -> dict:
        reply = await self.order({"set": settings})
        assert reply["ok"], reply
        return reply["settings"]

    async def stats(self) -> dict:
        return (await self.order({"get": "stats"}))["stats"]

    async def wire(self) -> Wire:
        return await Wire.open(self.port)


async def start_server(*args: str) -> ServerProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backends.server", "--name", "t", "--port", "0",
        "--exit-on-stdin-eof", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
    except TimeoutError:
        process.kill()
        raise
    assert line.startswith(b"ready t 127.0.0.1:"), line
    return ServerProcess(process, int(line.split()[2].rsplit(b":", 1)[1]))


async def stop_server(server: ServerProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.process.wait(), 10)


@pytest.fixture
async def calc_server() -> AsyncIterator[Callable[..., Awaitable[ServerProcess]]]:
    """Start calculation servers with options; each is killed by its pid at teardown."""
    started: list[ServerProcess] = []

    async def factory(*args: str) -> ServerProcess:
        server = await start_server(*args)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            await stop_server(server)

"""A bare line-oriented TCP peer for tests: asyncio streams, no project code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path


class Wire:
    """One TCP connection that writes raw lines and reads JSON answer lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Wire:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def send(self, *lines: bytes | str) -> None:
        data = b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines)
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = 10.0) -> dict:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("closed by the balancer")
        return json.loads(line)

    async def answers(self, count: int, timeout: float = 30.0) -> list[dict]:
        async def read_all() -> list[dict]:
            return [await self.answer(timeout) for _ in range(count)]

        return await asyncio.wait_for(read_all(), timeout)

    async def closed(self, timeout: float = 10.0) -> bool:
        """True once the peer closed the connection (reads EOF)."""
        rest = await asyncio.wait_for(self.reader.read(), timeout)
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` every 10 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def wait_state(runtime, name: str, state: str, timeout: float = 15.0) -> None:
    """Wait until the balancer shows server `name` in `state`."""
    backend = runtime.balancer.backend(name)
    await wait_until(lambda: backend.state.value == state, timeout,
                     f"{name} {state} (it is {backend.state.value}: {backend.reason})")


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie (read from /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

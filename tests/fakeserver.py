"""A calculation server that misbehaves on purpose, over a real socket on 127.0.0.1.

It numbers the lines it reads 1, 2, 3… as real servers do, answers pings, and
hands every request to `answer(number, line) -> bytes | None` (None: answer
nothing), so a test can make it send garbage, wrong ids, CRLF, or hold answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

Answer = Callable[[int, bytes], "bytes | None"]


def good(number: int, line: bytes) -> bytes:
    """A correct answer for `somma A B` (text) or the JSON form."""
    text = line.decode()
    if text.startswith("{"):
        obj = json.loads(text)
        a, b = obj["a"], obj["b"]
    else:
        _, a, b = text.split()
        a, b = int(a), int(b)
    return b'{"id":%d,"op":"somma","a":%d,"b":%d,"result":%d}\n' % (number, a, b, a + b)


class FakeServer(asyncio.Protocol):
    def __init__(self, owner: FakeServers) -> None:
        self.owner = owner
        self.buffer = b""
        self.seq = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.connections.append(self)

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        out = []
        for line in lines:
            if not line:
                continue
            self.seq += 1
            if line.startswith(b'{"id":-'):
                ping_id = json.loads(line)["id"]
                if not self.owner.silent:
                    out.append(b'{"id":%d,"pong":"fake"}\n' % ping_id)
                continue
            self.owner.seen.append(line)
            answer = self.owner.answer(self.seq, line)
            if answer is not None:
                out.append(answer)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class FakeServers:
    """One listening fake server; `port` after `start()`."""

    def __init__(self, answer: Answer = good, silent: bool = False) -> None:
        self.answer = answer
        self.silent = silent
        """True: never answer pings (a check waits until it times out)."""
        self.seen: list[bytes] = []
        self.connections: list[FakeServer] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> FakeServers:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: FakeServer(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def write(self, data: bytes) -> None:
        """Write raw bytes on the latest connection (answers split as a test likes)."""
        transport = self.connections[-1].transport
        assert transport is not None
        transport.write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()

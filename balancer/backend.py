"""The balancer's connection to one calculation server: answers in, requests out.

`ServerLink.data_received` cuts the chunk into complete answer lines and hands
them to `Core.deliver`. Our servers answer `{"id":N,...}` with `"result"` or
`"error"`, one per line; a few counts over the chunk check that shape (no CR,
one `{"id":` per line, one result or error per line, each line closed by `}`),
and a chunk that fails them takes the careful path: each line is parsed and
rewritten in the shape the core expects, a pong goes to its check, and a line
that breaks the protocol (not JSON, no id, an id never sent, neither result nor
error) marks the server DOWN with a reason that says so. The read buffer is
bounded, so a server cannot grow it without end.
"""

from __future__ import annotations

import asyncio
import socket

from balancer.core import Core
from balancer.model import Backend
from balancer.protocol import ProtocolError, dumps, loads_exact

MAX_ANSWER = 64 * 1024
"""Longest answer line accepted from a server, in bytes."""


class ServerLink(asyncio.Protocol):
    """One persistent connection to a server, many requests in flight."""

    __slots__ = ("backend", "buffer", "core", "transport")

    def __init__(self, core: Core, backend: Backend) -> None:
        self.core = core
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.core.link_lost(self.backend, self, exc)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.backend.link is not self:
            # A connection the core has already ended: whatever comes is late.
            self.backend.late += data.count(b"\n")
            return
        if self.buffer:
            data = self.buffer + data
        end = data.rfind(b"\n")
        if end < 0:
            self.buffer = data
            if len(data) > MAX_ANSWER:
                self._violation(f"an answer line longer than {MAX_ANSWER} bytes")
            return
        self.buffer = data[end + 1:]
        if len(self.buffer) > MAX_ANSWER:
            self._violation(f"an answer line longer than {MAX_ANSWER} bytes")
            return
        body = data[:end]
        lines = body.split(b"\n")
        n = len(lines)
        # Four scans in C check the shape of every line at once; counted per line in
        # Python, the same checks cost more than the rest of the answer path.
        errors = body.count(b',"error":')
        if (
            body.count(b'{"id":') != n
            or body.count(b',"result":') + errors != n
            or body.count(b"}\n") != n - 1
            or body[-1:] != b"}"
        ):
            lines = self._normalise(lines)
            if not lines:
                return
            errors = -1
        # Server faults are errors; only a chunk with errors is scanned for them.
        faults = body.count(b'"fault":"server"') if errors else 0
        self.core.deliver(self.backend, lines, errors, faults)

    def _normalise(self, lines: list[bytes]) -> list[bytes] | None:
        """The careful path: each line parsed, pongs handed over, answers rewritten
        `{"id":N,...}` (a CR is a violation); None after a violation (the
        connection is then ended)."""
        backend = self.backend
        core = self.core
        result: list[bytes] = []
        for line in lines:
            if line[-1:] == b"\r":
                return self._violation("ended its lines with CRLF, not LF", result)
            if not line.strip():
                continue
            obj = loads_exact(line)
            if isinstance(obj, ProtocolError) or not isinstance(obj, dict):
                return self._violation(f"sent a line that is not a JSON object: {line[:60]!r}",
                                       result)
            number = obj.pop("id", None)
            if isinstance(number, bool) or not isinstance(number, int):
                return self._violation(f"sent an answer without a numeric id: {line[:60]!r}",
                                       result)
            if number < 0:
                core.pong(backend, number, obj)
                continue
            if number > backend.sent:
                return self._violation(f"answered request {number}, which it was never sent",
                                       result)
            if ("result" in obj) == ("error" in obj):
                return self._violation(f"sent an answer with neither result nor error "
                                       f"(or both): {line[:60]!r}", result)
            obj.pop("server", None)
            result.append(dumps({"id": number, **obj}))
        return result

    def _violation(self, what: str, delivered: list[bytes] | None = None) -> None:
        # Answers parsed before the bad line are still good: deliver them first.
        if delivered:
            self.core.deliver(self.backend, delivered)
        self.core.violation(self.backend, self, what)
        return None


def tune(sock: socket.socket | None, request_timeout: float) -> None:
    """TCP keepalive and (on Linux) TCP_USER_TIMEOUT, so a silent peer (a partition)
    ends the connection within about the request timeout instead of minutes."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = max(1, int(request_timeout))
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            max(1000, int(request_timeout * 1000)))
    except OSError:
        pass


async def open_link(core: Core, backend: Backend, timeout: float) -> None:
    """Open the server's connection and hand it to the core (raises OSError, TimeoutError)."""
    if backend.link is not None:
        return
    if not backend.port:
        raise ConnectionRefusedError("no address yet")
    loop = asyncio.get_running_loop()
    generation = backend.generation
    try:
        transport, link = await asyncio.wait_for(
            loop.create_connection(lambda: ServerLink(core, backend), backend.host,
                                   backend.port), timeout)
    except TimeoutError:
        raise ConnectionError("connect timed out") from None
    tune(transport.get_extra_info("socket"), core.config.request_timeout)
    if generation != backend.generation or not core.attach(backend, link, transport.write):
        # The server moved while we connected, or another check got there first.
        transport.close()

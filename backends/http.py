"""The calculation server's HTTP/1.1 interface, for balancers that work per HTTP request.

HAProxy balances each request only in `mode http`, so a server started with
`--http-port P` also listens there: `POST /` whose body is one request line or
JSON object gets the same JSON answer as the line protocol (with the server's
name added, as the built-in balancer adds it), `GET /ping` is the health check.
Status codes: 200 an answer, 400 bad input (the same JSON error), 503 a server
fault (`"fault":"server"`), 404 an unknown path, 405 a wrong method, 411 a POST
without Content-Length, 413 a body past `MAX_LINE`, 431 a header section past
`MAX_HEADER`. Keep-alive and pipelining: answers leave in request order per
connection, each as one write.

An asyncio Protocol with a hand-written parser, not a framework: the server
answers in microseconds and the parse must cost no more than that. Only the
headers the server acts on are looked at (Content-Length, Transfer-Encoding,
Connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from balancer.protocol import MAX_LINE, error_line

MAX_HEADER = 16 * 1024
"""Longest request line plus headers accepted, in bytes."""

MAX_PENDING = 1024
"""Pipelined requests awaiting their answer before reading pauses."""

Reply = Callable[[bytes | None], None]
"""Called once with the answer line (ending in a newline), or None: reset the connection."""

Handler = Callable[[bytes, int, Reply], None]
"""`handle(line, seq, reply)`: answer one request line, now or later, through `reply`."""

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            411: b"Length Required", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


class Answering(Protocol):
    """What the HTTP side needs of a calculation server: today's `CalcServer`
    (`answer(line, seq) -> bytes`, a count of connections) or one with
    `handle(line, seq, reply)` and a set of connections it can pause (a black hole),
    which `start_http` then uses as they are."""

    name: str
    connections: int | set
    delay: float
    """Seconds added before each answer (a slow server); 0 for none."""

    def answer(self, line: bytes, seq: int) -> bytes: ...


def answer_handler(server: Answering) -> Handler:
    """Adapt `CalcServer.answer(line, seq) -> bytes` to the `Handler` shape.

    Once CalcServer has `handle(line, seq, reply)` itself, pass `server.handle`
    instead of this (one line in `start_http`)."""
    answer = server.answer
    if server.delay > 0:
        delay = server.delay

        def handle_late(line: bytes, seq: int, reply: Reply) -> None:
            asyncio.get_running_loop().call_later(delay, reply, answer(line, seq))

        return handle_late

    def handle(line: bytes, seq: int, reply: Reply) -> None:
        reply(answer(line, seq))

    return handle


def status_of(body: bytes) -> int:
    """The HTTP status of an answer line: 200, 400 for bad input, 503 for a server fault."""
    if b'"error"' not in body:
        return 200
    return 503 if b'"fault":"server"' in body else 400


def response(status: int, body: bytes, close: bool = False) -> bytes:
    """One whole HTTP/1.1 response with a JSON body."""
    head = b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status, _REASONS.get(status, b"Error"), len(body))
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 client connection: parse, answer in order, keep alive."""

    __slots__ = ("buffer", "closing", "connections", "handler", "parsing", "paused", "ping",
                 "seq", "server", "slots", "tag", "transport")

    def __init__(self, server: Answering, handler: Handler, ping: Callable[[int], bytes],
                 connections: set[HttpConnection]) -> None:
        self.server = server
        self.handler = handler
        self.ping = ping
        self.connections = connections
        self.tag = b',"server":"%b"}' % server.name.encode()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.seq = 0
        self.slots: list[list] = []
        """[response bytes or None, close after it] per request not yet written, in order."""
        self.closing = False
        self.paused = False
        self.parsing = False
        """True while a chunk is parsed: answers given meanwhile leave in one write after it
        (one write per request: 20k req/s pipelined straight to a server here, 74k without)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        if isinstance(self.server.connections, set):
            self.server.connections.add(self)  # it may pause us (a black hole)
        else:
            self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connections.discard(self)
        if isinstance(self.server.connections, set):
            self.server.connections.discard(self)
        else:
            self.server.connections -= 1

    def pause(self) -> None:
        """Stop reading (a black-holed server); what was read waits in the buffer."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        data = self.buffer + data if self.buffer else data
        start = 0
        self.parsing = True
        while not self.closing:
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                if len(data) - start > MAX_HEADER:
                    self._fail(431, f"header section too large (limit {MAX_HEADER} bytes)")
                break
            if end - start > MAX_HEADER:
                self._fail(431, f"header section too large (limit {MAX_HEADER} bytes)")
                break
            used = self._request(data, start, end)
            if used < 0:
                break  # the body is not all here yet
            start = used
        self.buffer = data[start:] if not self.closing else b""
        self.parsing = False
        self._flush()
        if len(self.slots) > MAX_PENDING and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _request(self, data: bytes, start: int, end: int) -> int:
        """Handle the request whose head is data[start:end]; where the next one starts,
        or -1 when its body is incomplete."""
        head = data[start:end]
        first, _, rest = head.partition(b"\r\n")
        parts = first.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._fail(400, "not an HTTP/1.x request line")
            return end + 4
        method, path, version = parts
        length = -1
        close = version == b"HTTP/1.0"
        chunked = False
        if rest:
            for line in rest.split(b"\r\n"):
                name, sep, value = line.partition(b":")
                if not sep:
                    self._fail(400, "malformed header line")
                    return end + 4
                name = name.lower()
                if name == b"content-length":
                    value = value.strip()
                    if not value.isdigit() or len(value) > 18:
                        self._fail(400, "bad Content-Length")
                        return end + 4
                    length = int(value)
                elif name == b"connection":
                    token = value.strip().lower()
                    if token == b"close":
                        close = True
                    elif token == b"keep-alive":
                        close = False
                elif name == b"transfer-encoding":
                    chunked = True
        body_at = end + 4
        if method == b"POST":
            if chunked or length < 0:
                self._fail(411, "POST needs a Content-Length (no chunked bodies)")
                return body_at
            if length > MAX_LINE:
                self._fail(413, f"body too large (limit {MAX_LINE} bytes)")
                return body_at
            if len(data) - body_at < length:
                return -1
            body = data[body_at : body_at + length]
            after = body_at + length
        else:
            if length > 0:
                self._fail(400, "only POST carries a body")
                return body_at
            after = body_at
        self.seq += 1
        seq = self.seq
        if path == b"/ping" or path.startswith(b"/ping?"):
            if method != b"GET":
                self._add(response(405, error_line(seq, "use GET /ping"), close), close)
            else:
                self._add(response(200, self.ping(seq), close), close)
        elif path != b"/" and not path.startswith(b"/?"):
            self._add(response(404, error_line(seq, "unknown path: POST / or GET /ping"),
                               close), close)
        elif method != b"POST":
            self._add(response(405, error_line(seq, "use POST / with the request as the body"),
                               close), close)
        else:
            line = body.strip()
            if not line:
                self._add(response(400, error_line(seq, "empty request"), close), close)
            elif b"\n" in line:
                self._add(response(400, error_line(seq, "one request per body"), close), close)
            else:
                slot: list = [None, close]
                self.slots.append(slot)
                self.handler(line, seq, self._replier(slot))
        if close:
            self.closing = True
        return after

    def _replier(self, slot: list) -> Reply:
        def reply(answer: bytes | None) -> None:
            if answer is None:  # an injected reset
                if self.transport is not None:
                    self.transport.abort()
                return
            body = answer[:-2] + self.tag + b"\n" if answer[-2:] == b"}\n" else answer
            slot[0] = response(status_of(body), body, slot[1])
            if not self.parsing and self.slots and self.slots[0] is slot:
                self._flush()

        return reply

    def _add(self, data: bytes, close: bool) -> None:
        self.slots.append([data, close])

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot read past: answer it (after those before it) and close."""
        self.seq += 1
        self._add(response(status, error_line(self.seq, message), True), True)
        self.closing = True

    def _flush(self) -> None:
        """Write the answers that are ready, in request order, in one write."""
        slots, transport = self.slots, self.transport
        if transport is None:
            return
        ready = 0
        close = False
        for slot in slots:
            if slot[0] is None:
                break
            ready += 1
            if slot[1]:
                close = True
                break
        if not ready:
            return
        out = b"".join(s[0] for s in slots[:ready])
        del slots[:ready]
        transport.write(out)
        if close:
            slots.clear()
            transport.close()
        elif self.paused and len(slots) <= MAX_PENDING // 2:
            self.paused = False
            transport.resume_reading()

    def eof_received(self) -> bool:
        # Answers still owed are written, then the transport closes.
        if not self.slots and self.transport is not None:
            return False
        self.closing = True
        if self.slots:
            self.slots[-1][1] = True
            return True
        return False


async def start_http(server: Answering, host: str, port: int, ping: Callable[[int], bytes],
                     handler: Handler | None = None,
                     ) -> tuple[asyncio.Server, int, set[HttpConnection]]:
    """Listen for HTTP/1.1 on host:port (0 picks one); (server, real port, connections)."""
    handle = handler or getattr(server, "handle", None) or answer_handler(server)
    connections: set[HttpConnection] = set()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: HttpConnection(server, handle, ping, connections), host, port, backlog=1024)
    return listener, listener.sockets[0].getsockname()[1], connections

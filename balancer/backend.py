"""One calculation server as the balancer sees it: state, counters, and its connection.

`BackendConnection.data_received` is half of the hot path: it matches each
answer to its request by id, rewrites the id at the byte level to the client's,
appends the server's name, and queues the line on the client's connection,
which is written once per chunk read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from balancer.balancer import Balancer
    from balancer.frontend import ClientConnection

# An in-flight request: (client, the client's id as the prefix of its answer
# `{"id":7`, the request line sent to the server, time dispatched, the server it
# was re-dispatched from or None). A server numbers the lines it reads on a
# connection 1, 2, 3...; that number is the answer's id and the in-flight key.
Entry = tuple["ClientConnection", bytes, bytes, float, "str | None"]

SAMPLES = 2048
"""Latency samples kept per server for the percentiles."""


class ServerState(StrEnum):
    STARTING = "STARTING"
    UP = "UP"
    DOWN = "DOWN"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class Admin(StrEnum):
    """What the operator asked for, apart from what health checks found."""

    READY = "ready"
    DRAIN = "drain"
    STOPPED = "stopped"


class Backend:
    """A calculation server: address, health, admin state, in-flight map, counters."""

    def __init__(self, name: str, host: str | None, port: int | None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.health = ServerState.STARTING
        """STARTING, UP or DOWN: what checks and connections found."""
        self.admin = Admin.READY
        self.reason = "waiting for the first check"
        self.changed_at = time.monotonic()
        self.inflight: dict[int, Entry] = {}
        """In-flight requests keyed by their line number on the current connection."""
        self.sent = 0
        """Lines written (or queued) on the current connection."""
        self.out: list[bytes] = []
        self.conn: BackendConnection | None = None
        self.connecting = False
        self.dirty = False
        """True while queued in the balancer's list of servers to write to."""
        self.suffix = b',"server":' + orjson.dumps(name) + b"}\n"
        self.pings: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Health-check streaks (see health.HealthPolicy).
        self.ok_streak = 0
        self.fail_streak = 0
        self.last_check: float | None = None
        self.check_ms: float | None = None
        self.pong: dict[str, Any] = {}
        # Counters.
        self.answered = 0
        """Answers relayed from this server, results and errors."""
        self.errors = 0
        self.redispatched = 0
        """Requests taken away from this server after it failed."""
        self.late = 0
        """Answers that arrived after their request had been answered elsewhere."""
        self.latency_sum = 0.0
        self.samples: deque[float] = deque(maxlen=SAMPLES)

    @property
    def served(self) -> int:
        """Answers that were results, not errors."""
        return self.answered - self.errors

    @property
    def state(self) -> ServerState:
        """The state shown to the operator: admin state first, then health."""
        if self.admin is Admin.STOPPED:
            return ServerState.STOPPED
        if self.admin is Admin.DRAIN and self.health is ServerState.UP:
            return ServerState.DRAINING
        return self.health

    @property
    def eligible(self) -> bool:
        """True when round robin may hand this server new requests."""
        return (
            self.health is ServerState.UP and self.admin is Admin.READY and self.conn is not None
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.port else "-"

    def flush(self) -> None:
        """Write everything queued for this server in one call."""
        self.dirty = False
        out = self.out
        if not out:
            return
        conn = self.conn
        if conn is not None and conn.transport is not None:
            out.append(b"")
            conn.transport.write(b"\n".join(out))
        out.clear()

    def send(self, line: bytes, data: bytes) -> None:
        """Write one request now: `data` is `line` with its newline, as the client sent it."""
        conn = self.conn
        if self.out or conn is None or conn.transport is None:
            self.out.append(line)
            self.flush()
        else:
            conn.transport.write(data)


class BackendConnection(asyncio.Protocol):
    """The balancer's one persistent connection to a server, many requests in flight."""

    def __init__(self, balancer: Balancer, backend: Backend) -> None:
        self.balancer = balancer
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.balancer.backend_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        if data.find(b"\n") == len(data) - 1 and data and not self.buffer:
            self._one_answer(data)
            return
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        backend = self.backend
        inflight = backend.inflight
        suffix = backend.suffix
        balancer = self.balancer
        dirty = balancer.dirty_clients
        answered = 0
        sent_sum = 0.0
        entry = client = None
        out = b""
        first_sent = 0.0
        for line in lines:
            cut = line.find(b",", 6)
            try:
                entry = inflight.pop(int(line[6:cut]))
            except (KeyError, ValueError):
                self.unmatched(line)
                continue
            client = entry[0]
            out = entry[1] + line[cut:-1] + suffix
            sent_sum += entry[3]
            client.pending -= 1
            queued = client.out
            if not queued:
                dirty.append(client)
            queued.append(out)
            if not answered:
                first_sent = entry[3]
            answered += 1
            if entry[4] is not None:
                client.log_redispatched(entry[4])
        if not answered:
            return
        now = time.monotonic()
        if b',"error":' in data:
            backend.errors += min(answered, data.count(b',"error":'))
        backend.answered += answered
        backend.latency_sum += answered * now - sent_sum
        balancer.answered += answered
        # One latency sample per chunk read, not per request: the chunk's oldest
        # request, its slowest, so the p99 drawn from them errs on the high side.
        assert entry is not None
        backend.samples.append(now - first_sent)
        balancer.recent_answers.append((now, out, now - entry[3]))
        if not balancer.flush_scheduled:
            if answered == 1:
                # A lone answer (ping-pong): write it now, as the frontend does.
                dirty.clear()
                client.flush()  # type: ignore[union-attr]
            else:
                balancer.schedule_flush()

    def _one_answer(self, data: bytes) -> None:
        """A chunk that is one whole answer (ping-pong, a person typing): what the
        loop in `data_received` does for one line, and the answer written to its
        client at once when nothing else is queued this iteration."""
        backend = self.backend
        cut = data.find(b",", 6)
        try:
            entry = backend.inflight.pop(int(data[6:cut]))
        except (KeyError, ValueError):
            self.unmatched(data[:-1])
            return
        balancer = self.balancer
        client = entry[0]
        out = entry[1] + data[cut:-2] + backend.suffix
        client.pending -= 1
        now = time.monotonic()
        latency = now - entry[3]
        if b',"error":' in data:
            backend.errors += 1
        backend.answered += 1
        backend.latency_sum += latency
        balancer.answered += 1
        backend.samples.append(latency)
        balancer.recent_answers.append((now, out, latency))
        queued = client.out
        if balancer.flush_scheduled or queued or client.exiting or client.paused_by_inflight \
                or not client.alive:
            if not queued and balancer.flush_scheduled:
                balancer.dirty_clients.append(client)
            queued.append(out)
            if entry[4] is not None:
                client.log_redispatched(entry[4])
            if not balancer.flush_scheduled:
                client.flush()
            return
        if balancer.log.log_requests:
            balancer.log.line(client.log_tag(entry[4]), out)
        client.transport.write(out)  # type: ignore[union-attr]

    def unmatched(self, line: bytes) -> None:
        """An answer the fast path cannot place: a pong, a late answer, a foreign line."""
        balancer = self.balancer
        backend = self.backend
        cut = line.find(b",", 6)
        try:
            number = int(line[6:cut])
        except ValueError:
            backend.late += balancer.foreign_answer(backend, line)
            return
        if number < 0:
            balancer.pong_received(backend, line)
        else:
            backend.late += 1

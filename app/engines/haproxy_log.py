"""HAProxy's stdout, read: one `LOG_FORMAT` line per request, other lines are its messages.

Each request line becomes a `LoggedRequest`, counted per server (answers,
errors, latencies, re-dispatches, answers per second) and written to
`loadbalancer.log` as one line naming the server that answered, so a
request's path reads the same as with the built-in engine. HAProxy's own
messages (`Server servers/server2 is DOWN, reason: ...`) become log events.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from app.engines.haproxy_config import LOG_TAG
from balancer.log import RequestLog

_TAG = LOG_TAG.encode() + b" "
NO_SERVER = "<NOSRV>"


class LoggedRequest(NamedTuple):
    """One request as HAProxy logged it."""

    at: float
    """When we read it (time.monotonic)."""
    client: str
    server: str
    """The server that answered, or `<NOSRV>` when none did."""
    status: int
    wait_ms: int
    connect_ms: int
    response_ms: int
    total_ms: int
    retries: int
    redispatched: bool
    termination: str
    """HAProxy's termination state (`----` for a normal end)."""
    size: int


def parse_request(line: bytes, at: float | None = None) -> LoggedRequest | None:
    """A request line in LOG_FORMAT, or None for anything else."""
    if not line.startswith(_TAG):
        return None
    parts = line.split()
    if len(parts) != 11:
        return None
    try:
        status, tw, tc, tr, ta = (int(p) for p in parts[3:8])
        rc = parts[8].decode()
        size = int(parts[10])
    except ValueError:
        return None
    redispatched = rc.startswith("+")
    try:
        retries = int(rc.lstrip("+"))
    except ValueError:
        retries = 0
    return LoggedRequest(time.monotonic() if at is None else at, parts[1].decode(),
                         parts[2].decode("utf-8", "replace"), status, tw, tc, tr, ta, retries,
                         redispatched, parts[9].decode(), size)


@dataclass
class ServerCounters:
    """What the request log says of one server."""

    served: int = 0
    errors: int = 0
    redispatched: int = 0
    latency_sum_ms: int = 0
    samples: deque[int] = field(default_factory=lambda: deque(maxlen=1000))
    history: deque[int] = field(default_factory=lambda: deque(maxlen=60))
    _mark: int = 0


class RequestLogReader:
    """Feeds HAProxy's stdout into counters, recent requests and `loadbalancer.log`."""

    def __init__(self, log: RequestLog, keep_recent: int = 256) -> None:
        self.log = log
        self.counters: dict[str, ServerCounters] = {}
        self.recent: deque[LoggedRequest] = deque(maxlen=keep_recent)
        self.requests = 0
        self.errors = 0
        self.redispatched = 0
        self.unserved = 0
        """Requests no server answered (503 from HAProxy itself, queue timeouts)."""
        self.messages: deque[str] = deque(maxlen=100)
        self._rate_mark = (time.monotonic(), 0)
        self.rate = 0.0

    def server(self, name: str) -> ServerCounters:
        counters = self.counters.get(name)
        if counters is None:
            counters = self.counters[name] = ServerCounters()
        return counters

    def feed(self, line: bytes) -> LoggedRequest | None:
        """One line of HAProxy's stdout."""
        request = parse_request(line)
        if request is None:
            text = line.decode("utf-8", "replace").strip()
            if text:
                self.messages.append(text)
                self.log.event(f"haproxy: {text}")
            return None
        self.requests += 1
        self.recent.append(request)
        bad = request.status >= 400 or request.status < 0
        if request.server == NO_SERVER:
            self.unserved += 1
            self.errors += 1
        else:
            c = self.server(request.server)
            c.served += 1
            c.latency_sum_ms += max(0, request.total_ms)
            c.samples.append(max(0, request.total_ms))
            if bad:
                c.errors += 1
                self.errors += 1
            if request.redispatched:
                c.redispatched += 1
        if request.redispatched or request.retries:
            self.redispatched += 1
        if self.log.log_requests:
            retried = f" after {request.retries} retries" if request.retries else ""
            moved = " (re-dispatched)" if request.redispatched else ""
            self.log.line(b"", (
                f"{request.client} -> {request.server} {request.status} in "
                f"{request.total_ms} ms{retried}{moved} [{request.termination}]\n").encode())
        return request

    def tick(self) -> None:
        """Once a second: per-server answers in the last second, and the overall rate."""
        for c in self.counters.values():
            c.history.append(c.served - c._mark)
            c._mark = c.served
        now = time.monotonic()
        then, count = self._rate_mark
        if now > then:
            self.rate = (self.requests - count) / (now - then)
        self._rate_mark = (now, self.requests)

"""Route samples for the console's Routing panel: display only, off the request path.

The core tells the sampler how many requests it just queued for a server; the
sampler keeps up to `BUDGET` of them every `WINDOW` seconds. At low rates that is
every request; at high rates a sample that costs next to nothing, since the
decision is one comparison per write, not per request.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

from balancer.model import Backend

WINDOW = 0.02
BUDGET = 32
PER_WRITE = 8
"""Requests remembered from one write to one server at most."""


class Route(NamedTuple):
    """One request as the routing panel shows it."""

    at: float
    """When it was dispatched (time.monotonic)."""
    server: str
    client: str
    client_number: int
    request_id: str
    """The id the client knows it by, as JSON text (`7` or `"abc"`)."""
    request: bytes
    """The request line as sent to the server."""
    redispatched_from: str | None

    def order(self) -> tuple[float, int, int]:
        """Dispatch order: time, then client, then (numeric) id within the client."""
        rid = self.request_id
        return self.at, self.client_number, int(rid) if rid.isdigit() else 0


class RouteSampler:
    """The latest requests and where each went, sampled by budget."""

    __slots__ = ("budget", "recent", "window_end")

    def __init__(self, keep: int = 256) -> None:
        self.recent: deque[Route] = deque(maxlen=keep)
        self.window_end = 0.0
        self.budget = BUDGET

    def wants(self, now: float) -> bool:
        """True when a write at `now` should be sampled."""
        if now >= self.window_end:
            self.window_end = now + WINDOW
            self.budget = BUDGET
        return self.budget > 0

    def note(self, backend: Backend, count: int) -> None:
        """Remember the last `count` requests queued for `backend` (budget permitting)."""
        if not self.wants(time.monotonic()):
            return
        count = min(count, PER_WRITE, self.budget)
        self.budget -= count
        last = backend.sent
        inflight = backend.inflight
        for number in range(last - count + 1, last + 1):
            entry = inflight.get(number)
            if entry is not None:
                client = entry.client
                self.recent.append(Route(entry.since, backend.name, client.name, client.number,
                                         entry.prefix[6:].decode("utf-8", "replace"),
                                         entry.line, entry.origin))

"""Read-only snapshots of the balancer's state, for the console, `serve` and tests."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from balancer.core import Core


@dataclass(frozen=True)
class BackendStats:
    name: str
    address: str
    state: str
    reason: str
    since: float
    """Seconds since the last state change."""
    served: int
    errors: int
    inflight: int
    redispatched: int
    late: int
    mean_ms: float | None
    p99_ms: float | None
    share: float
    """Fraction of all answers this server gave."""
    is_next: bool
    """The server round robin will pick next."""
    history: tuple[int, ...] = ()
    """Answers per second over the last minute, oldest first."""
    p50_ms: float | None = None
    """Median latency over the latest samples (the same window as p99)."""
    weight: int = 1
    remote: bool = False
    """A server lbconsole did not spawn."""
    violations: int = 0
    """Answer lines that broke the protocol."""
    pong: dict[str, Any] = field(default_factory=dict)
    """The server's last health-check answer (its own counters)."""
    faults: int = 0
    """Server faults it answered, and resets with requests in flight."""
    retries: int = 0
    """Requests retried elsewhere after a server fault here."""
    ejections: int = 0


@dataclass(frozen=True)
class BalancerStats:
    address: str
    uptime: float
    clients: int
    requests: int
    answered: int
    errors: int
    redispatched: int
    queued: int
    expired: int
    late: int
    refused: int
    """Connections turned away past --max-clients."""
    discarded: int
    """Answers dropped because their client had gone."""
    rate: float
    """Answers per second over the last second."""
    servers_up: int
    backends: tuple[BackendStats, ...] = field(default_factory=tuple)
    algorithm: str = "roundrobin"
    retries: int = 0


def percentile(values: list[float], fraction: float) -> float | None:
    """The value below which `fraction` of `values` fall (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


class Throughput:
    """Answers per second, overall and per server over the last minute, ticked by
    the service once a second (display only, nothing per request)."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.history: dict[str, deque[int]] = {}
        self._last = time.monotonic()
        self._answered = 0
        self._marks: dict[str, int] = {}

    def tick(self, core: Core, now: float) -> None:
        elapsed = now - self._last
        if elapsed < 1.0:
            return
        self._last = now
        self.rate = (core.answered - self._answered) / elapsed
        self._answered = core.answered
        for backend in core.backends:
            mark = self._marks.get(backend.name, 0)
            self._marks[backend.name] = backend.answered
            self.history.setdefault(backend.name, deque(maxlen=60)).append(
                round((backend.answered - mark) / elapsed))


def snapshot(core: Core, address: str, uptime: float, throughput: Throughput) -> BalancerStats:
    """A consistent snapshot for the console, `serve` and tests (not per request)."""
    now = time.monotonic()
    total = sum(b.answered for b in core.backends) or 1
    nxt = core.algorithm.peek()
    rows = []
    for b in core.backends:
        samples = list(b.samples)
        p50 = percentile(samples, 0.5)
        p99 = percentile(samples, 0.99)
        rows.append(BackendStats(
            name=b.name,
            address=b.address,
            state=b.state.value,
            reason=b.reason,
            since=now - b.changed_at,
            served=b.served,
            errors=b.errors,
            inflight=len(b.inflight),
            redispatched=b.redispatched,
            late=b.late,
            mean_ms=(b.latency_sum / b.answered * 1000) if b.answered else None,
            p99_ms=p99 * 1000 if p99 is not None else None,
            share=b.answered / total,
            is_next=b is nxt,
            history=tuple(throughput.history.get(b.name, ())),
            p50_ms=p50 * 1000 if p50 is not None else None,
            weight=b.weight,
            remote=b.remote,
            violations=b.violations,
            pong=dict(b.pong),
            faults=b.faults,
            retries=b.retries,
            ejections=b.ejections,
        ))
    return BalancerStats(
        address=address,
        uptime=uptime,
        clients=len(core.clients),
        requests=core.requests,
        answered=core.answered,
        errors=sum(b.errors for b in core.backends) + core.local_errors,
        redispatched=core.redispatched,
        queued=len(core.waiting),
        expired=core.expired,
        late=sum(b.late for b in core.backends),
        refused=core.refused_clients,
        discarded=core.discarded,
        rate=throughput.rate,
        servers_up=len(core.ring),
        backends=tuple(rows),
        algorithm=core.algorithm.name,
        retries=core.retries,
    )

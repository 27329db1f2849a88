"""Read-only snapshots of the balancer's state, for the console, `serve` and tests."""

from __future__ import annotations

from dataclasses import dataclass, field


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


def percentile(values: list[float], fraction: float) -> float | None:
    """The value below which `fraction` of `values` fall (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]

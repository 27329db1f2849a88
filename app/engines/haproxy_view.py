"""What the console shows of HAProxy: its states in the console's words, and snapshots.

Server states and their reasons are HAProxy's (`show stat`: its status and last
check); counters, latencies and per-second history come from its request log.
"""

from __future__ import annotations

import time
from typing import Protocol

from app.engines.haproxy_api import StatRow
from app.engines.haproxy_log import RequestLogReader
from app.runtime import ServerRow
from backends.supervisor import ServerSupervisor
from balancer.stats import BackendStats, BalancerStats, percentile


def console_state(status: str) -> str:
    """HAProxy's status word in the console's vocabulary."""
    word = status.split()[0] if status else ""
    return {"UP": "UP", "DOWN": "DOWN", "DRAIN": "DRAINING", "NOLB": "DRAINING",
            "MAINT": "STOPPED", "no": "UP"}.get(word, word or "STARTING")


def describe(row: StatRow) -> str:
    """Why HAProxy says what it says: its status and its last check."""
    check = row.check_status.lstrip("* ")
    text = f"haproxy {row.status}"
    if check:
        text += f", check {check}"
        if row.last_check:
            text += f" ({row.last_check})"
    return text


def snapshot(address: str, names: list[str], stat: dict[str, StatRow], states: dict[str, str],
             reader: RequestLogReader, started_at: float, *, clients: int = 0,
             queued: int = 0) -> BalancerStats:
    """The console's snapshot, from HAProxy's stats and its request log."""
    total = sum(c.served for c in reader.counters.values()) or 1
    rows = []
    now = time.monotonic()
    for name in names:
        row = stat.get(name)
        c = reader.server(name)
        samples = [float(s) for s in c.samples]
        rows.append(BackendStats(
            name=name, address=row.address if row is not None else "-",
            state=states.get(name, "STARTING"),
            reason=describe(row) if row is not None else "waiting for haproxy",
            since=float(row.last_change) if row is not None else now - started_at,
            served=c.served, errors=c.errors,
            inflight=row.current if row is not None else 0,
            redispatched=c.redispatched, late=0,
            mean_ms=c.latency_sum_ms / c.served if c.served else None,
            p99_ms=percentile(samples, 0.99), share=c.served / total, is_next=False,
            history=tuple(c.history), p50_ms=percentile(samples, 0.5),
            weight=row.weight if row is not None else 1))
    return BalancerStats(
        address=address, uptime=now - started_at, clients=clients,
        requests=reader.requests, answered=reader.requests, errors=reader.errors,
        redispatched=reader.redispatched, queued=queued, expired=reader.unserved, late=0,
        refused=0, discarded=0, rate=reader.rate,
        servers_up=sum(1 for n in names if states.get(n) == "UP"),
        backends=tuple(rows))


def server_rows(stats: BalancerStats, supervisor: ServerSupervisor) -> list[ServerRow]:
    """One row per server, joining HAProxy's view and the process's."""
    out = []
    for b in stats.backends:
        proc = supervisor.servers.get(b.name)
        pid = proc.pid if proc is not None and proc.alive else None
        port = int(b.address.rsplit(":", 1)[1]) if ":" in b.address else None
        out.append(ServerRow(
            name=b.name, pid=pid, port=port, managed=proc is not None, state=b.state,
            reason=b.reason, served=b.served, inflight=b.inflight, errors=b.errors,
            redispatched=b.redispatched, mean_ms=b.mean_ms, p99_ms=b.p99_ms,
            share=b.share, is_next=b.is_next, history=b.history, weight=b.weight))
    return out


class Engine(Protocol):
    """The engine as `Front` sees it."""

    port: int
    algorithm: str


class Front:
    """What the dispatcher reads of `runtime.balancer`: the port and the algorithm."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def port(self) -> int:
        return self.engine.port

    @property
    def algorithm_name(self) -> str:
        return self.engine.algorithm

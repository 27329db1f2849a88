"""The balancer's vocabulary: states, the in-flight entry, the server record, config.

Everything here is data. The core (`balancer.core`) is the only code that
changes a `Backend`'s fields or moves an `Entry`; connections and health checks
read what they need and ask the core for every change.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson

if TYPE_CHECKING:
    import asyncio

SAMPLES = 2048
"""Latency samples kept per server for the percentiles."""


class ServerState(StrEnum):
    STARTING = "STARTING"
    UP = "UP"
    DOWN = "DOWN"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"
    EJECTED = "EJECTED"
    """Taken out for a while after server faults in a row (outlier ejection)."""


class Admin(StrEnum):
    """What the operator asked for, apart from what health checks found."""

    READY = "ready"
    DRAIN = "drain"
    STOPPED = "stopped"


class Asker(Protocol):
    """What the core needs of a client connection to deliver an answer to it."""

    name: str
    number: int
    alive: bool
    pending: int
    out: list[bytes]

    def answered(self, origin: str | None) -> None:
        """An answer was just appended to `out` (origin: the server it was first sent to)."""

    def flush(self) -> None:
        """Write what is queued in `out` now."""


class Entry(msgspec.Struct, gc=False):
    """One request in flight on a server connection (or waiting for a server).

    A msgspec Struct: built in C, about 50 ns against a NamedTuple's 400 ns here
    (`timeit`, 1M builds), and one is built per request."""

    client: Asker
    prefix: bytes
    """The start of its answer, `{"id":7`: the client's id, already encoded."""
    line: bytes
    """The request as sent to the server (no id; the server numbers it by its line)."""
    since: float
    """time.monotonic() when it was sent to this server, or queued for one."""
    origin: str | None
    """The servers it was sent to before this one (`server1,server3`), or None."""
    attempts: int
    """Servers it has been sent to so far (1 on its first server)."""


@dataclass(frozen=True)
class HealthPolicy:
    """Check every `interval` s; `fall` failures mark a server DOWN, `rise` successes UP."""

    interval: float = 1.0
    rise: int = 2
    fall: int = 3
    timeout: float = 1.0


@dataclass(frozen=True)
class BalancerConfig:
    host: str = "127.0.0.1"
    port: int = 5001
    max_clients: int = 4096
    max_inflight: int = 4096
    """Requests in flight per client before its reading pauses (backpressure)."""
    write_buffer_limit: int = 256 * 1024
    """Unsent answer bytes per client before its reading pauses."""
    request_timeout: float = 2.0
    """A server holding a request this long (since it was sent there) is taken for
    frozen: DOWN, and what it holds goes to the next server."""
    queue_timeout: float = 10.0
    """How long a request waits for a server when none is UP."""
    max_queue: int = 100_000
    connect_timeout: float = 1.0
    """How long opening a server connection may take."""
    algorithm: str = "roundrobin"
    weights: dict[str, int] = field(default_factory=dict)
    retries: int = 1
    """Times a request that got a server fault is sent again, to another server."""
    retry_budget: float = 0.2
    """Retries allowed, as a fraction of the requests of the last 10 s (at least 3)."""
    eject_after: int = 5
    """Server faults or resets in a row that eject a server (0: never)."""
    eject_time: float = 10.0
    """First ejection's length in s; doubled on each repeat, reset after a healthy minute."""
    max_ejected: float = 0.5
    """The largest share of the servers ejected at once."""
    health: HealthPolicy = field(default_factory=HealthPolicy)

    @property
    def resume_inflight(self) -> int:
        return self.max_inflight // 2


class Backend:
    """A calculation server: address, health, admin state, in-flight map, counters.

    `inflight`, `sent` and `out` belong to the current connection (`link`): the
    core empties them whenever a connection ends, so numbers never carry over."""

    __slots__ = (
        "abandoned",
        "admin",
        "answered",
        "changed_at",
        "check_ms",
        "dirty",
        "eject_length",
        "eject_repeat",
        "ejected_until",
        "ejections",
        "errors",
        "fail_streak",
        "fault_streak",
        "faults",
        "generation",
        "health",
        "host",
        "inflight",
        "last_check",
        "last_ejected",
        "late",
        "latency_sum",
        "link",
        "name",
        "ok_streak",
        "out",
        "pings",
        "pong",
        "port",
        "reason",
        "redispatched",
        "remote",
        "retries",
        "samples",
        "sent",
        "suffix",
        "violations",
        "weight",
        "write",
    )

    def __init__(self, name: str, host: str | None, port: int | None,
                 remote: bool = False) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.remote = remote
        """A server lbconsole did not spawn."""
        self.health = ServerState.STARTING
        """STARTING, UP or DOWN: what checks and connections found."""
        self.admin = Admin.READY
        self.reason = "waiting for the first check"
        self.changed_at = time.monotonic()
        self.weight = 1
        self.inflight: dict[int, Entry] = {}
        """In-flight requests keyed by their line number on the current connection."""
        self.sent = 0
        """Lines written (or queued) on the current connection."""
        self.abandoned: set[int] = set()
        """Numbers taken back from the current connection while it stayed up (a frozen
        server): their answers are late, any other unknown number is a violation."""
        self.out: list[bytes] = []
        self.link: Any = None
        """The current connection (a `backend.ServerLink`), or None."""
        self.write: Callable[[bytes], None] | None = None
        """Sends bytes on the current connection."""
        self.dirty = False
        """True while queued in the core's list of servers to write to."""
        self.suffix = b',"server":' + orjson.dumps(name) + b"}\n"
        self.pings: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.generation = 0
        """Bumped on every new address: a check begun before it is ignored."""
        self.ok_streak = 0
        self.fail_streak = 0
        self.last_check: float | None = None
        self.check_ms: float | None = None
        self.pong: dict[str, Any] = {}
        self.answered = 0
        """Answers relayed from this server, results and errors."""
        self.errors = 0
        self.redispatched = 0
        """Requests taken away from this server after it failed."""
        self.late = 0
        """Answers that arrived after their request had been answered elsewhere."""
        self.violations = 0
        """Lines that broke the protocol."""
        self.latency_sum = 0.0
        self.samples: deque[float] = deque(maxlen=SAMPLES)
        self.faults = 0
        """Server faults it answered, and connections it reset with requests in flight."""
        self.retries = 0
        """Requests sent again elsewhere after a server fault here."""
        self.ejections = 0
        self.fault_streak = 0
        self.ejected_until = 0.0
        self.last_ejected = 0.0
        self.eject_repeat = 0
        self.eject_length = 0.0

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
        """True when the algorithm may hand this server new requests."""
        return (self.health is ServerState.UP and self.admin is Admin.READY
                and self.link is not None and self.weight > 0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.port else "-"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check for one server's streaks and state."""

    state: ServerState | None
    """The new state, or None when it stays as it is."""
    ok_streak: int
    fail_streak: int


def judge(
    state: ServerState,
    ok: bool,
    ok_streak: int,
    fail_streak: int,
    policy: HealthPolicy,
    *,
    hard: bool = False,
) -> Verdict:
    """The health state machine, pure so it can be tested alone.

    A STARTING server is UP after its first good check (it has just said it is
    ready); a DOWN one needs `rise` good checks in a row. An UP or STARTING
    server goes DOWN after `fall` failed checks in a row, or at once on a hard
    failure (a refused or dropped connection).
    """
    if ok:
        ok_streak, fail_streak = ok_streak + 1, 0
        if state is ServerState.STARTING or (
            state is ServerState.DOWN and ok_streak >= policy.rise
        ):
            return Verdict(ServerState.UP, ok_streak, fail_streak)
        return Verdict(None, ok_streak, fail_streak)
    ok_streak, fail_streak = 0, fail_streak + 1
    if state in (ServerState.UP, ServerState.STARTING) and (hard or fail_streak >= policy.fall):
        return Verdict(ServerState.DOWN, ok_streak, fail_streak)
    return Verdict(None, ok_streak, fail_streak)

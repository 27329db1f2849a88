"""The round-robin balancer: listener, servers, failover, waiting queue, snapshots.

The per-request work lives in `frontend.ClientConnection.data_received`
(requests) and `backend.BackendConnection.data_received` (answers); this module
handles everything that happens per event rather than per request: connections,
state changes, re-dispatching a failed server's requests, the bounded queue used
while no server is UP, and the periodic sweep that finds frozen servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from balancer.backend import Admin, Backend, BackendConnection, Entry, ServerState
from balancer.frontend import ClientConnection
from balancer.health import HealthChecker, HealthPolicy
from balancer.log import RequestLog
from balancer.protocol import dumps, json_id
from balancer.roundrobin import RoundRobin
from balancer.stats import BackendStats, BalancerStats, percentile

SWEEP_INTERVAL = 0.1
ROUTE_SAMPLE = 0.02
ROUTE_BUDGET = 32


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
    """A server holding a request this long is taken for frozen: DOWN, re-dispatch."""
    queue_timeout: float = 10.0
    """How long a request waits for a server when none is UP."""
    max_queue: int = 100_000
    health: HealthPolicy = field(default_factory=HealthPolicy)
    # SHIM: replaced by the core rewrite (the lab's algorithm and weights options).
    algorithm: str = "roundrobin"
    weights: dict[str, int] = field(default_factory=dict)

    @property
    def resume_inflight(self) -> int:
        return self.max_inflight // 2


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


StateListener = Callable[[Backend, ServerState, ServerState, str], None]


class Balancer:
    """Hands each request to the next UP server and each answer to its client."""

    def __init__(self, config: BalancerConfig | None = None, log: RequestLog | None = None) -> None:
        self.config = config or BalancerConfig()
        self.log = log or RequestLog(None)
        self.backends: list[Backend] = []
        self.rr: RoundRobin[Backend] = RoundRobin([], lambda b: b.eligible)
        self.clients: set[ClientConnection] = set()
        self.health = HealthChecker(self, self.config.health)
        self.waiting: deque[Entry] = deque()
        self.requests = 0
        self.answered = 0
        self.local_errors = 0
        self.refused_clients = 0
        self.redispatched = 0
        self.expired = 0
        self.discarded = 0
        self.recent_routes: deque[Route] = deque(maxlen=256)
        """The latest requests and where each went (a sample per server per write)."""
        self.recent_answers: deque[tuple[float, bytes, float]] = deque(maxlen=256)
        """(time, answer line, latency in s) for the latest answers."""
        self.listeners: list[StateListener] = []
        # Writes are deferred to the end of the loop iteration, so every client
        # and server gets one write per iteration however many chunks were read.
        self.dirty_clients: list[ClientConnection] = []
        self.dirty_backends: list[Backend] = []
        self.flush_scheduled = False
        self.routes_window_end = 0.0
        self.routes_budget = ROUTE_BUDGET
        """Routes the routing panel may still get before `routes_window_end`."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.host = self.config.host
        self.port = 0
        self.started = time.monotonic()
        self._server: asyncio.base_events.Server | None = None
        self._client_numbers = itertools.count(1)
        self._ping_ids = itertools.count(-1, -1)
        self._sweeper: asyncio.TimerHandle | None = None
        self._last_second = time.monotonic()
        self._answered_mark = 0
        self._rate = 0.0
        self._history_marks: dict[str, int] = {}
        self.history: dict[str, deque[int]] = {}
        self.closing = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Listen, start checks and the sweeper; returns the real port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.log.start()
        self._server = await loop.create_server(
            self._new_client, self.config.host, self.config.port, backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.started = time.monotonic()
        self.log.event(f"listening on {self.host}:{self.port}")
        self.health.start()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        return self.port

    def _new_client(self) -> ClientConnection:
        return ClientConnection(self, next(self._client_numbers))

    async def close(self, grace: float = 2.0) -> None:
        """Stop listening, answer what can be answered within `grace`, error the rest."""
        if self.closing:
            return
        self.closing = True
        if self._server is not None:
            self._server.close()
        await self.health.stop()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (
            (self.waiting and self.rr.ring) or any(b.inflight for b in self.backends)
        ):
            await asyncio.sleep(0.02)
        pending = [e for b in self.backends for e in b.inflight.values()] + list(self.waiting)
        for backend in self.backends:
            backend.inflight.clear()
        self.waiting.clear()
        if pending:
            self.log.event(f"shutting down: {len(pending)} requests unanswered get an error")
        for entry in pending:
            self._fail(entry, "balancer shutting down")
        for client in list(self.clients):
            client.flush()
            if client.transport is not None:
                client.transport.close()
        for backend in self.backends:
            if backend.conn is not None and backend.conn.transport is not None:
                backend.conn.transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self.log.event("balancer stopped")

    # ------------------------------------------------------------ servers

    def add_backend(self, name: str, host: str | None = None, port: int | None = None) -> Backend:
        if any(b.name == name for b in self.backends):
            raise ValueError(f"a server named {name!r} already exists")
        backend = Backend(name, host, port)
        self.backends.append(backend)
        self.history[name] = deque(maxlen=60)
        self.rr.add(backend)
        self.log.event(f"{name} added{f' at {host}:{port}' if port else ''}")
        return backend

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def set_address(self, name: str, host: str, port: int, reason: str = "process started") -> None:
        """Point a server at a new address (a restarted process) and check it at once."""
        backend = self.backend(name)
        old = backend.conn
        backend.host, backend.port = host, port
        backend.conn = None
        if old is not None and old.transport is not None:
            old.transport.close()
        self._failover(backend, "server replaced")
        backend.ok_streak = backend.fail_streak = 0
        if backend.admin is Admin.STOPPED:
            backend.admin = Admin.READY
        self.set_health(backend, ServerState.STARTING, f"{reason} on {host}:{port}")
        self.health.check_now(backend)

    def set_health(self, backend: Backend, health: ServerState, reason: str) -> None:
        """Record a health change; DOWN re-dispatches what the server held."""
        old_state = backend.state
        backend.health = health
        backend.reason = reason
        backend.changed_at = time.monotonic()
        if health is not ServerState.UP:
            backend.ok_streak = 0 if health is ServerState.DOWN else backend.ok_streak
        self._state_changed(backend, old_state, reason)
        if health is ServerState.DOWN:
            self._failover(backend, reason)

    def set_admin(self, backend: Backend, admin: Admin, reason: str) -> None:
        """Operator intent: READY, DRAIN (finish what it has, take nothing new), STOPPED."""
        old_state = backend.state
        backend.admin = admin
        backend.reason = reason
        backend.changed_at = time.monotonic()
        self._state_changed(backend, old_state, reason)

    def _state_changed(self, backend: Backend, old: ServerState, reason: str) -> None:
        self.rr.rebuild()
        new = backend.state
        if new is not old:
            self.log.event(f"{backend.name} {old} -> {new}: {reason}")
            for listener in list(self.listeners):
                listener(backend, old, new, reason)
        if self.rr.ring and self.waiting:
            self._drain_waiting()

    async def connect(self, backend: Backend) -> None:
        """Open the persistent connection to a server (raises OSError on failure)."""
        if backend.conn is not None:
            return
        if backend.connecting or not backend.port:
            raise ConnectionRefusedError("connection already being attempted")
        backend.connecting = True
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                lambda: BackendConnection(self, backend), backend.host, backend.port
            )
        finally:
            backend.connecting = False
        if backend.conn is not None or protocol.transport is None:
            protocol.transport and protocol.transport.close()
            return
        backend.conn = protocol
        backend.sent = 0
        self.rr.rebuild()

    async def ping(self, backend: Backend, timeout: float) -> dict:
        """Send `ping` on the server's connection; the pong with its counters."""
        conn = backend.conn
        if conn is None or conn.transport is None:
            raise ConnectionResetError("not connected")
        ping_id = next(self._ping_ids)
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        backend.pings[ping_id] = future
        # In line with the requests: the server counts this line too.
        backend.sent += 1
        backend.out.append(b'{"id":%d,"op":"ping"}' % ping_id)
        backend.flush()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            backend.pings.pop(ping_id, None)

    def pong_received(self, backend: Backend, line: bytes) -> None:
        try:
            answer = orjson.loads(line)
            future = backend.pings.get(answer["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if future is not None and not future.done():
            future.set_result(answer)

    def foreign_answer(self, backend: Backend, line: bytes) -> int:
        """An answer not in our servers' compact form: parse it properly. Returns late count."""
        try:
            answer = orjson.loads(line)
            sid = answer.pop("id")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            self.log.event(f"{backend.name} sent an unreadable line: {line[:80]!r}")
            return 0
        entry = backend.inflight.pop(sid, None) if isinstance(sid, int) else None
        if entry is None:
            return 1
        answer["server"] = backend.name
        body = dumps(answer)
        out = entry[1] + (b"," + body[1:] if len(body) > 2 else b"}") + b"\n"
        client = entry[0]
        client.pending -= 1
        backend.answered += 1
        self.answered += 1
        if client.alive:
            client.out.append(out)
            client.flush()
        return 0

    def backend_lost(self, conn: BackendConnection, exc: Exception | None) -> None:
        """Passive detection: a dropped connection marks the server DOWN at once."""
        backend = conn.backend
        if backend.conn is not conn:
            return
        backend.conn = None
        for future in backend.pings.values():
            if not future.done():
                future.set_exception(ConnectionResetError("connection lost"))
        if self.closing:
            return
        reason = "connection lost" if exc is None else f"connection lost ({exc})"
        if backend.health is ServerState.DOWN or backend.admin is Admin.STOPPED:
            self.rr.rebuild()
            self._failover(backend, reason)
            return
        self.set_health(backend, ServerState.DOWN, reason)

    # ------------------------------------------------------------ failover and queue

    def _failover(self, backend: Backend, reason: str) -> None:
        """Send every request the server holds to the next UP server (or the queue)."""
        entries = list(backend.inflight.values())
        backend.inflight.clear()
        if backend.conn is not None:
            # Still connected (a frozen server): write what was queued, so the
            # server's line numbers stay in step with ours; its answers will
            # come late and be dropped.
            backend.flush()
        else:
            backend.out.clear()
        if not entries:
            return
        backend.redispatched += len(entries)
        self.redispatched += len(entries)
        self.log.event(f"{backend.name}: re-dispatching {len(entries)} requests in flight "
                       f"({reason})")
        now = time.monotonic()
        origin = backend.name
        for entry in entries:
            client = entry[0]
            if not client.alive:
                client.pending -= 1
                self.discarded += 1
                continue
            self._dispatch((client, entry[1], entry[2], now, origin))
        self._flush_servers()

    def _dispatch(self, entry: Entry) -> None:
        target = self.rr.pick()
        if target is None:
            self.waiting.append(entry)
            return
        number = target.sent + 1
        target.sent = number
        target.inflight[number] = entry
        target.out.append(entry[2])

    def _flush_servers(self) -> None:
        for backend in self.rr.ring:
            if backend.out:
                self._note_routes(backend)
            backend.flush()

    def schedule_flush(self) -> None:
        """Write what the hot paths queued once this loop iteration's reads are done."""
        self.flush_scheduled = True
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(self.flush_all)

    def flush_backend(self, backend: Backend) -> None:
        """Write one server's queue now (outside the end-of-iteration flush)."""
        if backend.out and self._may_note_routes(time.monotonic()):
            self._note_routes(backend)
        backend.flush()

    def flush_all(self) -> None:
        self.flush_scheduled = False
        backends, self.dirty_backends = self.dirty_backends, []
        if self._may_note_routes(time.monotonic()):
            for backend in backends:
                if backend.out:
                    self._note_routes(backend)
        for backend in backends:
            backend.flush()
        clients, self.dirty_clients = self.dirty_clients, []
        for client in clients:
            client.flush()

    def _may_note_routes(self, now: float) -> bool:
        """The routing panel gets up to ROUTE_BUDGET routes every ROUTE_SAMPLE s: at
        low rates every request, at high rates a sample that costs next to nothing."""
        if now >= self.routes_window_end:
            self.routes_window_end = now + ROUTE_SAMPLE
            self.routes_budget = ROUTE_BUDGET
        return self.routes_budget > 0

    def _note_routes(self, backend: Backend) -> None:
        """Remember the latest requests queued for a server, for the routing panel."""
        count = min(len(backend.out), 8)
        self.routes_budget -= count
        last = backend.sent
        for number in range(last - count + 1, last + 1):
            self._remember_route(backend, backend.inflight.get(number))

    def note_route(self, backend: Backend, number: int, now: float) -> None:
        """Remember one request just sent (the lone-request path), within the budget."""
        if self._may_note_routes(now):
            self.routes_budget -= 1
            self._remember_route(backend, backend.inflight.get(number))

    def _remember_route(self, backend: Backend, entry: Entry | None) -> None:
        if entry is not None:
            client = entry[0]
            self.recent_routes.append(Route(entry[3], backend.name, client.name, client.number,
                                            entry[1][6:].decode("utf-8", "replace"), entry[2],
                                            entry[4]))

    def enqueue(self, entry: Entry) -> None:
        """Hold a request while no server is UP; refuse it when the queue is full."""
        if len(self.waiting) >= self.config.max_queue:
            self._fail(entry, "no server available (queue full)")
            return
        if not self.waiting:
            self.log.event("no server UP: requests wait in the queue "
                           f"(up to {self.config.queue_timeout:g}s)")
        self.waiting.append(entry)

    def _drain_waiting(self) -> None:
        waiting = self.waiting
        count = 0
        while waiting and self.rr.ring:
            entry = waiting.popleft()
            client = entry[0]
            if not client.alive:
                client.pending -= 1
                continue
            self._dispatch(entry)
            count += 1
        if count:
            self.log.event(f"{count} queued requests sent now that a server is UP")
        self._flush_servers()

    def _fail(self, entry: Entry, message: str) -> None:
        """Answer one request with an error from the balancer itself."""
        client = entry[0]
        client.pending -= 1
        if client.alive:
            client._answer(entry[1] + b',"error":' + orjson.dumps(message) + b"}\n")
            client.flush()

    def _sweep(self) -> None:
        """Every 100 ms: frozen servers, expired queue entries, per-second history."""
        now = time.monotonic()
        timeout = self.config.request_timeout
        for backend in self.backends:
            inflight = backend.inflight
            if inflight:
                oldest = next(iter(inflight.values()))
                waited = now - oldest[3]
                if waited > timeout:
                    if backend.health is ServerState.UP or backend.admin is Admin.DRAIN:
                        self.set_health(backend, ServerState.DOWN,
                                        f"no answer for {waited:.1f}s (frozen?)")
                    else:
                        self._failover(backend, f"no answer for {waited:.1f}s")
        waiting = self.waiting
        expired = 0
        limit = self.config.queue_timeout
        while waiting and now - waiting[0][3] > limit:
            self._fail(waiting.popleft(), "no server available")
            expired += 1
        if expired:
            self.expired += expired
            self.log.event(f"{expired} queued requests expired: no server available "
                           f"for {limit:g}s")
        if now - self._last_second >= 1.0:
            self._tick_second(now)
        if not self.closing:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    def _tick_second(self, now: float) -> None:
        elapsed = now - self._last_second
        self._last_second = now
        self._rate = (self.answered - self._answered_mark) / elapsed
        self._answered_mark = self.answered
        for backend in self.backends:
            total = backend.answered
            mark = self._history_marks.get(backend.name, 0)
            self._history_marks[backend.name] = total
            self.history.setdefault(backend.name, deque(maxlen=60)).append(
                round((total - mark) / elapsed))

    # ------------------------------------------------------------ reading the state

    def pong_line(self, rid: object) -> bytes:
        """The balancer's own answer to `ping` from a client."""
        up = sum(1 for b in self.backends if b.eligible)
        return (b'{"id":%b,"pong":"lbconsole","servers_up":%d,"servers":%d}\n'
                % (json_id(rid), up, len(self.backends)))

    def stats(self) -> BalancerStats:
        """A consistent snapshot for the console and tests (not per request)."""
        now = time.monotonic()
        total = sum(b.answered for b in self.backends) or 1
        nxt = self.rr.peek()
        rows = []
        for b in self.backends:
            samples = list(b.samples)
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
                p99_ms=(p * 1000) if (p := percentile(samples, 0.99)) is not None else None,
                share=b.answered / total,
                is_next=b is nxt,
                history=tuple(self.history.get(b.name, ())),
                p50_ms=(p * 1000) if (p := percentile(samples, 0.5)) is not None else None,
            ))
        return BalancerStats(
            address=f"{self.host}:{self.port}",
            uptime=now - self.started,
            clients=len(self.clients),
            requests=self.requests,
            answered=self.answered,
            errors=sum(b.errors for b in self.backends) + self.local_errors,
            redispatched=self.redispatched,
            queued=len(self.waiting),
            expired=self.expired,
            late=sum(b.late for b in self.backends),
            refused=self.refused_clients,
            discarded=self.discarded,
            rate=self._rate,
            servers_up=sum(1 for b in self.backends if b.eligible),
            backends=tuple(rows),
        )

    def inflight_total(self) -> int:
        return sum(len(b.inflight) for b in self.backends) + len(self.waiting)

    # SHIM: replaced by the core rewrite. The lab's control API, recorded only:
    # routing stays round robin (the hot path reads `rr.ring`/`rr.pos` inline)
    # until the core picks through balancer.algorithms.
    @property
    def algorithm_name(self) -> str:
        return getattr(self, "_shim_algorithm", self.config.algorithm)

    def set_algorithm(self, name: str) -> None:
        from balancer.algorithms import ALGORITHMS

        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r} (use {', '.join(ALGORITHMS)})")
        self._shim_algorithm = name

    def set_weight(self, name: str, weight: int) -> None:
        backend = self.backend(name)
        if not 0 <= weight <= 256:
            raise ValueError(f"a weight is from 0 to 256, not {weight}")
        backend.weight = weight  # type: ignore[attr-defined]

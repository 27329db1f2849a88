"""The core: the one owner of the balancer's shared state and of every transition.

It owns the server records, the algorithm's rotation, the queue used while no
server is UP, the lists of connections to write to at the end of the loop
iteration, and the counters. Client connections hand it requests
(`dispatch`), server connections hand it answers (`deliver`), the losses and
protocol violations they see (`link_lost`, `violation`), and health checks
their verdicts (`report_check`). Nothing else writes a `Backend`'s fields.

There is one path for a request (`dispatch`, which `_resend` feeds for
re-dispatched and queued ones) and one for an answer (`deliver`); a chunk of
one line is the cheap case of the same code, not a copy of it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from balancer.algorithms import make_algorithm, switch_algorithm
from balancer.log import RequestLog
from balancer.model import Admin, Asker, Backend, BalancerConfig, Entry, ServerState, judge
from balancer.protocol import json_id
from balancer.routes import RouteSampler

StateListener = Callable[[Backend, ServerState, ServerState, str], None]

_FAULT = b'"fault":"server"'

HEALTHY_PERIOD = 60.0
"""Seconds without an ejection after which a server's ejection length starts over."""


class RetryBudget:
    """Retries allowed over the last 10 s: a share of the requests, at least 3 (the
    idea of Envoy's retry budget: a sick fleet is not hammered with retries)."""

    __slots__ = ("_marks", "requests", "retries", "share")

    def __init__(self, share: float) -> None:
        self.share = share
        self.requests: deque[int] = deque(maxlen=10)
        self.retries: deque[int] = deque(maxlen=10)
        self._marks = (0, 0)

    def tick(self, requests: int, retries: int) -> None:
        """Once a second: close the current second's counts."""
        self.requests.append(requests - self._marks[0])
        self.retries.append(retries - self._marks[1])
        self._marks = (requests, retries)

    def allows(self, requests: int, retries: int) -> bool:
        window_requests = sum(self.requests) + requests - self._marks[0]
        window_retries = sum(self.retries) + retries - self._marks[1]
        return window_retries < max(3.0, self.share * window_requests)


def _path(entry: Entry, backend: Backend) -> str:
    """The servers a request has been sent to, this one included: `server1,server3`."""
    return backend.name if entry.origin is None else f"{entry.origin},{backend.name}"


class Core:
    """Hands each request to the server the algorithm picks, each answer to its client."""

    def __init__(self, config: BalancerConfig, log: RequestLog) -> None:
        self.config = config
        self.log = log
        self.backends: list[Backend] = []
        self.algorithm = make_algorithm(config.algorithm, self.backends,
                                        lambda b: b.eligible)
        self.ring: list[Backend] = []
        """The servers that take new requests, in configured order."""
        self.waiting: deque[Entry] = deque()
        self.clients: set[Any] = set()
        self.listeners: list[StateListener] = []
        self.routes = RouteSampler()
        self.recent_answers: deque[tuple[float, bytes, float]] = deque(maxlen=256)
        """(time, answer line, latency in s) for the latest answers."""
        # Writes are deferred to the end of the loop iteration, so every client
        # and server gets one write per iteration however many chunks were read.
        self.dirty_clients: list[Asker] = []
        self.dirty_backends: list[Backend] = []
        self.flush_scheduled = False
        self.closing = False
        self.requests = 0
        self.answered = 0
        self.local_errors = 0
        self.refused_clients = 0
        self.redispatched = 0
        self.expired = 0
        self.discarded = 0
        self.retries = 0
        self.budget = RetryBudget(config.retry_budget)
        self._ping_ids = itertools.count(-1, -1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ------------------------------------------------------------ servers

    def add_backend(self, name: str, host: str | None = None, port: int | None = None,
                    remote: bool = False) -> Backend:
        if any(b.name == name for b in self.backends):
            raise ValueError(f"a server named {name!r} already exists")
        backend = Backend(name, host, port, remote=remote)
        backend.weight = self.config.weights.get(name, 1)
        self.backends.append(backend)
        self.algorithm.add(backend)
        self._rebuild()
        self.log.event(f"{name} added{f' at {host}:{port}' if port else ''}")
        return backend

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def set_address(self, backend: Backend, host: str, port: int, reason: str) -> None:
        """Point a server at a new address (a restarted process): whatever its old
        connection held is answered elsewhere, checks begun before now are ignored."""
        backend.generation += 1
        self.detach(backend, "server replaced")
        backend.host, backend.port = host, port
        backend.ok_streak = backend.fail_streak = 0
        if backend.admin is Admin.STOPPED:
            backend.admin = Admin.READY
        self.set_health(backend, ServerState.STARTING, f"{reason} on {host}:{port}")

    def set_health(self, backend: Backend, health: ServerState, reason: str) -> None:
        """Record a health change; DOWN sends what the server held to the others."""
        old = backend.state
        backend.health = health
        backend.reason = reason
        backend.changed_at = time.monotonic()
        if health is ServerState.DOWN:
            backend.ok_streak = 0
        self._changed(backend, old, reason)
        if health is ServerState.DOWN:
            self._take_back(backend, reason)

    def set_admin(self, backend: Backend, admin: Admin, reason: str) -> None:
        """Operator intent: READY, DRAIN (finish what it has, take nothing new), STOPPED."""
        old = backend.state
        backend.admin = admin
        backend.reason = reason
        backend.changed_at = time.monotonic()
        self._changed(backend, old, reason)

    def set_weight(self, backend: Backend, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise ValueError(f"a weight is an integer from 0 to 256, not {weight}")
        old = backend.weight
        backend.weight = weight
        self.log.event(f"{backend.name} weight {old} -> {weight}")
        self._rebuild()

    def set_algorithm(self, name: str) -> None:
        """Switch the algorithm live (ValueError for an unknown name)."""
        algorithm = switch_algorithm(self.algorithm, name)
        old = self.algorithm.name
        self.algorithm = algorithm
        self._rebuild()
        self.log.event(f"algorithm {old} -> {algorithm.name}")

    def _changed(self, backend: Backend, old: ServerState, reason: str) -> None:
        self._rebuild()
        new = backend.state
        if new is not old:
            self.log.event(f"{backend.name} {old} -> {new}: {reason}")
            for listener in list(self.listeners):
                listener(backend, old, new, reason)

    def _rebuild(self) -> None:
        """After any change of eligibility: the ring, the algorithm, the queue."""
        self.ring = [b for b in self.backends if b.eligible]
        self.algorithm.rebuild()
        if self.ring and self.waiting:
            self._drain_waiting()

    # ------------------------------------------------------------ connections

    def attach(self, backend: Backend, link: Any, write: Callable[[bytes], None]) -> bool:
        """A connection to the server opened (`write` sends on it); False when it
        already has one."""
        if backend.link is not None:
            return False
        backend.link = link
        backend.write = write
        backend.sent = 0
        backend.inflight = {}
        backend.abandoned = set()
        backend.out = []
        self._rebuild()
        return True

    def detach(self, backend: Backend, reason: str) -> None:
        """End the server's current connection: everything it held is answered
        elsewhere, exactly once; its numbering starts again on the next one."""
        link = backend.link
        if link is None:
            return
        backend.link = None
        backend.write = None
        for future in backend.pings.values():
            if not future.done():
                future.set_exception(ConnectionResetError(reason))
        self._rebuild()
        self._take_back(backend, reason)
        backend.sent = 0
        backend.out = []
        backend.abandoned = set()
        link.close()

    def link_lost(self, backend: Backend, link: Any, exc: Exception | None) -> None:
        """Passive detection: a dropped connection marks the server DOWN at once."""
        if backend.link is not link:
            return
        reason = "connection lost" if exc is None else f"connection lost ({exc})"
        held = bool(backend.inflight)
        self.detach(backend, reason)
        if self.closing:
            return
        if held and self._faulted(backend):
            # It closed with requests in flight (a reset), once too often in a row.
            self._eject(backend, time.monotonic())
            return
        if backend.health is not ServerState.DOWN and backend.admin is not Admin.STOPPED:
            self.set_health(backend, ServerState.DOWN, reason)

    def violation(self, backend: Backend, link: Any, what: str) -> None:
        """The server broke the protocol: DOWN, its requests re-sent, connection closed."""
        backend.violations += 1
        if backend.link is not link:
            return
        reason = f"protocol violation: {what}"
        self.detach(backend, reason)
        if backend.health is not ServerState.DOWN:
            self.set_health(backend, ServerState.DOWN, reason)

    # ------------------------------------------------------------ requests

    def dispatch(self, client: Asker, prefixes: list[bytes], lines: list[bytes]) -> None:
        """Send requests (the client's answer prefix and the line for the server) on."""
        count = len(lines)
        if not count:
            return
        now = time.monotonic()
        ring = self.ring
        if not ring:
            for i, line in enumerate(lines):
                self._enqueue(Entry(client, prefixes[i], line, now, None, 1))
        else:
            # The algorithm picks every target of the chunk in one call (round
            # robin by slicing its ring, in C); the loop then does per request only
            # what every request needs.
            # Indexing beats zip() here: zip's set-up costs more than a lone
            # request's whole loop (measured: 2.1 us against 0.5 us).
            targets = self.algorithm.pick_many(count)
            i = 0
            for line in lines:
                backend = targets[i]
                number = backend.sent + 1
                backend.sent = number
                backend.inflight[number] = Entry(client, prefixes[i], line, now, None, 1)
                backend.out.append(line)
                i += 1  # noqa: SIM113 (enumerate costs more here, see above)
        client.pending += count
        self.requests += count
        if not ring:
            return
        if count == 1 and not self.flush_scheduled:
            # A lone request and nothing else due this iteration (ping-pong, a
            # person typing): no batching to gain, so it is written now.
            self._flush_backend(backend, now)
            return
        dirty = self.dirty_backends
        for backend in ring:
            if backend.out and not backend.dirty:
                backend.dirty = True
                dirty.append(backend)
        self.schedule_flush()

    def _resend(self, entry: Entry, origin: str, now: float,
                avoid: Backend | None = None) -> None:
        """One request again, to the next server (or the queue): re-dispatch, retry."""
        target = self.algorithm.pick() if self.ring else None
        if target is avoid and len(self.ring) > 1:
            for _ in self.ring:
                target = self.algorithm.pick()
                if target is not avoid:
                    break
        if target is None:
            self._enqueue(Entry(entry.client, entry.prefix, entry.line, now, origin,
                                entry.attempts))
            return
        number = target.sent + 1
        target.sent = number
        target.inflight[number] = Entry(entry.client, entry.prefix, entry.line, now, origin,
                                        entry.attempts + 1)
        target.out.append(entry.line)
        if not target.dirty:
            target.dirty = True
            self.dirty_backends.append(target)

    def _enqueue(self, entry: Entry) -> None:
        """Hold a request while no server is UP; refuse it when the queue is full."""
        if len(self.waiting) >= self.config.max_queue:
            self.fail(entry, "no server available (queue full)")
            return
        if not self.waiting:
            self.log.event("no server UP: requests wait in the queue "
                           f"(up to {self.config.queue_timeout:g}s)")
        self.waiting.append(entry)

    def _drain_waiting(self) -> None:
        waiting = self.waiting
        count = 0
        now = time.monotonic()
        while waiting and self.ring:
            entry = waiting.popleft()
            if not entry.client.alive:
                self._drop(entry)
                continue
            # Its request timeout counts from now, when a server gets it.
            target = self.algorithm.pick()
            number = target.sent + 1
            target.sent = number
            target.inflight[number] = msgspec.structs.replace(entry, since=now)
            target.out.append(entry.line)
            if not target.dirty:
                target.dirty = True
                self.dirty_backends.append(target)
            count += 1
        if count:
            self.log.event(f"{count} queued requests sent now that a server is UP")
            self.schedule_flush()

    def _take_back(self, backend: Backend, reason: str) -> None:
        """Send every request the server holds to the others (or the queue)."""
        inflight = backend.inflight
        entries = list(inflight.values())
        if backend.link is not None:
            backend.abandoned.update(inflight)
        inflight.clear()
        if backend.link is not None:
            # Still connected (a frozen server): write what was queued, so the
            # server's numbering stays in step with ours; its answers will come
            # late and be dropped.
            self._flush_backend(backend)
        else:
            backend.out.clear()
        if not entries:
            return
        backend.redispatched += len(entries)
        self.redispatched += len(entries)
        self.log.event(f"{backend.name}: re-dispatching {len(entries)} requests in flight "
                       f"({reason})")
        now = time.monotonic()
        for entry in entries:
            if not entry.client.alive:
                self._drop(entry)
                continue
            self._resend(entry, _path(entry, backend), now)
        self.schedule_flush()

    def _retry(self, backend: Backend, entry: Entry, now: float) -> bool:
        """A server fault: send the request to another server if its retries and the
        budget allow; False when the fault is to be the answer."""
        if entry.attempts > self.config.retries or not entry.client.alive:
            return False
        if not any(b is not backend for b in self.ring):
            return False
        if not self.budget.allows(self.requests, self.retries):
            return False
        backend.retries += 1
        self.retries += 1
        self._resend(entry, _path(entry, backend), now, avoid=backend)
        return True

    def _faulted(self, backend: Backend, count: int = 1) -> bool:
        """`count` more server faults or resets in a row; True when that calls for
        ejecting the server (the caller ejects it once its chunk is done)."""
        backend.faults += count
        backend.fault_streak += count
        limit = self.config.eject_after
        if not limit or backend.fault_streak < limit or backend.health is ServerState.EJECTED:
            return False
        ejected = sum(1 for b in self.backends if b.health is ServerState.EJECTED)
        return ejected + 1 <= self.config.max_ejected * len(self.backends)

    def _eject(self, backend: Backend, now: float) -> None:
        """Outlier ejection: out of the rotation for eject_time, doubled on each repeat
        (reset after a minute without one); back through the health checks."""
        if now - backend.last_ejected > HEALTHY_PERIOD + backend.eject_length:
            backend.eject_repeat = 0
        length = self.config.eject_time * 2 ** backend.eject_repeat
        backend.eject_repeat += 1
        backend.eject_length = length
        backend.ejections += 1
        backend.last_ejected = now
        backend.ejected_until = now + length
        streak, backend.fault_streak = backend.fault_streak, 0
        self.set_health(backend, ServerState.EJECTED,
                        f"ejected for {length:g}s after {streak} server faults or resets "
                        "in a row")
        self._take_back(backend, "ejected")

    def _drop(self, entry: Entry) -> None:
        entry.client.pending -= 1
        self.discarded += 1

    def fail(self, entry: Entry, message: str) -> None:
        """Answer one request with an error from the balancer itself."""
        client = entry.client
        client.pending -= 1
        self.answer_locally(client, entry.prefix + b',"error":' + orjson.dumps(message)
                            + b"}\n", error=True)

    def answer_locally(self, client: Asker, line: bytes, error: bool) -> None:
        """Queue an answer the balancer made itself (an error, a pong, a goodbye)."""
        if error:
            self.local_errors += 1
        if not client.alive:
            self.discarded += 1
            return
        if not client.out:
            self.dirty_clients.append(client)
        client.out.append(line)
        self.schedule_flush()

    # ------------------------------------------------------------ answers

    def deliver(self, backend: Backend, lines: list[bytes], errors: int = -1,
                faults: int = -1) -> None:
        """Answers from a server, each `{"id":N,...}` with N its line number there;
        `errors` and `faults`, when the caller counted them already (-1: not
        counted), are how many are errors and server faults."""
        eject = False
        if faults:
            count = len(lines)
            lines, eject = self._sort_faults(backend, lines)
            if len(lines) != count:
                errors = -1
        else:
            backend.fault_streak = 0
        inflight = backend.inflight
        suffix = backend.suffix
        dirty = self.dirty_clients
        answered = late = late_errors = 0
        duplicate = None
        since_sum = 0.0
        last = None
        out = b""
        for line in lines:
            cut = line.find(b",", 6)
            number = int(line[6:cut])
            entry = inflight.pop(number, None)
            if entry is None:
                if number in backend.abandoned:
                    backend.abandoned.discard(number)
                    late += 1
                    late_errors += b',"error":' in line
                    continue
                duplicate = number
                break
            client = entry.client
            out = entry.prefix + line[cut:-1] + suffix
            since_sum += entry.since
            client.pending -= 1
            queued = client.out
            if not queued:
                dirty.append(client)
            queued.append(out)
            if entry.origin is not None:
                # Moved or retried: the answer says how many servers it took.
                queued[-1] = out[:-2] + b',"attempts":%d}\n' % entry.attempts
                client.answered(entry.origin)
            answered += 1
            last = entry
        if late:
            backend.late += late
        if duplicate is not None:
            self.violation(backend, backend.link, f"answer to request {duplicate}, which "
                           "it was never sent or has answered already")
        if last is None:
            if eject and backend.health is not ServerState.EJECTED:
                self._eject(backend, time.monotonic())
            return
        now = time.monotonic()
        if errors < 0 or answered != len(lines):
            # Some lines were late or broke off the chunk: count what was delivered.
            done = lines if duplicate is None else lines[:answered + late]
            errors = sum(1 for line in done if b',"error":' in line) - late_errors
        backend.errors += errors
        backend.answered += answered
        backend.latency_sum += answered * now - since_sum
        self.answered += answered
        # One latency sample per chunk, the last answer's: per answer would cost
        # more than the percentile is worth.
        latency = now - last.since
        backend.samples.append(latency)
        self.recent_answers.append((now, out, latency))
        if eject and backend.health is not ServerState.EJECTED:
            self._eject(backend, now)
        if answered == 1 and not self.flush_scheduled:
            # A lone answer (ping-pong): write it now, as a lone request is.
            dirty.clear()
            last.client.flush()
        else:
            self.schedule_flush()

    def _sort_faults(self, backend: Backend, lines: list[bytes]) -> tuple[list[bytes], bool]:
        """Take the server faults out of a chunk: each is retried on another server
        when its retries and the budget allow, else stays in as the answer. Also
        counts faults in a row, in order; True when the server is to be ejected."""
        keep: list[bytes] = []
        now = time.monotonic()
        inflight = backend.inflight
        eject = False
        for line in lines:
            if _FAULT not in line:
                backend.fault_streak = 0
                keep.append(line)
                continue
            eject = self._faulted(backend) or eject
            cut = line.find(b",", 6)
            number = int(line[6:cut])
            entry = inflight.get(number)
            if entry is not None and self._retry(backend, entry, now):
                del inflight[number]
                continue
            keep.append(line)
        if self.dirty_backends:
            self.schedule_flush()
        return keep, eject

    # ------------------------------------------------------------ writing

    def schedule_flush(self) -> None:
        """Write what was queued once this loop iteration's reads are done."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self.flush_all)

    def _flush_backend(self, backend: Backend, now: float = 0.0) -> None:
        """Write everything queued for one server in one call."""
        backend.dirty = False
        out = backend.out
        if not out:
            return
        routes = self.routes
        if not now:
            now = time.monotonic()
        # Two attribute reads decide whether the Routing panel's sampler is asked.
        if (routes.budget > 0 or now >= routes.window_end) and routes.wants(now):
            routes.note(backend, len(out))
        write = backend.write
        if write is not None:
            out.append(b"")
            write(b"\n".join(out))
        out.clear()

    def flush_all(self) -> None:
        self.flush_scheduled = False
        backends, self.dirty_backends = self.dirty_backends, []
        if backends:
            now = time.monotonic()
            for backend in backends:
                self._flush_backend(backend, now)
        clients, self.dirty_clients = self.dirty_clients, []
        for client in clients:
            client.flush()

    # ------------------------------------------------------------ health

    def ping(self, backend: Backend) -> asyncio.Future[dict]:
        """Send `ping` on the server's connection, in line with its requests."""
        if backend.link is None:
            raise ConnectionResetError("not connected")
        ping_id = next(self._ping_ids)
        future: asyncio.Future[dict] = (self._loop or asyncio.get_running_loop()).create_future()
        backend.pings[ping_id] = future
        future.add_done_callback(lambda _f: backend.pings.pop(ping_id, None))
        # The server numbers this line too.
        backend.sent += 1
        backend.out.append(b'{"id":%d,"op":"ping"}' % ping_id)
        self._flush_backend(backend)
        return future

    def pong(self, backend: Backend, ping_id: int, answer: dict) -> None:
        future = backend.pings.get(ping_id)
        if future is not None and not future.done():
            future.set_result(answer)

    def report_check(self, backend: Backend, generation: int, ok: bool, hard: bool,
                     reason: str, elapsed: float, pong: dict | None) -> None:
        """A health check's outcome; one begun before the server's last restart is ignored."""
        if generation != backend.generation:
            return
        backend.last_check = time.monotonic()
        if ok:
            backend.check_ms = elapsed * 1000
            backend.pong = pong or {}
        if backend.admin is Admin.STOPPED:
            return
        verdict = judge(backend.health, ok, backend.ok_streak, backend.fail_streak,
                        self.config.health, hard=hard)
        backend.ok_streak, backend.fail_streak = verdict.ok_streak, verdict.fail_streak
        if verdict.state is not None:
            if verdict.state is ServerState.UP:
                if backend.health is ServerState.DOWN:
                    reason = f"{verdict.ok_streak} checks passed"
                else:
                    reason = f"first check passed in {elapsed * 1000:.1f} ms"
            elif not hard:
                reason = f"{verdict.fail_streak} checks failed: {reason}"
            self.set_health(backend, verdict.state, reason)
        elif not ok and backend.health is ServerState.DOWN:
            # Still DOWN: the table shows the latest cause (a network one for a
            # remote server: connect timed out, no route to host, refused).
            base = backend.reason.split("; now: ")[0]
            backend.reason = f"{base}; now: {reason}"
        if not ok and backend.health is ServerState.DOWN and backend.link is not None \
                and verdict.fail_streak >= self.config.health.fall:
            # DOWN and still silent on its old connection (frozen, black-holed):
            # tear the connection down; the next check opens a new one.
            self.detach(backend, f"no answer on its connection ({reason})")

    # ------------------------------------------------------------ time

    def tick_second(self) -> None:
        """Once a second, from the service: the retry budget's window moves on."""
        self.budget.tick(self.requests, self.retries)

    def sweep(self, now: float) -> None:
        """Servers holding a request too long (frozen), queued requests too old,
        ejections that are over."""
        timeout = self.config.request_timeout
        for backend in self.backends:
            if backend.health is ServerState.EJECTED and now >= backend.ejected_until:
                self.set_health(backend, ServerState.DOWN,
                                f"ejection over after {backend.eject_length:g}s; back after "
                                "its checks pass")
            inflight = backend.inflight
            if inflight:
                oldest = next(iter(inflight.values()))
                waited = now - oldest.since
                if waited > timeout:
                    if backend.health is ServerState.UP:
                        guess = "unreachable?" if backend.remote else "frozen?"
                        self.set_health(backend, ServerState.DOWN,
                                        f"no answer for {waited:.1f}s ({guess})")
                    else:
                        self._take_back(backend, f"no answer for {waited:.1f}s")
        waiting = self.waiting
        expired = 0
        limit = self.config.queue_timeout
        while waiting and now - waiting[0].since >= limit:
            self.fail(waiting.popleft(), "no server available")
            expired += 1
        if expired:
            self.expired += expired
            self.log.event(f"{expired} queued requests expired: no server available "
                           f"for {limit:g}s")

    def take_back_stuck(self, older_than: float) -> None:
        """At shutdown: what a server has held for `older_than` s goes to another."""
        now = time.monotonic()
        for backend in self.backends:
            inflight = backend.inflight
            if inflight and now - next(iter(inflight.values())).since >= older_than:
                if backend.health is ServerState.UP:
                    self.set_health(backend, ServerState.DOWN, "no answer during shutdown")
                else:
                    self._take_back(backend, "no answer during shutdown")

    def fail_everything(self, message: str) -> int:
        pending = [e for b in self.backends for e in b.inflight.values()] + list(self.waiting)
        for backend in self.backends:
            backend.inflight.clear()
        self.waiting.clear()
        for entry in pending:
            self.fail(entry, message)
        return len(pending)

    def pong_line(self, rid: object) -> bytes:
        """The balancer's own answer to `ping` from a client."""
        return (b'{"id":%b,"pong":"lbconsole","servers_up":%d,"servers":%d}\n'
                % (json_id(rid), len(self.ring), len(self.backends)))

    def inflight_total(self) -> int:
        return sum(len(b.inflight) for b in self.backends) + len(self.waiting)

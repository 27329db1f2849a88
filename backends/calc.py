"""What a calculation server does with one request line, for every front (lines, HTTP).

`CalcServer.handle(line, seq, reply)` parses and computes a request with the
server's settings applied (work, workers, speed, latency, faults) and calls
`reply(answer_line)` now or later, or `reply(None)` for an injected reset (the
caller closes its connection). The line front calls `answer()` instead, which
returns an immediate answer so it can batch one write per chunk it read; both
are the same path.

A front registers each open connection in `CalcServer.connections` (any
object with `pause()` and `resume()`, see `Pausable`) and discards it when it
closes; one that opens while `settings.blackhole` is on pauses itself at once.
A black hole calls `pause()` on all of them and heal calls `resume()`.

The plain path (text requests, no work, no latency, no fault) is measured by
the bench: it costs one attribute test more than a server without settings.
Requests with `work_ms` 0 or without it skip the worker queue and are
answered at once; only requests with work wait for a worker.
Faults (flaky, resets) apply to calculations, never to pings: a health check
sees a flaky server as up, as a separate health endpoint would. A flaky fault
replaces only answers that would have succeeded (a division by zero stays a
client error, never marked "fault"). A black hole stops everything, pings
included; answers that come due meanwhile are held and leave when it ends, as
a burst after a healed partition would.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from backends.settings import ServerSettings
from backends.work import WorkQueue
from balancer.protocol import (
    ALIASES,
    OPERATIONS,
    Ping,
    ProtocolError,
    Request,
    answer_line,
    compute,
    draw_operands,
    dumps,
    error_line,
    parse_line,
    parse_text,
)

Reply = Callable[[bytes | None], None]
"""Takes one answer line, or None: close the connection instead (an injected reset)."""

FAULT_MESSAGE = "server fault (injected)"

_SUM, _SUB, _MUL, _DIV = (op.encode() for op in OPERATIONS)
_FAST_OPS: dict[bytes, bytes] = {
    alias.encode(): {"somma": _SUM, "sottrazione": _SUB, "moltiplicazione": _MUL,
                     "divisione": _DIV}[name]
    for alias, name in ALIASES.items()
}


class Pausable(Protocol):
    """A connection of any front: a black hole pauses its reading, heal resumes it."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...


def _discard(answer: bytes | None) -> None:
    pass


class CalcServer:
    """Answers request lines; holds the settings and the counters a `ping` reports."""

    def __init__(self, name: str, delay: float = 0.0, seed: int | None = None,
                 settings: ServerSettings | None = None) -> None:
        self.name = name
        if settings is None:
            settings = ServerSettings(latency_ms=delay * 1000.0)
        self.rng = random.Random(seed)
        """Draws the operands of requests that carry none."""
        self.fault_rng = random.Random(None if seed is None else f"faults-{seed}")
        """Decides which requests get an injected fault: repeatable with a seed."""
        self.served = 0
        self.errors = 0
        self.faults_injected = 0
        self.resets_injected = 0
        self.connections: set[Pausable] = set()
        """Every open connection of every front registers here, for black holes."""
        self.held: list[tuple[Reply, bytes]] = []
        """Answers that came due while black-holed; delivered in order when it ends."""
        self.outstanding = 0
        """Answers promised but not yet given to their reply (in work, delayed or held)."""
        self.started = time.monotonic()
        self.work = WorkQueue()
        self.settings = ServerSettings()
        self.special = False
        """True when anything but the plain path applies: latency or a fault."""
        self.configure(settings.as_dict())

    # ------------------------------------------------------------ settings

    @property
    def delay(self) -> float:
        """The fixed latency in seconds (the older name of `latency_ms`)."""
        return self.settings.latency_ms / 1000.0

    def configure(self, changes: Mapping[str, object]) -> dict[str, object]:
        """Apply a change set (validated: raises ValueError); returns the settings after it."""
        old = self.settings
        new = old.changed(changes)
        self.settings = new
        self.work.speed = new.speed
        if new.workers != self.work.workers:
            self.work.set_workers(new.workers)
        self.special = bool(new.latency_ms or new.flaky or new.resets or new.blackhole)
        if new.blackhole and not old.blackhole:
            for conn in list(self.connections):
                conn.pause()
        elif old.blackhole and not new.blackhole:
            held, self.held = self.held, []
            for reply, data in held:
                self.outstanding -= 1
                reply(data)
            for conn in list(self.connections):
                conn.resume()
        return new.as_dict()

    # ------------------------------------------------------------ requests

    def handle(self, line: bytes, seq: int, reply: Reply) -> None:
        """Answer one request line through `reply`, now or later (any front may call this)."""
        data = self.answer(line, seq, reply)
        if data is not None:
            self.send(reply, data)

    def answer(self, line: bytes, seq: int, reply: Reply = _discard) -> bytes | None:
        """The immediate answer to one line (give it to `send`), or None: `reply` gets it later.

        None also follows an injected reset, after `reply(None)` was called.
        Never raises on bad input.
        """
        if self.special:
            return self._full(line, seq, reply)
        # The common shapes (`somma 3 4`, `somma`, with small non-negative
        # integers) are answered straight from the split line; everything else
        # goes through the full parser.
        parts = line.split()
        op = _FAST_OPS.get(parts[0]) if parts else None
        if op is not None:
            if len(parts) == 3:
                ta, tb = parts[1], parts[2]
                if ta.isdigit() and tb.isdigit() and len(ta) < 16 and len(tb) < 16:
                    return self.integers(seq, op, int(ta), int(tb))
            elif len(parts) == 1:
                rnd = self.rng.random
                return self.integers(seq, op, 1 + int(rnd() * 50), 1 + int(rnd() * 50))
        return self._full(line, seq, reply)

    def send(self, reply: Reply, data: bytes) -> None:
        """Give an answer that is ready now to `reply`, after the latency, unless black-holed."""
        settings = self.settings
        if settings.latency_ms > 0:
            self.outstanding += 1
            asyncio.get_running_loop().call_later(
                settings.latency_ms / 1000.0, self._deliver, reply, data)
        elif settings.blackhole:
            self.outstanding += 1
            self.held.append((reply, data))
        else:
            reply(data)

    def _deliver(self, reply: Reply, data: bytes) -> None:
        """An answer that was counted in `outstanding` comes due."""
        if self.settings.blackhole:
            self.held.append((reply, data))
            return
        self.outstanding -= 1
        reply(data)

    def _worked(self, reply: Reply, data: bytes) -> None:
        latency = self.settings.latency_ms
        if latency > 0:
            asyncio.get_running_loop().call_later(latency / 1000.0, self._deliver, reply, data)
        else:
            self._deliver(reply, data)

    def _full(self, line: bytes, seq: int, reply: Reply) -> bytes | None:
        """Everything but the plain path: JSON, work, faults, pings, errors."""
        if line[:1].islower() and line.isascii():
            parsed = parse_text(line, seq)
        else:
            # JSON is parsed exactly (big integers stay integers) and may carry work_ms.
            parsed = parse_line(line, seq)
        work = float(parsed.work_ms or 0) if isinstance(parsed, Request) else 0.0
        if isinstance(parsed, Request) and self.special:
            settings = self.settings
            if settings.resets and self.fault_rng.random() < settings.resets:
                self.resets_injected += 1
                reply(None)
                return None
            errors = self.errors
            data = self.respond(parsed)
            # A client error (division by zero) stays one: only good requests fail.
            if (settings.flaky and self.errors == errors
                    and self.fault_rng.random() < settings.flaky):
                self.served -= 1
                self.faults_injected += 1
                return dumps({"id": parsed.id, "error": FAULT_MESSAGE, "fault": "server"}) + b"\n"
        else:
            data = self.respond(parsed)
        if work > 0 and isinstance(parsed, Request):
            self.outstanding += 1
            self.work.submit(work, lambda: self._worked(reply, data))
            return None
        return data

    def integers(self, rid: int, op: bytes, a: int, b: int) -> bytes:
        """Answer an operation on two small non-negative integers (the fast path)."""
        if op is _DIV:
            if b == 0:
                self.errors += 1
                return (b'{"id":%d,"error":"division by zero","op":"divisione","a":%d,"b":%d}\n'
                        % (rid, a, b))
            if a % b:
                self.served += 1
                return (b'{"id":%d,"op":"divisione","a":%d,"b":%d,"result":%b}\n'
                        % (rid, a, b, repr(a / b).encode()))
            result = a // b
        elif op is _SUM:
            result = a + b
        elif op is _SUB:
            result = a - b
        else:
            result = a * b
        self.served += 1
        return b'{"id":%d,"op":"%b","a":%d,"b":%d,"result":%d}\n' % (rid, op, a, b, result)

    def respond(self, parsed: object) -> bytes:
        if isinstance(parsed, ProtocolError):
            self.errors += 1
            return error_line(parsed.id, parsed.message)
        if isinstance(parsed, Ping):
            return self.pong(parsed.id)
        op, a, b, rid = parsed.op, parsed.a, parsed.b, parsed.id  # type: ignore[attr-defined]
        if a is None:
            a, b = draw_operands(self.rng)
        result = compute(op, a, b)
        if isinstance(result, ProtocolError):
            self.errors += 1
            return dumps({"id": rid, "error": result.message, "op": op, "a": a, "b": b}) + b"\n"
        self.served += 1
        return answer_line(rid, op, a, b, result)

    # ------------------------------------------------------------ counters

    def stats(self) -> dict[str, object]:
        """The counters and settings a ping reports (without the id)."""
        settings = self.settings
        return {
            "pong": self.name,
            "pid": os.getpid(),
            "served": self.served,
            "errors": self.errors,
            "connections": len(self.connections),
            "uptime": round(time.monotonic() - self.started, 3),
            "workers": settings.workers,
            "speed": settings.speed,
            "latency_ms": settings.latency_ms,
            "busy": self.work.busy,
            "queued": self.work.queued,
            "faults": settings.faults(),
            "faults_injected": self.faults_injected,
            "resets_injected": self.resets_injected,
        }

    def pong(self, rid: object) -> bytes:
        return dumps({"id": rid, **self.stats()}) + b"\n"

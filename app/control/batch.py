"""Seeded batches of requests with a cost, and a runner that times every answer.

`make_batch` draws the same operations, operands and `work_ms` for the same
seed, so `compare` can send the very same batch under each algorithm, and a
scenario's run can be repeated. `run_measured` keeps `concurrency` requests in
flight on one connection, matches answers by id and keeps each request's
latency, so the result has true percentiles (a random batch's counters in
`balancer.client` only count).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.control.grammar import MAX_WORK_MS, Work
from balancer.protocol import OPERATIONS, RANDOM_HIGH, RANDOM_LOW


def sample_work(work: Work, rng: random.Random) -> float:
    """One request's simulated work in ms, rounded to 0.01 ms."""
    if work.kind == "exp":
        value = min(rng.expovariate(1.0 / work.low), MAX_WORK_MS)
    else:
        value = rng.uniform(work.low, work.high)
    return round(value, 2)


def make_batch(count: int, work: Work | None, seed: int | None = 1,
               ids: bool = True) -> list[bytes]:
    """`count` JSON request lines with ids 1..count (none without `ids`: the balancer
    numbers them by line); with `work`, each carries `work_ms`."""
    rng = random.Random(seed)
    lines = []
    for rid in range(1, count + 1):
        request: dict[str, Any] = {"id": rid} if ids else {}
        request.update(op=rng.choice(OPERATIONS), a=rng.randint(RANDOM_LOW, RANDOM_HIGH),
                       b=rng.randint(RANDOM_LOW, RANDOM_HIGH))
        if work is not None:
            request["work_ms"] = sample_work(work, rng)
        lines.append(orjson.dumps(request) + b"\n")
    return lines


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


@dataclass
class BatchResult:
    """What one measured batch did: counts, per-server shares, every latency."""

    total: int
    answered: int = 0
    errors: int = 0
    duplicates: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    per_server: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return (self.failure is None and not self.errors and not self.duplicates
                and self.answered == self.total)

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed > 0 else 0.0

    def percentiles(self) -> dict[str, float | None]:
        ordered = sorted(self.latencies_ms)
        return {"p50_ms": percentile(ordered, 0.50), "p95_ms": percentile(ordered, 0.95),
                "p99_ms": percentile(ordered, 0.99), "max_ms": ordered[-1] if ordered else None}

    def shares(self) -> dict[str, float]:
        total = sum(self.per_server.values())
        return {name: count / total for name, count in sorted(self.per_server.items())} \
            if total else {}

    def summary(self) -> str:
        p = self.percentiles()
        text = f"{self.answered:,} answers, {self.errors:,} errors, {self.rate:,.0f} req/s"
        if p["p50_ms"] is not None:
            text += (f", p50 {p['p50_ms']:.2f} p95 {p['p95_ms']:.2f} p99 {p['p99_ms']:.2f} "
                     f"max {p['max_ms']:.2f} ms")
        if self.duplicates:
            text += f", {self.duplicates} DUPLICATES"
        if self.failure:
            text += f" - stopped: {self.failure}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "answered": self.answered, "errors": self.errors,
                "duplicates": self.duplicates, "elapsed_s": round(self.elapsed, 4),
                "rate": round(self.rate, 1), **self.percentiles(), "shares": self.shares(),
                "per_server": dict(sorted(self.per_server.items())),
                "error_samples": self.error_samples[:5], "failure": self.failure}


Observer = Callable[[float, float, dict[str, Any]], None]
"""Called with (perf_counter when it came, latency in ms, the answer) for every first
answer to a request: how a scenario bins answers into its phases and its chart."""


class _Runner(asyncio.Protocol):
    """One connection: keeps `concurrency` requests in flight, times each answer by id."""

    def __init__(self, lines: list[bytes], concurrency: int, result: BatchResult,
                 done: asyncio.Future[None], observe: Observer | None = None) -> None:
        self.observe = observe
        self.lines = lines
        self.concurrency = concurrency
        self.result = result
        self.done = done
        self.sent_at = [0.0] * (len(lines) + 1)
        self.answered = bytearray(len(lines) + 1)
        self.next = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send(self.concurrency)

    def send(self, count: int) -> None:
        start, end = self.next, min(self.next + count, len(self.lines))
        if start >= end or self.transport is None:
            return
        now = time.perf_counter()
        for rid in range(start + 1, end + 1):
            self.sent_at[rid] = now
        self.next = end
        self.transport.write(b"".join(self.lines[start:end]))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        *complete, self.buffer = (self.buffer + data).split(b"\n")
        result = self.result
        fresh = 0
        for line in complete:
            if not line.strip():
                continue
            try:
                answer = orjson.loads(line)
                rid = answer["id"]
                if not isinstance(rid, int) or not 0 < rid <= len(self.lines):
                    raise KeyError(rid)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                result.errors += 1
                result.error_samples.append(line[:120].decode("utf-8", "replace"))
                continue
            if self.answered[rid]:
                result.duplicates += 1
                continue
            self.answered[rid] = 1
            fresh += 1
            result.answered += 1
            latency = (now - self.sent_at[rid]) * 1000
            result.latencies_ms.append(latency)
            if self.observe is not None:
                self.observe(now, latency, answer)
            server = answer.get("server")
            if isinstance(server, str):
                result.per_server[server] += 1
            if "error" in answer:
                result.errors += 1
                if len(result.error_samples) < 20:
                    result.error_samples.append(str(answer["error"])[:120])
        if result.answered >= result.total:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.send(fresh)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("the balancer closed the connection"))


async def run_measured(host: str, port: int, lines: list[bytes], concurrency: int,
                       stall_timeout: float = 30.0,
                       observe: Observer | None = None) -> BatchResult:
    """Send `lines` (ids 1..n) keeping `concurrency` in flight; every answer timed
    (and shown to `observe`, when given)."""
    loop = asyncio.get_running_loop()
    result = BatchResult(len(lines))
    if not lines:
        return result
    done: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    transport, _ = await loop.create_connection(
        lambda: _Runner(lines, max(1, concurrency), result, done, observe), host, port)
    try:
        last = -1
        while not done.done():
            if result.answered == last:
                result.failure = f"no answer for {stall_timeout:g}s"
                break
            last = result.answered
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), stall_timeout)
        if done.done() and done.exception() is not None:
            result.failure = str(done.exception())
    finally:
        result.elapsed = time.perf_counter() - started
        if not done.done():
            done.cancel()
        transport.close()
    return result

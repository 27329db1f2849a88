"""Fault-injection scenarios shared by the normal suite and `make chaos`.

Each scenario drives real client connections through a running Runtime while
it breaks real server processes, then reports what every client received:
nothing may be lost, duplicated or wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from app.runtime import Runtime
from balancer.model import Backend, ServerState
from balancer.protocol import compute
from tests.wire import Wire

OPS = ("somma", "sottrazione", "moltiplicazione", "divisione")


def request_line(index: int) -> tuple[str, object]:
    """The request number `index` and its expected result (deterministic)."""
    op = OPS[index % 4]
    a, b = index, index % 97 + 1
    return f"{op} {a} {b}", compute(op, a, b)


@dataclass
class Report:
    scenario: str
    sent: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    lost: int = 0
    wrong: int = 0
    redispatched: int = 0
    late_dropped: int = 0
    faults: int = 0
    detect_times: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def max_detect(self) -> float | None:
        return max(self.detect_times) if self.detect_times else None

    def summary(self) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in self.errors.items()) or "none"
        detect = f"{self.max_detect * 1000:.0f} ms" if self.max_detect is not None else "-"
        return (f"{self.scenario}: sent {self.sent}, answered {self.answered}, errors {errors}, "
                f"duplicates {self.duplicates}, lost {self.lost}, wrong {self.wrong}, "
                f"re-dispatched {self.redispatched}, late answers dropped {self.late_dropped}, "
                f"faults injected {self.faults}, max time to detect {detect}, "
                f"{self.elapsed:.1f} s")


class DownWatcher:
    """Records when each server goes DOWN (from the balancer's state events)."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.runtime = runtime
        runtime.balancer.listeners.append(self._on_change)

    def _on_change(self, backend: Backend, old: ServerState, new: ServerState,
                   reason: str) -> None:
        if new is ServerState.DOWN:
            self.events.append((time.monotonic(), backend.name, reason))

    def detect_time(self, name: str, since: float) -> float | None:
        for at, who, _ in self.events:
            if who == name and at >= since:
                return at - since
        return None

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.runtime.balancer.listeners.remove(self._on_change)


async def drive_clients(port: int, total: int, clients: int, report: Report, *,
                        window: int = 400, chunk: int = 100, pace: float = 0.002,
                        timeout: float = 120.0, linger: float = 0.3) -> None:
    """`clients` connections share `total` requests, pipelined with at most
    `window` in flight each; every answer is checked against its request."""

    async def one(client_index: int) -> None:
        indices = list(range(client_index, total, clients))
        expected = {}
        wire = await Wire.open(port)
        seen: Counter[int] = Counter()
        done = asyncio.Event()
        answered_here = 0

        async def reader() -> None:
            nonlocal answered_here
            while answered_here < len(indices):
                answer = await wire.answer(timeout)
                number = answer.get("id")
                seen[number] += 1
                answered_here += 1
                report.answered += 1
                if "error" in answer:
                    report.errors[answer["error"].split(" (")[0]] += 1
                elif answer.get("result") != expected.get(number):
                    report.wrong += 1
            done.set()

        read_task = asyncio.create_task(reader())
        sent_here = 0
        try:
            for start in range(0, len(indices), chunk):
                while sent_here - answered_here >= window and not read_task.done():
                    await asyncio.sleep(0.002)
                batch = indices[start:start + chunk]
                lines = []
                for index in batch:
                    line, result = request_line(index)
                    sent_here += 1
                    expected[sent_here] = result
                    lines.append(line)
                report.sent += len(lines)
                await wire.send(*lines)
                if pace:
                    await asyncio.sleep(pace)
            await asyncio.wait_for(read_task, timeout)
            # Anything arriving after the last expected answer is a duplicate.
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError, ConnectionError):
                while True:
                    extra = await wire.answer(linger)
                    seen[extra.get("id")] += 1
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read_task
            await wire.close()
        report.duplicates += sum(c - 1 for c in seen.values() if c > 1)
        report.lost += sum(1 for n in range(1, len(indices) + 1) if seen[n] == 0)

    await asyncio.gather(*(one(i) for i in range(clients)))


async def crash_storm(runtime: Runtime, *, total: int, clients: int = 4, seed: int = 1,
                      pace: float = 0.002) -> Report:
    """SIGKILL a random server every 200-400 ms and restart it soon after,
    never leaving fewer than one server up, while clients run a batch."""
    report = Report("crash storm")
    watcher = DownWatcher(runtime)
    rng = random.Random(seed)
    kills: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def chaos() -> None:
        restarts: list[asyncio.Task[str]] = []
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.2, 0.4))
            if stop.is_set():
                break
            running = [s.name for s in runtime.supervisor.servers.values()
                       if s.state.value == "running"]
            if len(running) < 2:
                continue
            victim = rng.choice(running)
            kills.append((time.monotonic(), victim))
            runtime.kill(victim)
            report.faults += 1

            async def restart_later(name: str) -> str:
                await asyncio.sleep(rng.uniform(0.05, 0.15))
                return await runtime.restart(name)

            restarts.append(asyncio.create_task(restart_later(victim)))
        await asyncio.gather(*restarts, return_exceptions=True)

    started = time.monotonic()
    chaos_task = asyncio.create_task(chaos())
    try:
        await drive_clients(runtime.balancer.port, total, clients, report, pace=pace)
    finally:
        stop.set()
        await chaos_task
        watcher.close()
    report.elapsed = time.monotonic() - started
    report.redispatched = runtime.balancer.redispatched
    report.late_dropped = sum(b.late for b in runtime.balancer.backends)
    for at, name in kills:
        found = watcher.detect_time(name, at)
        if found is not None:
            report.detect_times.append(found)
    return report


async def frozen_server(runtime: Runtime, *, total: int, clients: int = 2,
                        victim: str = "server2") -> tuple[Report, dict[str, object]]:
    """SIGSTOP one server mid-batch, SIGCONT it once it is DOWN, let it rejoin."""
    report = Report("frozen server")
    watcher = DownWatcher(runtime)
    facts: dict[str, object] = {}

    async def chaos() -> None:
        await asyncio.sleep(0.4)
        frozen_at = time.monotonic()
        runtime.freeze(victim)
        report.faults += 1
        backend = runtime.balancer.backend(victim)
        while backend.state is not ServerState.DOWN:
            await asyncio.sleep(0.01)
        report.detect_times.append(time.monotonic() - frozen_at)
        facts["reason"] = backend.reason
        await asyncio.sleep(0.3)
        runtime.thaw(victim)
        thawed = time.monotonic()
        while backend.state is not ServerState.UP:
            await asyncio.sleep(0.01)
        facts["rejoined_after"] = time.monotonic() - thawed

    started = time.monotonic()
    chaos_task = asyncio.create_task(chaos())
    try:
        await drive_clients(runtime.balancer.port, total, clients, report, pace=0.01,
                            chunk=50, linger=0.5)
        await asyncio.wait_for(chaos_task, 30)
    finally:
        chaos_task.cancel()
        watcher.close()
    report.elapsed = time.monotonic() - started
    report.redispatched = runtime.balancer.redispatched
    report.late_dropped = sum(b.late for b in runtime.balancer.backends)
    facts["served_after_rejoin"] = runtime.balancer.backend(victim).served
    return report, facts

"""Faults injected into real server processes during 50,000-request batches: every
request is answered exactly once, whatever the servers do."""

from __future__ import annotations

import asyncio
import time

from app.runtime import Runtime
from balancer.model import Backend, ServerState
from tests.chaos import Report, drive_clients
from tests.conftest import RuntimeFactory
from tests.wire import wait_state, wait_until


class StateLog:
    """Every state change of the balancer's servers, with its time."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[tuple[float, str, str, str]] = []
        runtime.balancer.listeners.append(self._on_change)

    def _on_change(self, backend: Backend, old: ServerState, new: ServerState,
                   reason: str) -> None:
        self.events.append((time.monotonic(), backend.name, new.value, reason))

    def first(self, name: str, state: str, since: float = 0.0) -> float | None:
        return next((at for at, who, new, _ in self.events
                     if who == name and new == state and at >= since), None)


async def test_flaky_server_faults_are_retried_within_the_budget_and_it_is_ejected(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(eject_time=0.5, check_interval=0.1)
    states = StateLog(runtime)
    await runtime.supervisor.control("server2", flaky=0.3)
    report = Report("flaky 30%")
    await drive_clients(runtime.balancer.port, 50_000, 4, report, pace=0.001)
    print(report.summary(), runtime.balancer.core.retries)
    assert report.sent == report.answered == 50_000
    assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)
    core = runtime.balancer.core
    server2 = runtime.balancer.backend("server2")
    # Clients see a fault only when it could not be retried, and each fault is counted.
    seen = report.errors.get("server fault", 0)
    assert set(report.errors) <= {"server fault"}
    assert server2.faults >= seen + server2.retries - 5
    assert core.retries == server2.retries > 0
    assert server2.ejections >= 1
    assert states.first("server2", "EJECTED") is not None
    await runtime.supervisor.control("server2", heal=True)
    await wait_state(runtime, "server2", "UP", timeout=15)


async def test_resets_lose_and_duplicate_nothing(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(eject_time=0.5, check_interval=0.1)
    await runtime.supervisor.control("server3", resets=0.1)
    report = Report("resets 10%")
    await drive_clients(runtime.balancer.port, 50_000, 4, report, pace=0.001)
    print(report.summary(), runtime.balancer.redispatched)
    assert report.sent == report.answered == 50_000
    assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)
    assert not report.errors, report.errors
    assert runtime.balancer.redispatched > 0


async def test_a_black_hole_is_found_by_the_request_timeout_and_healed(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(request_timeout=0.5, check_interval=0.2, check_timeout=0.3)
    states = StateLog(runtime)
    report = Report("black hole")
    balancer = runtime.balancer

    async def fault() -> tuple[float, float]:
        await wait_until(lambda: report.answered > 5_000, timeout=30, what="load running")
        began = time.monotonic()
        await runtime.supervisor.control("server2", blackhole=True)
        await wait_state(runtime, "server2", "DOWN", timeout=5)
        found = time.monotonic() - began
        await asyncio.sleep(0.5)
        await runtime.supervisor.control("server2", heal=True)
        healed = time.monotonic()
        await wait_state(runtime, "server2", "UP", timeout=10)
        return found, time.monotonic() - healed

    injected = asyncio.create_task(fault())
    await drive_clients(balancer.port, 50_000, 4, report, pace=0.002)
    found, back = await injected
    print(report.summary(), f"found in {found:.2f}s, back {back:.2f}s after heal")
    assert report.sent == report.answered == 50_000
    assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)
    assert not report.errors, report.errors
    # Found by the request timeout (0.5 s) plus one sweep, with a little slack.
    assert found <= 0.5 + 0.1 + 0.4, found
    down = [reason for _, who, new, reason in states.events if who == "server2" and new == "DOWN"]
    assert down and "no answer for" in down[0], down

"""What the console reads and drives: a live Runtime plus a client, behind one small interface.

The console's widgets only ever read from a `ConsoleSource`: snapshots
(`stats`, `rows`) and the balancer's bounded deques, pulled on the UI timer.
`LiveSource` runs the real thing in the app's event loop; tests hand the App a
frozen source with fixed data so screenshots are the same on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from app.runtime import Runtime, RuntimeConfig, ServerRow
from balancer import eventloop
from balancer.client import BatchProgress, Client, ClientError, run_batch
from balancer.routes import Route
from balancer.stats import BalancerStats

if TYPE_CHECKING:
    from app.control.scenario import ScenarioRun
    from app.control.scenario_file import Scenario
    from app.control.scenario_report import ScenarioProgress

Answer = tuple[float, bytes, float]

BATCH_WINDOW = 2048
"""Requests a console batch keeps in flight: enough to keep every server busy while the
UI draws a frame. Measured here against 1024 and 4096 (4096 meets the balancer's
per-client limit, which pauses reading and costs more than it gains)."""


SERVING = frozenset({"UP", "DRAINING"})
"""States in which a server's latency is still being measured."""

LatencyPoint = tuple[float, float | None, float | None]
"""(seconds before the latest sample, p50 ms, p99 ms)."""


class LatencyHistory:
    """Each server's p50 and p99 once a second over the last minute, for the latency view.

    Fed from the snapshots the console reads anyway (`record` on every tick keeps
    at most one sample a second), so nothing in the balancer changes for it.
    """

    def __init__(self, seconds: int = 60) -> None:
        self.seconds = seconds
        self.samples: deque[tuple[float, dict[str, tuple[float | None, float | None]]]] = (
            deque(maxlen=seconds + 1))
        self.version = 0
        """Grows with every sample: a chart redraws only when it changed."""

    def record(self, now: float, stats: BalancerStats) -> bool:
        """Keep a sample of `stats` if the last one is a second old; whether it did."""
        if self.samples and now - self.samples[-1][0] < 1.0:
            return False
        # A server that is not serving keeps its last percentiles: not a measurement.
        self.samples.append((now, {
            b.name: (b.p50_ms, b.p99_ms) if b.state in SERVING else (None, None)
            for b in stats.backends}))
        self.version += 1
        return True

    def series(self) -> dict[str, list[LatencyPoint]]:
        """Per server, oldest first, the points of the last minute (servers in the order
        of the latest sample, then any that have gone)."""
        if not self.samples:
            return {}
        latest = self.samples[-1][0]
        found: dict[str, list[LatencyPoint]] = {name: [] for name in self.samples[-1][1]}
        for when, values in self.samples:
            age = when - latest
            if age < -self.seconds:
                continue
            for name, (p50, p99) in values.items():
                found.setdefault(name, []).append((age, p50, p99))
        return found


class ConsoleSource(Protocol):
    """The console's view of a balancer: read on a timer, acted on by the operator."""

    address: str
    log_path: str | None

    @property
    def ready(self) -> bool: ...
    async def start(self) -> str: ...
    async def stop(self) -> None: ...
    def stats(self) -> BalancerStats: ...
    def rows(self, stats: BalancerStats) -> list[ServerRow]: ...
    def routes(self) -> Sequence[Route]: ...
    def answers(self) -> Sequence[Answer]: ...
    def log_lines(self) -> tuple[int, Sequence[bytes]]: ...
    def event_lines(self) -> tuple[int, Sequence[bytes]]: ...
    def latency(self, stats: BalancerStats) -> LatencyHistory: ...
    async def request(self, line: str) -> dict: ...
    async def batch(self, count: int, progress: BatchProgress) -> BatchProgress: ...
    def resolve(self, which: str | int) -> str: ...
    async def act(self, action: str, name: str) -> str: ...
    async def add_server(self) -> str: ...


SERVER_ACTIONS = {"kill": "kill", "stop": "stop_server", "restart": "restart",
                  "drain": "drain", "freeze": "freeze", "thaw": "thaw"}
"""An action's name and the method of a runtime (or the HAProxy engine) that does it."""


async def server_action(runtime: object, action: str, name: str) -> str:
    """One server action through `runtime`; its methods may be plain or coroutines (the
    HAProxy engine's drain is async, the built-in runtime's is not)."""
    method = SERVER_ACTIONS.get(action)
    if method is None:
        raise KeyError(f"unknown action {action!r}")
    result = getattr(runtime, method)(name)
    return await result if inspect.isawaitable(result) else result


class LiveSource:
    """A Runtime (balancer, health checks, supervisor, log) and an in-process client."""

    def __init__(self, config: RuntimeConfig,
                 on_listening: Callable[[str], None] | None = None,
                 scenario: Scenario | None = None) -> None:
        self.config = config
        self.runtime = Runtime(config)
        self.scenario = scenario
        """A scenario to run once the servers are UP (`--scenario`)."""
        self.scenario_run: ScenarioRun | None = None
        self._scenario_task: asyncio.Task[None] | None = None
        self.on_listening = on_listening
        self.client: Client | None = None
        self.address = ""
        self.log_path = config.log_file
        self._listening = False
        self._stopped = False
        self._stopping: asyncio.Task[None] | None = None
        self.history = LatencyHistory()

    @property
    def ready(self) -> bool:
        return self._listening

    @property
    def connect_host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    async def start(self) -> str:
        """Listen (raises OSError if the port is taken), connect the client, spawn servers."""
        eventloop.raise_fd_limit()
        balancer = self.runtime.balancer
        try:
            port = await balancer.start()
        except OSError:
            self.runtime.log.close()
            self._stopped = True
            raise
        self.address = f"{self.config.host}:{port}"
        self._listening = True
        if self.on_listening is not None:
            self.on_listening(self.address)
        self.client = await Client.connect(self.connect_host, port)
        await self.runtime.start_servers()
        if self.scenario is not None:
            self._scenario_task = asyncio.ensure_future(self._run_scenario(self.scenario))
        return self.address

    async def _run_scenario(self, scenario: Scenario) -> None:
        """`--scenario`: once every server is UP, run it live; steps and report to the log."""
        from app.control.scenario import ScenarioRun

        log = self.runtime.log
        if not await self.runtime.wait_until_up(timeout=30.0):
            log.event(f"scenario {scenario.name}: not started, the servers are not all UP")
            return
        self.scenario_run = ScenarioRun(
            scenario, self.runtime, on_event=lambda text: log.event(f"scenario {scenario.name}: "
                                                                   f"{text}"))
        report = await self.scenario_run.run()
        for line in report.text().splitlines():
            log.event(f"scenario report: {line}")

    def scenario_progress(self) -> ScenarioProgress | None:
        """Where a `--scenario` run is (None without one), for the status line."""
        return self.scenario_run.progress() if self.scenario_run is not None else None

    async def stop(self) -> None:
        """Say goodbye, answer what is in flight, stop every server (idempotent)."""
        if self._stopped:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._scenario_task is not None and not self._scenario_task.done():
            if self.scenario_run is not None:
                self.scenario_run.stop()
            self._scenario_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scenario_task
        try:
            if self.client is not None:
                with contextlib.suppress(ClientError, OSError, TimeoutError, ValueError):
                    await asyncio.wait_for(self.client.exit(timeout=1.0), 1.5)
                await self.client.close()
        finally:
            try:
                await self.runtime.stop(grace=1.0)
            finally:
                self.runtime.supervisor.kill_all_now()
                self._stopped = True

    def kill_now(self) -> None:
        """Last resort when the loop is gone: SIGKILL every server we spawned."""
        self.runtime.supervisor.kill_all_now()

    # ------------------------------------------------------------ reading

    def stats(self) -> BalancerStats:
        return self.runtime.stats()

    def rows(self, stats: BalancerStats) -> list[ServerRow]:
        return self.runtime.rows(stats)

    def routes(self) -> Sequence[Route]:
        return self.runtime.balancer.recent_routes

    def answers(self) -> Sequence[Answer]:
        return self.runtime.balancer.recent_answers

    def log_lines(self) -> tuple[int, Sequence[bytes]]:
        log = self.runtime.log
        return log.total, log.recent

    def event_lines(self) -> tuple[int, Sequence[bytes]]:
        log = self.runtime.log
        return log.events_total, log.events

    def latency(self, stats: BalancerStats) -> LatencyHistory:
        """The latency history, with `stats` added if a second has passed."""
        self.history.record(time.monotonic(), stats)
        return self.history

    # ------------------------------------------------------------ acting

    async def request(self, line: str) -> dict:
        """Send one request through the console's client, reconnecting once if needed."""
        if self.client is None or not self.client.connected:
            host = self.connect_host
            self.client = await Client.connect(host, self.runtime.balancer.port)
        return await self.client.request(line, timeout=30.0)

    async def batch(self, count: int, progress: BatchProgress) -> BatchProgress:
        return await run_batch(self.connect_host, self.runtime.balancer.port, count,
                               window=BATCH_WINDOW, progress=progress)

    def resolve(self, which: str | int) -> str:
        return self.runtime.resolve(which)

    async def act(self, action: str, name: str) -> str:
        """kill, stop, restart, drain, freeze or thaw one server; a line saying what happened."""
        return await server_action(self.runtime, action, name)

    async def add_server(self) -> str:
        return await self.runtime.add_server()

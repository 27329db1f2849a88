"""The balancer as a service: listen, wire core, connections and checks together, stop.

`Balancer` is what the rest of lbconsole holds. It owns the listening socket,
the health checker (given the core's members, a probe and the core's report),
the 100 ms sweep, and the per-second throughput; every change of state is the
core's (`Balancer.core`), and the methods here only forward to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque

from balancer.backend import open_link
from balancer.core import Core, StateListener
from balancer.frontend import ClientConnection
from balancer.health import HealthChecker
from balancer.log import RequestLog
from balancer.model import Admin, Backend, BalancerConfig, ServerState
from balancer.routes import Route
from balancer.stats import BalancerStats, Throughput, snapshot

__all__ = ["Balancer", "BalancerConfig", "Route", "StateListener"]

SWEEP_INTERVAL = 0.1


class Balancer:
    """Hands each request to the server its algorithm picks and each answer to its client."""

    def __init__(self, config: BalancerConfig | None = None, log: RequestLog | None = None) -> None:
        self.config = config or BalancerConfig()
        self.log = log or RequestLog(None)
        self.core = Core(self.config, self.log)
        self.health = HealthChecker(self.config.health, self._to_check, self._probe,
                                    self.core.report_check)
        self.throughput = Throughput()
        self.host = self.config.host
        self.port = 0
        self.started = time.monotonic()
        self._server: asyncio.base_events.Server | None = None
        self._client_numbers = itertools.count(1)
        self._sweeper: asyncio.TimerHandle | None = None
        self._second = time.monotonic()

    # ------------------------------------------------------------ what others read

    @property
    def backends(self) -> list[Backend]:
        return self.core.backends

    @property
    def clients(self) -> set[ClientConnection]:
        return self.core.clients

    @property
    def listeners(self) -> list[StateListener]:
        return self.core.listeners

    @property
    def waiting(self) -> deque:
        return self.core.waiting

    @property
    def redispatched(self) -> int:
        return self.core.redispatched

    @property
    def recent_routes(self) -> deque[Route]:
        return self.core.routes.recent

    @property
    def recent_answers(self) -> deque[tuple[float, bytes, float]]:
        return self.core.recent_answers

    @property
    def algorithm_name(self) -> str:
        return self.core.algorithm.name

    @property
    def closing(self) -> bool:
        return self.core.closing

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Listen, start checks and the sweeper; returns the real port."""
        loop = asyncio.get_running_loop()
        self.core.bind(loop)
        self.log.start()
        self._server = await loop.create_server(
            lambda: ClientConnection(self.core, next(self._client_numbers)),
            self.config.host, self.config.port, backlog=4096, reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.started = time.monotonic()
        self.log.event(f"listening on {self.host}:{self.port}")
        self.health.start()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        return self.port

    async def close(self, grace: float = 2.0) -> None:
        """Stop listening; answer what can be answered within `grace` (re-sending what a
        silent server holds to a healthy one half way through); error the rest."""
        core = self.core
        if core.closing:
            return
        core.closing = True
        if self._server is not None:
            self._server.close()
        await self.health.stop()
        start = time.monotonic()
        half = start + grace / 2
        deadline = start + grace
        moved = False
        while time.monotonic() < deadline and core.inflight_total():
            if not moved and time.monotonic() >= half:
                moved = True
                core.take_back_stuck(grace / 2)
            await asyncio.sleep(0.02)
        failed = core.fail_everything("balancer shutting down")
        if failed:
            self.log.event(f"shutting down: {failed} requests unanswered get an error")
        core.flush_all()
        for client in list(core.clients):
            client.flush()
            if client.transport is not None:
                client.transport.close()
        for backend in core.backends:
            if backend.link is not None:
                backend.link.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self.log.event("balancer stopped")

    def _sweep(self) -> None:
        now = time.monotonic()
        self.core.sweep(now)
        if now - self._second >= 1.0:
            self._second = now
            self.core.tick_second()
        self.throughput.tick(self.core, now)
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    # ------------------------------------------------------------ health

    def _to_check(self) -> list[Backend]:
        if self.core.closing:
            return []
        return [b for b in self.core.backends if b.admin is not Admin.STOPPED and b.port]

    async def _probe(self, backend: Backend) -> dict:
        if backend.link is None:
            await open_link(self.core, backend, self.config.connect_timeout)
        return await self.core.ping(backend)

    # ------------------------------------------------------------ servers

    def add_backend(self, name: str, host: str | None = None, port: int | None = None,
                    remote: bool = False) -> Backend:
        backend = self.core.add_backend(name, host, port, remote=remote)
        self.throughput.history[name] = deque(maxlen=60)
        return backend

    def backend(self, name: str) -> Backend:
        return self.core.backend(name)

    def set_address(self, name: str, host: str, port: int, reason: str = "process started") -> None:
        """Point a server at a new address (a restarted process) and check it at once."""
        backend = self.core.backend(name)
        self.core.set_address(backend, host, port, reason)
        self.health.check_now(backend)

    def set_health(self, backend: Backend, health: ServerState, reason: str) -> None:
        self.core.set_health(backend, health, reason)

    def set_admin(self, backend: Backend, admin: Admin, reason: str) -> None:
        self.core.set_admin(backend, admin, reason)

    def set_algorithm(self, name: str) -> None:
        self.core.set_algorithm(name)

    def set_weight(self, name: str, weight: int) -> None:
        self.core.set_weight(self.core.backend(name), weight)

    # ------------------------------------------------------------ reading the state

    def stats(self) -> BalancerStats:
        return snapshot(self.core, f"{self.host}:{self.port}", time.monotonic() - self.started,
                        self.throughput)

    def inflight_total(self) -> int:
        return self.core.inflight_total()

    def pong_line(self, rid: object) -> bytes:
        return self.core.pong_line(rid)

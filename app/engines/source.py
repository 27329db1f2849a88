"""The console's data source for `--engine haproxy`: a `HaproxyEngine` plus an HTTP client.

Implements `app.source.ConsoleSource`, so the console runs unchanged: Servers
rows are HAProxy's view (`show stat`), Routing is HAProxy's request log,
Responses are the answers the console's own client received (HAProxy's log
has no bodies), and the Log panel shows `loadbalancer.log`. `restart haproxy`
starts HAProxy again after it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

import orjson

from app.engines.haproxy import HaproxyEngine
from app.engines.haproxy_api import ApiError
from app.engines.haproxy_process import HaproxyFailed
from app.engines.http_client import HttpClient, run_http_batch
from app.runtime import RuntimeConfig, ServerRow
from app.source import LatencyHistory, server_action
from balancer import eventloop
from balancer.client import BatchProgress, ClientError
from balancer.stats import BalancerStats

Answer = tuple[float, bytes, float]


class Route(NamedTuple):
    """One request HAProxy logged, in the shape of the built-in engine's routing entry
    (the same fields, so the Routing panel shows either; defined here so this module
    does not depend on where the balancer keeps its own)."""

    at: float
    server: str
    client: str
    client_number: int
    request_id: str
    request: bytes
    redispatched_from: str | None

    def order(self) -> tuple[float, int, int]:
        rid = self.request_id
        return self.at, self.client_number, int(rid) if rid.isdigit() else 0

BATCH_WINDOW = 256
"""Requests a console batch keeps in flight over HTTP (HTTP_DEPTH per connection)."""


class HaproxySource:
    """What the console reads and drives when HAProxy is the engine."""

    def __init__(self, config: RuntimeConfig,
                 on_listening: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.engine = HaproxyEngine(config)
        self.runtime = self.engine
        self.on_listening = on_listening
        self.client: HttpClient | None = None
        self.address = ""
        self.log_path = config.log_file
        self._answers: deque[Answer] = deque(maxlen=256)
        self._routes: deque[Route] = deque(maxlen=256)
        self._seen = 0
        self._listening = False
        self._stopped = False
        self.history = LatencyHistory()

    @property
    def ready(self) -> bool:
        return self._listening

    @property
    def connect_host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    async def start(self) -> str:
        eventloop.raise_fd_limit()
        port = self.engine.listen()
        self.address = f"{self.config.host}:{port}"
        self._listening = True
        if self.on_listening is not None:
            self.on_listening(self.address)
        try:
            await self.engine.start_servers()
        except HaproxyFailed as exc:
            # The console reports an OSError from start() and exits with status 1.
            raise OSError(str(exc)) from None
        self.client = await HttpClient.connect(self.connect_host, port)
        return self.address

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.client is not None:
                with contextlib.suppress(ClientError, OSError, TimeoutError):
                    await asyncio.wait_for(self.client.exit(timeout=1.0), 1.5)
        finally:
            await self.engine.stop(grace=1.0)

    def kill_now(self) -> None:
        self.engine.kill_now()

    # ------------------------------------------------------------ reading

    def stats(self) -> BalancerStats:
        return self.engine.stats()

    def rows(self, stats: BalancerStats) -> list[ServerRow]:
        return self.engine.rows(stats)

    def latency(self, stats: BalancerStats) -> LatencyHistory:
        """The latency history, with `stats` added if a second has passed."""
        self.history.record(time.monotonic(), stats)
        return self.history

    def routes(self) -> Sequence[Route]:
        """HAProxy's logged requests since the last call, as routing entries."""
        reader = self.engine.reader
        fresh = min(reader.requests - self._seen, len(reader.recent))
        self._seen = reader.requests
        number = self._seen - fresh
        for logged in list(reader.recent)[len(reader.recent) - fresh:]:
            number += 1
            moved = "a retry" if logged.redispatched or logged.retries else None
            self._routes.append(Route(logged.at, logged.server, logged.client, 0, str(number),
                                      b"HTTP %d in %d ms" % (logged.status, logged.total_ms),
                                      moved))
        return self._routes

    def answers(self) -> Sequence[Answer]:
        return self._answers

    def log_lines(self) -> tuple[int, Sequence[bytes]]:
        log = self.engine.log
        return log.total, log.recent

    def event_lines(self) -> tuple[int, Sequence[bytes]]:
        log = self.engine.log
        return log.events_total, log.events

    # ------------------------------------------------------------ acting

    async def request(self, line: str) -> dict:
        """One request on the console's keep-alive connection. A connection HAProxy
        closed (an old HAProxy after an algorithm switch closes idle ones) is opened
        again, and a request it dropped unanswered is sent once more: a calculation
        is idempotent."""
        started = time.monotonic()
        for attempt in (1, 2):
            if self.client is None or not self.client.connected:
                self.client = await HttpClient.connect(self.connect_host, self.engine.port)
            try:
                answer = await self.client.request(line, timeout=30.0)
                break
            except ClientError:
                if attempt == 2 or self.client.connected:
                    raise
        self._answers.append((time.time(), orjson.dumps(answer), time.monotonic() - started))
        return answer

    async def batch(self, count: int, progress: BatchProgress) -> BatchProgress:
        def keep(chunk: bytes) -> None:
            now = time.time()
            self._answers.extend((now, line, 0.0) for line in chunk.splitlines()[-8:])

        return await run_http_batch(self.connect_host, self.engine.port, count,
                                    window=BATCH_WINDOW, progress=progress, on_chunk=keep)

    def resolve(self, which: str | int) -> str:
        if which == "haproxy":
            return "haproxy"
        return self.engine.resolve(which)

    async def act(self, action: str, name: str) -> str:
        """kill, stop, restart, drain, freeze or thaw one server (or restart haproxy);
        HAProxy refusing or gone is a line saying so, as the console shows failures."""
        try:
            return await self._act(action, name)
        except (ApiError, HaproxyFailed) as exc:
            return f"{action} {name} failed: {exc}"

    async def _act(self, action: str, name: str) -> str:
        engine = self.engine
        if name == "haproxy":
            if action == "restart":
                return await engine.restart_haproxy()
            raise KeyError("haproxy can only be restarted from here")
        return await server_action(engine, action, name)

    async def add_server(self) -> str:
        try:
            return await self.engine.add_server()
        except ApiError as exc:
            return f"add failed: {exc}"

"""`--engine haproxy`: a real HAProxy in the data path, driven like the built-in balancer.

`HaproxyEngine` offers what the console and `serve` use of `app.runtime.Runtime`
(start, stop, stats, rows, kill, stop_server, restart, drain, add_server,
resolve...), so either can be constructed, and what `app.control.dispatch.execute`
drives, so the runtime socket (`lbconsole ctl`) and the console's typed commands
work the same with either engine. It listens on the console's port
itself and hands the socket to HAProxy (`bind fd@N`), spawns the calculation
servers with their HTTP interface, writes the configuration, supervises
`haproxy -db`, and drives it through the runtime API. Server states are
HAProxy's own, polled from `show stat` with its check status as the reason;
per-request figures come from HAProxy's request log on its stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.control.socket import ControlServer, open_control
from app.engines.haproxy_actions import ServerActions
from app.engines.haproxy_api import ApiError, RuntimeApi, StatRow
from app.engines.haproxy_config import (
    ALGORITHMS,
    BACKEND,
    HaproxySettings,
    ServerEntry,
    check_algorithm,
    render,
)
from app.engines.haproxy_log import RequestLogReader
from app.engines.haproxy_process import HaproxyFailed, HaproxyProcess, find_haproxy
from app.engines.haproxy_view import Front, console_state, describe, server_rows, snapshot
from app.runtime import RuntimeConfig, ServerRow
from backends.supervisor import ServerExited, ServerFailed, ServerReady, ServerSupervisor
from balancer.log import RequestLog
from balancer.stats import BalancerStats

STAT_INTERVAL = 0.2
"""Seconds between two `show stat` polls: the console redraws at 10 Hz."""

StateListener = Callable[[str, str, str, str], None]
"""(server, old state, new state, why), as HAProxy reports it."""


class HaproxyEngine(ServerActions):
    """HAProxy, its configuration, the servers and the log, for one process."""

    protocol = "http"
    """Clients (the dispatcher's requests and batches) speak HTTP/1.1 to HAProxy."""

    def __init__(self, config: RuntimeConfig | None = None, *, algorithm: str | None = None,
                 threads: int | None = 1) -> None:
        # One thread: with HAProxy's default two here, its stdout log dropped 3 to 5
        # lines in 30,000 requests (`DroppedLogs` in `show info`; a pipe of 1 MB did
        # not help); with one, none, and it was faster on this 2-core machine.
        self.config = config or RuntimeConfig()
        c = self.config
        self.algorithm = check_algorithm(algorithm or c.algorithm)
        self.weights: dict[str, int] = dict(c.weights)
        """The operator's weights by server name (the others have 1)."""
        self.threads = threads
        self.log = RequestLog(c.log_file, max_bytes=c.log_max_bytes, backups=c.log_backups,
                              log_requests=c.log_requests)
        self.reader = RequestLogReader(self.log)
        self.supervisor = ServerSupervisor(host="127.0.0.1", on_event=self._on_process_event,
                                           delay=c.server_delay, http=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="lbconsole-haproxy-"))
        self.config_path = self.workdir / "haproxy.cfg"
        self.api_path = str(self.workdir / "admin.sock")
        """HAProxy's own runtime API: the same path across algorithm switches."""
        self.api = RuntimeApi(self.api_path)
        self.process = self._new_process()
        self.retiring: list[HaproxyProcess] = []
        """Earlier HAProxy processes finishing their requests after an algorithm switch."""
        self.listeners: list[StateListener] = []
        self.names: list[str] = []
        """Every server HAProxy knows, in row order."""
        self.outside: dict[str, tuple[str, int]] = {}
        """Servers we did not spawn (`--backend`), by name: their HTTP addresses."""
        self.stat: dict[str, StatRow] = {}
        self.clients = 0
        """Client connections HAProxy holds (its FRONTEND row)."""
        self.queued = 0
        """Requests waiting in HAProxy's queue for a server (its BACKEND row)."""
        self.states: dict[str, str] = {}
        self.sock: socket.socket | None = None
        self.port = 0
        self.started_at = time.monotonic()
        self.haproxy_exit: str | None = None
        """Why HAProxy is not running when we did not stop it (None while it runs)."""
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._switching = asyncio.Lock()
        self._quiet = False  # while a new HAProxy takes over: its changes are not news
        self.balancer = Front(self)
        self.control_server: ControlServer | None = None  # lbconsole's (`lbconsole ctl`)
        self.batches: set[asyncio.Task] = set()  # started over it (`cancel` cancels them)

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def start(self) -> int:
        """Listen, spawn the servers, start HAProxy; returns the listening port."""
        port = self.listen()
        await self.start_servers()
        return port

    def listen(self) -> int:
        """Bind the client port (HAProxy inherits the socket); OSError if taken."""
        find_haproxy()  # fail before anything else happens
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.log.start()
        self.log.event(f"listening on {self.config.host}:{self.port} (engine haproxy)")
        return self.port

    async def start_control(self) -> str | None:
        """Open lbconsole's runtime socket once listening (as `Runtime.start_control`);
        its path, None with `--admin-socket -`. Idempotent."""
        if self.control_server is None:
            self.control_server = await open_control(self, self.port)
        return None if self.control_server is None else self.control_server.path

    async def start_servers(self) -> None:
        """Open the runtime socket, spawn our servers, then write the configuration and
        start HAProxy."""
        c = self.config
        await self.start_control()
        for index, (host, bport) in enumerate(c.backends, start=1):
            self.outside[f"backend{index}"] = (host, bport)
        names = [f"server{i}" for i in range(1, c.servers + 1)]
        self.names = [*self.outside, *names]
        for name in names:
            self.supervisor.declare(name, port=c.server_ports.get(name, 0),
                                    delay=c.server_delays.get(name))
            self.log.event(f"{name} spawning")
        await asyncio.gather(*(self.supervisor.spawn(name) for name in names))
        await self.start_haproxy()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    def settings(self) -> HaproxySettings:
        c = self.config
        entries = []
        for name in self.names:
            if name in self.outside:
                host, port = self.outside[name]
                entries.append(ServerEntry(name, host, port, self.weights.get(name, 1)))
                continue
            server = self.supervisor.servers[name]
            alive = server.alive and server.http_port is not None
            entries.append(ServerEntry(name, server.host, server.http_port if alive else None,
                                       self.weights.get(name, 1)))
        assert self.sock is not None
        return HaproxySettings(
            bind=f"fd@{self.sock.fileno()}", socket_path=self.api.path, servers=tuple(entries),
            check_interval=c.check_interval, rise=c.rise, fall=c.fall,
            check_timeout=c.check_timeout, request_timeout=c.request_timeout,
            queue_timeout=c.queue_timeout, maxconn=max(c.max_clients, 256),
            algorithm=self.algorithm, threads=self.threads)

    async def start_haproxy(self, beside: bool = False) -> int:
        """(Re)write the configuration and start HAProxy; its pid. `beside`: another
        HAProxy still runs, so the new one's socket is made at a side path and moved
        onto `api_path` once it answers (HAProxy's own trick for reloads)."""
        assert self.sock is not None
        self.api = RuntimeApi(self.api_path + ".new" if beside else self.api_path)
        self.config_path.write_text(render(self.settings()))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.api.path)
        self.process.pass_fds = (self.sock.fileno(),)
        pid = await self.process.start()
        deadline = time.monotonic() + 10.0
        while True:  # ready once its runtime API answers
            if not self.process.running:
                raise HaproxyFailed(f"haproxy exited during start-up: {self.process.reason()}")
            with contextlib.suppress(ApiError):
                await self.refresh()
                break
            if time.monotonic() > deadline:
                raise HaproxyFailed("haproxy's runtime API did not answer within 10s")
            await asyncio.sleep(0.02)
        if beside:
            os.replace(self.api.path, self.api_path)
            self.api = RuntimeApi(self.api_path)
        self.haproxy_exit = None
        self.log.event(f"haproxy started (pid {pid}, config {self.config_path})")
        return pid

    async def restart_haproxy(self) -> str:
        """Start HAProxy again after it died (a running one is stopped first, dropping
        what it holds: `set_algorithm` is the gentle way), with the operator's last
        known drains, stops and weights."""
        kept = dict(self.stat)
        if self.process.running:
            await self.process.stop()
        self.states = {}
        pid = await self.start_haproxy()
        await self._carry_over(kept)
        return f"haproxy restarted (pid {pid})"

    async def _carry_over(self, kept: dict[str, StatRow]) -> None:
        """Give a fresh HAProxy the operator's states and weights from an earlier one."""
        for name, row in kept.items():
            if name not in self.names:
                continue
            if row.status.startswith("DRAIN"):
                await self.api.set_state(BACKEND, name, "drain")
            elif row.status.startswith("MAINT"):
                await self.api.set_state(BACKEND, name, "maint")
            if row.weight != 1 and not row.status.startswith("MAINT"):
                await self.api.set_weight(BACKEND, name, row.weight)
        await self.refresh()

    def _new_process(self) -> HaproxyProcess:
        process = HaproxyProcess(str(self.config_path), on_line=self.reader.feed)
        process.on_exit = lambda code: self._on_haproxy_exit(process, code)
        return process

    async def set_algorithm(self, algorithm: str) -> str:
        """Switch HAProxy's algorithm (`next`: the one after the current): a new HAProxy
        with the new configuration takes the listening socket, the old one finishes the
        requests it holds (soft stop) and exits. Operator states and weights carry over.
        A keep-alive client whose connection the old one closes reconnects for its next
        request. If the new one does not start, the old one goes on unchanged."""
        if algorithm == "next":
            names = list(ALGORITHMS)
            algorithm = names[(names.index(self.algorithm) + 1) % len(names)]
        check_algorithm(algorithm)
        async with self._switching:
            before = self.algorithm
            if algorithm == before:
                return f"algorithm {algorithm} (unchanged)"
            if ALGORITHMS[algorithm] == ALGORITHMS[before]:
                self.algorithm = algorithm  # roundrobin is weighted: nothing to restart
                self.log.event(f"operator: algorithm {before} -> {algorithm} "
                               f"(haproxy balance {ALGORITHMS[algorithm]} already)")
                return f"algorithm {algorithm} (haproxy's {ALGORITHMS[algorithm]} honours weights)"
            old, kept, shown = self.process, dict(self.stat), dict(self.states)
            self.algorithm = algorithm
            self.process = self._new_process()
            self.states = {}
            self._quiet = True  # the new HAProxy's first view is not news: compared below
            try:
                await self.start_haproxy(beside=True)
            except HaproxyFailed as exc:
                self.process.kill_now()
                self.process, self.algorithm, self.states = old, before, shown
                self._quiet = False
                self.api = RuntimeApi(self.api_path)
                self.config_path.write_text(render(self.settings()))
                self.log.event(f"operator: algorithm {algorithm} failed ({exc}); "
                               f"haproxy pid {old.pid} goes on with {before}")
                raise
            await self._carry_over(kept)
            self._quiet = False
            self.states = {**self.states, **shown}
            await self.refresh()  # announces what really changed across the switch
            self.retiring.append(old)
            old.soft_stop()
            self.log.event(f"operator: algorithm {before} -> {algorithm} (haproxy pid "
                           f"{self.process.pid} took over; pid {old.pid} finishes its requests)")
            return f"algorithm {algorithm}: haproxy restarted with the new configuration"

    def _on_haproxy_exit(self, process: HaproxyProcess, code: int) -> None:
        if process is not self.process or process.stopping or self._closed:
            return
        self.haproxy_exit = f"haproxy exited with code {code}: {self.process.reason()}"
        self.log.event(self.haproxy_exit + " (restart it with `restart haproxy`)")
        for listener in self.listeners:
            listener("haproxy", "running", "exited", self.haproxy_exit)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop HAProxy and every server; nothing is left behind."""
        self._closed = True
        for task in list(self.batches):
            task.cancel()
        if self.control_server is not None:
            await self.control_server.close()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._poller, 2.0)
        try:
            for old in self.retiring:
                await old.stop(timeout=grace)
            await self.process.stop(timeout=grace)
            self.log.event("haproxy stopped")
        finally:
            for old in self.retiring:
                old.kill_now()
            self.process.kill_now()
            try:
                await self.supervisor.close()
            finally:
                self.supervisor.kill_all_now()
                if self.sock is not None:
                    self.sock.close()
                self.log.event("all servers stopped")
                self.log.close()
                shutil.rmtree(self.workdir, ignore_errors=True)

    def kill_now(self) -> None:
        """Last resort when the loop is gone."""
        for old in self.retiring:
            old.kill_now()
        self.process.kill_now()
        self.supervisor.kill_all_now()

    async def wait_until_up(self, count: int | None = None, timeout: float = 15.0) -> bool:
        """Wait until `count` servers (default: all) are UP in HAProxy's view."""
        want = len(self.names) if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiError):
                await self.refresh()
                if sum(1 for r in self.stat.values() if r.status == "UP") >= want:
                    return True
            await asyncio.sleep(0.05)
        return False

    # ------------------------------------------------------------ HAProxy's view

    async def refresh(self) -> None:
        """Read `show stat` now; log and announce every state change."""
        rows = {}
        for r in await self.api.show_stat(proxies=True):
            if r.server == "FRONTEND":
                self.clients = r.current
            elif r.backend == BACKEND and r.server == "BACKEND":
                self.queued = r.queued
            elif r.backend == BACKEND:
                rows[r.server] = r
        self.stat = rows
        for name, row in rows.items():
            new = console_state(row.status)
            old = self.states.get(name)
            if old != new:
                self.states[name] = new
                if old is not None and not self._quiet:
                    why = describe(row)
                    self.log.event(f"{name} {old} -> {new}: {why}")
                    for listener in self.listeners:
                        listener(name, old, new, why)

    async def _poll(self) -> None:
        ticked = time.monotonic()
        while True:
            await asyncio.sleep(STAT_INTERVAL)
            if self.process.running:
                with contextlib.suppress(ApiError):
                    await self.refresh()
            if time.monotonic() - ticked >= 1.0:
                ticked += 1.0
                self.reader.tick()

    # ------------------------------------------------------------ process events

    def _on_process_event(self, event: object) -> None:
        if isinstance(event, ServerReady):
            self.log.event(f"{event.name} process {event.pid} ready on {event.host}:{event.port}")
        elif isinstance(event, ServerExited):
            self.log.event(f"{event.name} process {event.pid} {event.reason}"
                           + ("" if event.expected else " (unexpected)"))
        elif isinstance(event, ServerFailed):
            self.log.event(f"{event.name} failed to start: {event.reason}")

    # ------------------------------------------------------------ reading the state

    def stats(self) -> BalancerStats:
        """The console's snapshot, from HAProxy's stats and its request log."""
        stats = snapshot(self.address, self.names, self.stat, self.states, self.reader,
                         self.started_at, clients=self.clients, queued=self.queued)
        if "algorithm" in BalancerStats.__dataclass_fields__:  # main's stats name it
            stats = dataclasses.replace(stats, algorithm=self.algorithm)
        return stats

    def rows(self, stats: BalancerStats | None = None) -> list[ServerRow]:
        """One row per server, joining HAProxy's view and the process's."""
        return server_rows(stats or self.stats(), self.supervisor)

"""The running system: log, balancer, health checks and server supervisor, wired together.

`lbconsole serve` and the console both run one `Runtime` in their event loop;
operator actions (kill, stop, restart, add, drain) go through it so the
balancer and the supervisor stay in step and every action is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from app.control.socket import ControlServer, default_socket_path, open_control
from backends.supervisor import (
    ManagedServer,
    ServerExited,
    ServerFailed,
    ServerReady,
    ServerSupervisor,
    SupervisorEvent,
)
from balancer.algorithms import ALGORITHMS
from balancer.log import RequestLog
from balancer.model import Admin, Backend, HealthPolicy, ServerState
from balancer.service import Balancer, BalancerConfig
from balancer.stats import BalancerStats


@dataclass(frozen=True)
class RuntimeConfig:
    host: str = "127.0.0.1"
    port: int = 5001
    servers: int = 3
    backends: tuple[tuple[str, str, int], ...] = ()
    """Servers we did not spawn, as (name, host, port)."""
    log_file: str | None = "loadbalancer.log"
    log_requests: bool = True
    log_max_bytes: int = 20 * 1024 * 1024
    log_backups: int = 3
    check_interval: float = 1.0
    rise: int = 2
    fall: int = 3
    check_timeout: float = 1.0
    request_timeout: float = 2.0
    queue_timeout: float = 10.0
    max_clients: int = 4096
    max_inflight: int = 4096
    retries: int = 1
    retry_budget: float = 0.2
    eject_after: int = 5
    eject_time: float = 10.0
    max_ejected: float = 0.5
    server_delay: float = 0.0
    server_ports: dict[str, int] = field(default_factory=dict)
    """Fixed ports for some spawned servers (normally every server gets port 0)."""
    server_delays: dict[str, float] = field(default_factory=dict)
    """Per-server answer delays in seconds (a slow server), overriding server_delay
    (`--server-latency NAME=MS`)."""
    server_workers: int | None = None
    """Requests each spawned server works on at once (None: unlimited), `add`ed ones too."""
    server_speeds: dict[str, float] = field(default_factory=dict)
    """Speed factors by server name (the others have 1): work takes work_ms / speed."""
    algorithm: str = "roundrobin"
    """The balancing algorithm at start (balancer.algorithms.ALGORITHMS)."""
    weights: dict[str, int] = field(default_factory=dict)
    """Weights by server name (0..256; the others have 1)."""
    admin_socket: str | None = ""
    """The runtime socket's path: "" for the default beside the log file, None for none."""

    def admin_socket_path(self, port: int) -> str | None:
        """Where the runtime socket goes once the balancer listens on `port`."""
        if self.admin_socket is None:
            return None
        return self.admin_socket or default_socket_path(self.log_file, port)

    def balancer_config(self) -> BalancerConfig:
        return BalancerConfig(
            host=self.host, port=self.port, max_clients=self.max_clients,
            max_inflight=self.max_inflight, request_timeout=self.request_timeout,
            queue_timeout=self.queue_timeout, retries=self.retries,
            retry_budget=self.retry_budget, eject_after=self.eject_after,
            eject_time=self.eject_time, max_ejected=self.max_ejected,
            algorithm=self.algorithm, weights=dict(self.weights),
            health=HealthPolicy(interval=self.check_interval, rise=self.rise, fall=self.fall,
                                timeout=self.check_timeout),
        )


CONTROL_KEYS: dict[str, str] = {
    "workers": "workers", "speed": "speed", "latency": "latency_ms", "flaky": "flaky",
    "resets": "resets", "blackhole": "blackhole", "heal": "heal",
}
"""The grammar's server settings and the supervisor.control() keyword each becomes."""


def describe_setting(setting: str, value: float | int | bool | None) -> str:
    """` 4`, ` unlimited`, ` 30%`, ` 20 ms`, or nothing (blackhole, heal), for messages."""
    if setting in ("blackhole", "heal"):
        return ""
    if setting == "workers":
        return " unlimited" if value is None else f" {value}"
    if setting in ("flaky", "resets"):
        return f" {float(value or 0) * 100:g}%"
    if setting == "latency":
        return f" {value:g} ms"
    return f" {value:g}"


@dataclass(frozen=True)
class ServerRow:
    """One server as the console shows it: the balancer's view plus the process's."""

    name: str
    pid: int | None
    port: int | None
    managed: bool
    state: str
    reason: str
    served: int
    inflight: int
    errors: int
    redispatched: int
    mean_ms: float | None
    p99_ms: float | None
    share: float
    is_next: bool
    history: tuple[int, ...]
    weight: int = 1
    host: str = ""
    """Where it listens ("" before it is known)."""
    remote: bool = False
    """A server lbconsole did not spawn (`--backend`): no pid, no faults."""
    workers: int | None = None
    """Requests it works on at once (None: unlimited)."""
    speed: float = 1.0
    latency_ms: float = 0.0
    queued: int = 0
    """Requests waiting inside the server for a worker (its last ping answer)."""
    injected: dict[str, object] = field(default_factory=dict)
    """Active injected faults, e.g. {"flaky": 0.3, "blackhole": True}."""
    faults: int = 0
    retries: int = 0
    ejections: int = 0


class Runtime:
    """Owns the log, the balancer and the supervisor for one process."""

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        c = self.config
        self.log = RequestLog(c.log_file, max_bytes=c.log_max_bytes, backups=c.log_backups,
                              log_requests=c.log_requests)
        self.balancer = Balancer(c.balancer_config(), self.log)
        self.supervisor = ServerSupervisor(host="127.0.0.1", on_event=self._on_process_event,
                                           delay=c.server_delay, workers=c.server_workers)
        self.started = False
        self._locks: dict[str, asyncio.Lock] = {}
        self.control_server: ControlServer | None = None
        """The runtime socket (`lbconsole ctl`), open while the runtime runs."""
        self.batches: set[asyncio.Task] = set()
        """Batches started over the runtime socket (`cancel` cancels them)."""

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Listen, spawn the servers, start checking; returns the balancer's port."""
        port = await self.balancer.start()
        await self.start_servers()
        return port

    async def start_control(self) -> str | None:
        """Open the runtime socket once the balancer listens; its path, None when disabled
        (see `app.control.socket.open_control`). Idempotent: `serve` opens it before the
        servers start, the console through `start_servers`.
        """
        if self.control_server is None:
            self.control_server = await open_control(self, self.balancer.port)
        return None if self.control_server is None else self.control_server.path

    async def start_servers(self) -> None:
        """Open the runtime socket, register the outside backends and spawn our servers
        (once the balancer listens)."""
        c = self.config
        await self.start_control()
        for bname, host, bport in c.backends:
            self.balancer.add_backend(bname, host, bport, remote=True)
        names = [f"server{i}" for i in range(1, c.servers + 1)]
        for name in names:
            self.balancer.add_backend(name)
            self.supervisor.declare(name, port=c.server_ports.get(name, 0),
                                    delay=c.server_delays.get(name),
                                    speed=c.server_speeds.get(name))
        for name, weight in c.weights.items():
            with contextlib.suppress(KeyError):
                self.balancer.set_weight(name, weight)
        if c.algorithm != "roundrobin" or c.weights:
            weights = " ".join(f"{n}={w}" for n, w in c.weights.items())
            self.log.event(f"algorithm {self.balancer.algorithm_name}"
                           + (f", weights {weights}" if weights else ""))
        self.started = True
        for name in names:
            self.log.event(f"{name} spawning")
        await asyncio.gather(*(self.supervisor.spawn(name) for name in names))

    async def stop(self, grace: float = 2.0) -> None:
        """Answer what can be answered, stop every server, close the log."""
        for task in list(self.batches):
            task.cancel()
        if self.control_server is not None:
            await self.control_server.close()
        try:
            await self.balancer.close(grace)
        finally:
            try:
                await self.supervisor.close()
            finally:
                self.supervisor.kill_all_now()
                self.log.event("all servers stopped")
                self.log.close()

    async def wait_until_up(self, count: int | None = None, timeout: float = 15.0) -> bool:
        """Wait until `count` servers (default: all) are UP; False on timeout."""
        want = len(self.balancer.backends) if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for b in self.balancer.backends if b.eligible) >= want:
                return True
            await asyncio.sleep(0.02)
        return False

    # ------------------------------------------------------------ process events

    def _on_process_event(self, event: SupervisorEvent) -> None:
        balancer = self.balancer
        if isinstance(event, ServerReady):
            self.log.event(f"{event.name} process {event.pid} ready on {event.host}:{event.port}")
            with contextlib.suppress(KeyError):
                balancer.set_address(event.name, event.host, event.port)
        elif isinstance(event, ServerExited):
            self.log.event(f"{event.name} process {event.pid} {event.reason}"
                           + ("" if event.expected else " (unexpected)"))
        elif isinstance(event, ServerFailed):
            self.log.event(f"{event.name} failed to start: {event.reason}")
            with contextlib.suppress(KeyError):
                backend = balancer.backend(event.name)
                balancer.set_health(backend, ServerState.DOWN, event.reason)

    # ------------------------------------------------------------ operator actions

    def resolve(self, which: str | int) -> str:
        """A server name from a name, or a 1-based row number."""
        names = [b.name for b in self.balancer.backends]
        if isinstance(which, int) or (isinstance(which, str) and which.isdecimal()):
            index = int(which)
            if 1 <= index <= len(names):
                return names[index - 1]
            raise KeyError(f"no server {index} (there are {len(names)})")
        if which in names:
            return which
        raise KeyError(f"no server named {which!r}")

    def _managed(self, name: str) -> ManagedServer:
        if name not in self.supervisor.servers:
            raise KeyError(f"{name} is not a process lbconsole started (a remote server): it "
                           "cannot kill, restart, freeze or fault it; drain and stop work")
        return self.supervisor.servers[name]

    def kill(self, which: str | int) -> str:
        """SIGKILL the server: the balancer must notice on its own."""
        name = self.resolve(which)
        self._managed(name)
        pid = self.supervisor.kill(name)
        self.log.event(f"operator: kill {name} (SIGKILL pid {pid})")
        return f"{name} killed (SIGKILL to pid {pid})"

    def freeze(self, which: str | int) -> str:
        name = self.resolve(which)
        self._managed(name)
        pid = self.supervisor.freeze(name)
        self.log.event(f"operator: freeze {name} (SIGSTOP pid {pid})")
        return f"{name} frozen (SIGSTOP to pid {pid})"

    def thaw(self, which: str | int) -> str:
        name = self.resolve(which)
        self._managed(name)
        pid = self.supervisor.thaw(name)
        self.log.event(f"operator: thaw {name} (SIGCONT pid {pid})")
        return f"{name} thawed (SIGCONT to pid {pid})"

    def _lock(self, name: str) -> asyncio.Lock:
        """One operator action on a server at a time: a stop still draining when a
        restart of the same server starts cannot stop the new process."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def stop_server(self, which: str | int, drain_timeout: float = 5.0) -> str:
        """Stop gently: take nothing new, finish what it has, then SIGTERM (a server
        lbconsole did not start is only taken out of service)."""
        name = self.resolve(which)
        remote = name not in self.supervisor.servers
        async with self._lock(name):
            backend = self.balancer.backend(name)
            self.log.event(f"operator: stop {name}")
            self.balancer.set_admin(backend, Admin.DRAIN,
                                    "stopping: finishing requests in flight")
            deadline = time.monotonic() + drain_timeout
            while backend.inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self.balancer.set_admin(backend, Admin.STOPPED, "stopped by the operator")
            if remote:
                return (f"{name} stopped: out of service (lbconsole does not own its "
                        "process; restart puts it back)")
            await self.supervisor.stop(name)
        return f"{name} stopped"

    async def restart(self, which: str | int) -> str:
        name = self.resolve(which)
        if name not in self.supervisor.servers:
            backend = self.balancer.backend(name)
            if backend.admin is Admin.STOPPED:
                self.balancer.set_admin(backend, Admin.READY, "back in service")
                self.log.event(f"operator: restart {name} (back in service)")
                return f"{name} back in service after its checks (its process is not ours)"
            self._managed(name)
        async with self._lock(name):
            self.log.event(f"operator: restart {name}")
            server = await self.supervisor.restart(name)
        if server.state.value == "failed":
            return f"{name} failed to restart: {server.reason}"
        return f"{name} restarted (pid {server.pid}, port {server.port})"

    async def add_server(self) -> str:
        name = self.supervisor.next_name()
        self.balancer.add_backend(name)
        self.supervisor.declare(name)
        self.log.event(f"operator: add {name}")
        server = await self.supervisor.spawn(name)
        if server.state.value == "failed":
            return f"{name} failed to start: {server.reason}"
        return f"{name} added (pid {server.pid}, port {server.port})"

    def drain(self, which: str | int) -> str:
        """Toggle DRAINING: finish what it has, take nothing new; again to undo."""
        name = self.resolve(which)
        backend = self.balancer.backend(name)
        if backend.admin is Admin.DRAIN:
            self.balancer.set_admin(backend, Admin.READY, "drain cancelled by the operator")
            self.log.event(f"operator: undrain {name}")
            return f"{name} back in the rotation"
        if backend.admin is Admin.STOPPED:
            raise KeyError(f"{name} is stopped; restart it first")
        self.log.event(f"operator: drain {name}")
        self.balancer.set_admin(backend, Admin.DRAIN, "draining by the operator")
        return f"{name} draining: takes nothing new"

    def set_algorithm(self, name: str) -> str:
        """Switch the balancing algorithm live; `next` takes the one after the current."""
        old = self.balancer.algorithm_name
        if name == "next":
            names = list(ALGORITHMS)
            name = names[(names.index(old) + 1) % len(names)] if old in names else names[0]
        self.balancer.set_algorithm(name)
        self.log.event(f"operator: algorithm {old} -> {name}")
        return f"algorithm {name}" + ("" if name != old else " (unchanged)")

    def set_weight(self, which: str | int, weight: int) -> str:
        name = self.resolve(which)
        old = self.balancer.backend(name).weight
        self.balancer.set_weight(name, weight)
        self.log.event(f"operator: weight {name} {old} -> {weight}")
        out = " (takes nothing new)" if weight == 0 else ""
        return f"{name} weight {weight}{out}"

    async def control(self, which: str | int, setting: str,
                      value: float | int | bool | None) -> tuple[str, dict]:
        """A setting or fault of one spawned server, through its supervisor.

        Percentages (flaky, resets) go to the supervisor as fractions 0..1, latency
        as `latency_ms`. Returns a line for the operator and the supervisor's answer.
        """
        name = self.resolve(which)
        self._managed(name)
        key = CONTROL_KEYS[setting]
        if setting in ("flaky", "resets"):
            value = float(value or 0) / 100
        answer = await self.supervisor.control(name, **{key: value})
        shown = describe_setting(setting, value)
        self.log.event(f"operator: {setting} {name}{shown}")
        return f"{name}: {setting}{shown}", answer if isinstance(answer, dict) else {}

    # ------------------------------------------------------------ reading the state

    def stats(self) -> BalancerStats:
        return self.balancer.stats()

    def rows(self, stats: BalancerStats | None = None) -> list[ServerRow]:
        """One row per server, joining balancer counters and process facts."""
        stats = stats or self.balancer.stats()
        rows = []
        for b in stats.backends:
            proc = self.supervisor.servers.get(b.name)
            pid = proc.pid if proc is not None and proc.alive else None
            port = int(b.address.rsplit(":", 1)[1]) if b.address != "-" else None
            # What a spawned server was told (its supervisor's settings) shows at once, also
            # while it is black-holed and answers no ping; a remote one only has its pong.
            told = proc.settings if proc is not None else None
            pong = b.pong
            rows.append(ServerRow(
                name=b.name, pid=pid, port=port, managed=proc is not None, state=b.state,
                reason=b.reason, served=b.served, inflight=b.inflight, errors=b.errors,
                redispatched=b.redispatched, mean_ms=b.mean_ms, p99_ms=b.p99_ms,
                share=b.share, is_next=b.is_next, history=b.history,
                weight=b.weight, host=b.address.rsplit(":", 1)[0] if b.address != "-" else "",
                remote=b.remote,
                workers=told.workers if told is not None else pong.get("workers"),
                speed=told.speed if told is not None else pong.get("speed", 1.0),
                latency_ms=(told.latency_ms if told is not None
                            else pong.get("latency_ms", 0.0)),
                queued=int(pong.get("queued", 0) or 0),
                injected=told.faults() if told is not None else dict(pong.get("faults") or {}),
                faults=b.faults, retries=b.retries, ejections=b.ejections,
            ))
        return rows

    def backend(self, name: str) -> Backend:
        return self.balancer.backend(name)

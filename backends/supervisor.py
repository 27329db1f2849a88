"""Spawns and watches the calculation server processes: start, kill, stop, restart, add.

Each server is `python -m backends.server --name NAME --port 0`, started in its
own session (a Ctrl-C in the terminal does not reach it; we stop it after the
balancer has answered) with its stdin held open by us: when this process dies
for any reason, even SIGKILL, the server sees EOF and exits too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

_READY = re.compile(r"^ready (\S+) (\S+):(\d+) pid (\d+)")
_HTTP = re.compile(r"^http (\S+) (\S+):(\d+)")
_ROOT = str(Path(__file__).resolve().parent.parent)


class ProcessState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FROZEN = "frozen"
    EXITED = "exited"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class ManagedServer:
    """One server process and what we know of it."""

    name: str
    port_wanted: int = 0
    delay: float = 0.0
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    http_port: int | None = None
    """The server's HTTP/1.1 port, when the supervisor was made with `http=True`."""
    state: ProcessState = ProcessState.STARTING
    returncode: int | None = None
    reason: str = ""
    restarts: int = 0
    stopping: bool = False
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    watcher: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.FROZEN)


@dataclass(frozen=True)
class ServerReady:
    name: str
    pid: int
    host: str
    port: int


@dataclass(frozen=True)
class ServerExited:
    name: str
    pid: int
    returncode: int | None
    reason: str
    expected: bool
    """True when we asked for it (stop, restart, shutdown)."""


@dataclass(frozen=True)
class ServerFailed:
    name: str
    reason: str


SupervisorEvent = ServerReady | ServerExited | ServerFailed


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class ServerSupervisor:
    """Owns the server processes; reports what happens to them through `on_event`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        python: str = sys.executable,
        on_event: Callable[[SupervisorEvent], None] | None = None,
        ready_timeout: float = 15.0,
        delay: float = 0.0,
        http: bool = False,
    ) -> None:
        self.host = host
        self.python = python
        self.on_event = on_event
        self.ready_timeout = ready_timeout
        self.delay = delay
        self.http = http
        """Start every server with `--http-port 0` too (the HAProxy engine's data path)."""
        self.servers: dict[str, ManagedServer] = {}
        self.closed = False

    # ------------------------------------------------------------ starting

    def next_name(self) -> str:
        index = len(self.servers) + 1
        while f"server{index}" in self.servers:
            index += 1
        return f"server{index}"

    async def start(self, count: int) -> list[ManagedServer]:
        """Spawn server1..serverN concurrently; failures are reported, not raised."""
        names = [f"server{i}" for i in range(1, count + 1)]
        for name in names:
            self.servers.setdefault(name, ManagedServer(name, delay=self.delay, host=self.host))
        return list(await asyncio.gather(*(self.spawn(name) for name in names)))

    async def add(self, port: int = 0, delay: float | None = None) -> ManagedServer:
        """Spawn one more server with the next free name."""
        name = self.next_name()
        self.servers[name] = ManagedServer(
            name, port_wanted=port, delay=self.delay if delay is None else delay, host=self.host)
        return await self.spawn(name)

    def declare(self, name: str, port: int = 0, delay: float | None = None) -> ManagedServer:
        """Register a server without starting it (to set its port or delay first)."""
        server = ManagedServer(name, port_wanted=port,
                               delay=self.delay if delay is None else delay, host=self.host)
        self.servers[name] = server
        return server

    async def spawn(self, name: str) -> ManagedServer:
        """Start (or start again) the named server and wait for its ready line."""
        server = self.servers.get(name) or self.declare(name)
        if server.alive and server.process is not None:
            return server
        server.state = ProcessState.STARTING
        server.port = None
        server.http_port = None
        server.returncode = None
        server.stopping = False
        server.reason = "starting"
        server.stderr.clear()
        args = [self.python, "-m", "backends.server", "--name", name, "--host", self.host,
                "--port", str(server.port_wanted), "--exit-on-stdin-eof"]
        if server.delay:
            args += ["--delay", str(server.delay)]
        if self.http:
            args += ["--http-port", "0"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, env=env,
            )
        except OSError as exc:
            self._failed(server, f"cannot start: {exc.strerror or exc}")
            return server
        server.process = process
        server.pid = process.pid
        server.watcher = asyncio.get_running_loop().create_task(self._watch(server, process))
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.ready_timeout)
        except TimeoutError:
            line = b""
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self._failed(server, f"no ready line within {self.ready_timeout:g}s")
            return server
        match = _READY.match(line.decode("utf-8", "replace"))
        if match is None:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(process.wait(), 2.0)
            said = line.decode("utf-8", "replace").strip()
            detail = said or (server.stderr[-1] if server.stderr else describe_exit(
                process.returncode))
            self._failed(server, f"failed to start: {detail}")
            return server
        server.host, server.port = match[2], int(match[3])
        if self.http:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), self.ready_timeout)
            except TimeoutError:
                line = b""
            http = _HTTP.match(line.decode("utf-8", "replace"))
            if http is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                self._failed(server, "no http line after the ready line")
                return server
            server.http_port = int(http[3])
        server.state = ProcessState.RUNNING
        server.reason = f"ready on {server.host}:{server.port}"
        self._emit(ServerReady(name, process.pid, server.host, server.port))
        return server

    def _failed(self, server: ManagedServer, reason: str) -> None:
        server.state = ProcessState.FAILED
        server.reason = reason
        self._emit(ServerFailed(server.name, reason))

    async def _watch(self, server: ManagedServer, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            raw = await process.stderr.readline()
            if not raw:
                break
            server.stderr.append(raw.decode("utf-8", "replace").rstrip())
        returncode = await process.wait()
        if server.process is not process:
            return
        expected = server.stopping or self.closed
        was_running = server.state in (ProcessState.RUNNING, ProcessState.FROZEN)
        server.returncode = returncode
        reason = describe_exit(returncode)
        if server.state is not ProcessState.FAILED:
            server.state = ProcessState.STOPPED if expected else ProcessState.EXITED
            server.reason = reason
        if was_running or expected:
            self._emit(ServerExited(server.name, process.pid, returncode, reason, expected))

    def _emit(self, event: SupervisorEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------ operator actions

    def get(self, name: str) -> ManagedServer:
        try:
            return self.servers[name]
        except KeyError:
            raise KeyError(f"no server named {name!r}") from None

    def signal(self, name: str, sig: signal.Signals) -> int:
        """Send a signal to a server we started; returns its pid."""
        server = self.get(name)
        if server.process is None or server.process.returncode is not None:
            raise ProcessLookupError(f"{name} is not running")
        server.process.send_signal(sig)
        return server.process.pid

    def kill(self, name: str) -> int:
        """SIGKILL: a crash, as far as the balancer can tell."""
        return self.signal(name, signal.SIGKILL)

    def freeze(self, name: str) -> int:
        """SIGSTOP: alive, port open, answering nothing."""
        pid = self.signal(name, signal.SIGSTOP)
        self.servers[name].state = ProcessState.FROZEN
        return pid

    def thaw(self, name: str) -> int:
        pid = self.signal(name, signal.SIGCONT)
        if self.servers[name].state is ProcessState.FROZEN:
            self.servers[name].state = ProcessState.RUNNING
        return pid

    async def stop(self, name: str, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        server = self.get(name)
        process = server.process
        if process is None or process.returncode is not None:
            server.state = ProcessState.STOPPED if server.state is not ProcessState.FAILED \
                else server.state
            return
        server.stopping = True
        with contextlib.suppress(ProcessLookupError):
            if server.state is ProcessState.FROZEN:
                process.send_signal(signal.SIGCONT)
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if server.watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.watcher, 1.0)

    async def restart(self, name: str) -> ManagedServer:
        server = self.get(name)
        if server.alive:
            await self.stop(name)
        server.restarts += 1
        return await self.spawn(name)

    async def close(self, timeout: float = 3.0) -> None:
        """Stop every server we started; none is left behind."""
        self.closed = True
        await asyncio.gather(*(self.stop(name, timeout) for name in list(self.servers)),
                             return_exceptions=True)

    def kill_all_now(self) -> None:
        """Last resort from a synchronous context (atexit): SIGKILL every live child."""
        for server in self.servers.values():
            process = server.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError, OSError):
                    os.kill(process.pid, signal.SIGKILL)

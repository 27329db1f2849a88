"""Spawns and watches the calculation server processes: start, kill, stop, restart, add.

Each server is `python -m backends.server --name NAME --port 0`, started in its
own session (a Ctrl-C in the terminal does not reach it; we stop it after the
balancer has answered) with its stdin held open by us: when this process dies
for any reason, even SIGKILL, the server sees EOF and exits too.

That stdin is also the server's control channel (backends.control): `control()`
changes a server's workers, speed, latency and faults live, and the supervisor
keeps the settings so a restarted server comes back with them (heal clears
them). Nothing on the data port can change a setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson

from backends.processes import (
    ManagedServer,
    ProcessState,
    ServerExited,
    ServerFailed,
    ServerNotRunning,
    ServerReady,
    SupervisorEvent,
    describe_exit,
)
from backends.settings import ServerSettings, settings_arguments

__all__ = [
    "ManagedServer", "ProcessState", "ServerExited", "ServerFailed", "ServerNotRunning",
    "ServerReady", "ServerSupervisor", "SupervisorEvent", "describe_exit",
]

_READY = re.compile(r"^ready (\S+) (\S+):(\d+) pid (\d+)")
_HTTP = re.compile(r"^http (\S+) (\S+):(\d+)")
_ROOT = str(Path(__file__).resolve().parent.parent)

CONTROL_TIMEOUT = 5.0
"""Seconds a control order may take before the server is called unresponsive."""


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
        workers: int | None = None,
        speed: float = 1.0,
        latency_ms: float | None = None,
        seed: int | None = None,
        http: bool = False,
    ) -> None:
        self.host = host
        self.python = python
        self.on_event = on_event
        self.ready_timeout = ready_timeout
        self.delay = delay
        self.defaults = ServerSettings().changed({
            "workers": workers, "speed": speed,
            "latency_ms": delay * 1000.0 if latency_ms is None else latency_ms})
        """Settings of servers declared without their own (raises ValueError if bad)."""
        self.seed = seed
        """With a seed, each server gets its own seed derived from it and its name."""
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
            if name not in self.servers:
                self.declare(name)
        return list(await asyncio.gather(*(self.spawn(name) for name in names)))

    async def add(self, port: int = 0, delay: float | None = None,
                  workers: int | None = None, speed: float | None = None,
                  latency_ms: float | None = None, seed: int | None = None) -> ManagedServer:
        """Spawn one more server with the next free name (settings as for `declare`)."""
        name = self.next_name()
        self.declare(name, port=port, delay=delay, workers=workers, speed=speed,
                     latency_ms=latency_ms, seed=seed)
        return await self.spawn(name)

    def declare(self, name: str, port: int = 0, delay: float | None = None,
                workers: int | None = None, speed: float | None = None,
                latency_ms: float | None = None, seed: int | None = None) -> ManagedServer:
        """Register a server without starting it (to set its port, capacity or speed first).

        Unset values come from the supervisor's defaults; `delay` (seconds) is
        the older form of `latency_ms`. Raises ValueError on a bad value.
        """
        changes: dict[str, object] = {}
        if workers is not None:
            changes["workers"] = workers
        if speed is not None:
            changes["speed"] = speed
        if latency_ms is not None:
            changes["latency_ms"] = latency_ms
        elif delay is not None:
            changes["latency_ms"] = delay * 1000.0
        settings = self.defaults.changed(changes)
        if seed is None and self.seed is not None:
            seed = zlib.crc32(f"{self.seed}:{name}".encode())
        server = ManagedServer(name, port_wanted=port,
                               delay=settings.latency_ms / 1000.0, host=self.host,
                               settings=settings, seed=seed)
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
        launched = server.settings
        args = [self.python, "-m", "backends.server", "--name", name, "--host", self.host,
                "--port", str(server.port_wanted), "--exit-on-stdin-eof",
                *settings_arguments(launched)]
        if server.seed is not None:
            args += ["--seed", str(server.seed)]
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
        server.replies = {}
        server.reader = asyncio.get_running_loop().create_task(
            self._read_replies(server, process, server.replies))
        if server.settings != launched:
            # Changed while it was starting: tell the new process before anyone uses it.
            with contextlib.suppress(KeyError, ValueError):
                await self._order(server, {"set": server.settings.as_dict()})
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

    async def _read_replies(self, server: ManagedServer, process: asyncio.subprocess.Process,
                            replies: dict[int, asyncio.Future[dict]]) -> None:
        """Match the control replies on the server's stdout to the orders waiting for them."""
        assert process.stdout is not None
        try:
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    break
                try:
                    reply = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(reply, dict):
                    continue
                waiter = replies.pop(reply.get("id"), None)  # type: ignore[arg-type]
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        finally:
            for waiter in replies.values():
                if not waiter.done():
                    waiter.set_exception(ServerNotRunning(f"{server.name} exited"))
            replies.clear()

    def _emit(self, event: SupervisorEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------ control channel

    def settings(self, name: str) -> dict[str, object]:
        """The settings the named server has (or will have when it starts); KeyError if unknown."""
        return self.get(name).settings.as_dict()

    async def control(self, name: str, **settings: object) -> dict[str, object]:
        """Change a running server's settings live; returns its settings after the change.

        Settings: workers (int >= 1, or None for unlimited), speed (> 0),
        latency_ms (>= 0), flaky and resets (0..1), blackhole (bool), heal
        (True: no faults, speed 1, no latency). They survive a restart.
        Raises KeyError (no such server, or not running) or ValueError (bad value).
        """
        server = self.get(name)
        new = server.settings.changed(settings)  # ValueError before anything is sent
        process = server.process
        if process is None or process.returncode is not None or not server.alive:
            raise ServerNotRunning(f"{name} is not running")
        server.settings = new
        if server.state is ProcessState.STARTING:
            return new.as_dict()  # spawn sends it once the ready line is in
        if server.state is ProcessState.FROZEN:
            # A stopped process cannot answer; the order waits in its stdin pipe.
            self._send(server, {"set": settings}, wait=False)
            return new.as_dict()
        reply = await self._order(server, {"set": settings})
        if not reply.get("ok"):
            raise ValueError(str(reply.get("error", "refused")))
        confirmed = reply.get("settings")
        return confirmed if isinstance(confirmed, dict) else new.as_dict()

    async def server_stats(self, name: str) -> dict[str, object]:
        """The counters a ping would report, over the control channel (no data connection)."""
        server = self.get(name)
        if server.state is not ProcessState.RUNNING:
            raise ServerNotRunning(f"{name} is not running")
        reply = await self._order(server, {"get": "stats"})
        stats = reply.get("stats")
        return stats if isinstance(stats, dict) else {}

    def _send(self, server: ManagedServer, order: dict[str, object],
              wait: bool) -> asyncio.Future[dict] | None:
        process = server.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise ServerNotRunning(f"{server.name} is not running")
        server.orders += 1
        order = {"id": server.orders, **order}
        waiter: asyncio.Future[dict] | None = None
        if wait:
            waiter = asyncio.get_running_loop().create_future()
            server.replies[server.orders] = waiter
        try:
            process.stdin.write(orjson.dumps(order) + b"\n")
        except (OSError, RuntimeError) as exc:
            server.replies.pop(server.orders, None)
            raise ServerNotRunning(f"{server.name} is not running") from exc
        return waiter

    async def _order(self, server: ManagedServer, order: dict[str, object]) -> dict:
        waiter = self._send(server, order, wait=True)
        assert waiter is not None
        try:
            return await asyncio.wait_for(waiter, CONTROL_TIMEOUT)
        except TimeoutError:
            raise ServerNotRunning(
                f"{server.name} did not answer its control order within "
                f"{CONTROL_TIMEOUT:g}s") from None

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

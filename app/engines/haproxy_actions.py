"""The operator's actions on the HAProxy engine's servers: the same verbs as the built-in one.

Kill, freeze, thaw and the server settings and faults (workers, speed,
latency, flaky, resets, blackhole, heal) act on the real processes through the
supervisor, and HAProxy finds out by itself; drain, stop, weights, add and
remove go through HAProxy's runtime API, and a restarted process's new port
is given to HAProxy (`set server ... addr`).
A mixin of `HaproxyEngine`, kept apart so each file reads in one sitting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from app.engines.haproxy_api import RuntimeApi, StatRow
from app.engines.haproxy_config import BACKEND, HaproxySettings, server_options
from app.runtime import CONTROL_KEYS, describe_setting
from backends.supervisor import ServerSupervisor
from balancer.log import RequestLog


class ServerActions:
    """Operator actions; the engine provides the attributes below."""

    names: list[str]
    supervisor: ServerSupervisor
    api: RuntimeApi
    log: RequestLog
    stat: dict[str, StatRow]
    states: dict[str, str]
    weights: dict[str, int]
    refresh: Callable[[], Awaitable[None]]
    settings: Callable[[], HaproxySettings]

    def resolve(self, which: str | int) -> str:
        """A server name from a name, or a 1-based row number."""
        names = self.names
        if isinstance(which, int) or (isinstance(which, str) and which.isdecimal()):
            index = int(which)
            if 1 <= index <= len(names):
                return names[index - 1]
            raise KeyError(f"no server {index} (there are {len(names)})")
        if which in names:
            return which
        raise KeyError(f"no server named {which!r}")

    def _managed(self, which: str | int) -> str:
        name = self.resolve(which)
        if name not in self.supervisor.servers:
            raise KeyError(f"{name} was not started by lbconsole; it cannot be controlled here")
        return name

    def kill(self, which: str | int) -> str:
        """SIGKILL the server: HAProxy must notice on its own."""
        name = self._managed(which)
        pid = self.supervisor.kill(name)
        self.log.event(f"operator: kill {name} (SIGKILL pid {pid})")
        return f"{name} killed (SIGKILL to pid {pid})"

    def freeze(self, which: str | int) -> str:
        name = self._managed(which)
        pid = self.supervisor.freeze(name)
        self.log.event(f"operator: freeze {name} (SIGSTOP pid {pid})")
        return f"{name} frozen (SIGSTOP to pid {pid})"

    def thaw(self, which: str | int) -> str:
        name = self._managed(which)
        pid = self.supervisor.thaw(name)
        self.log.event(f"operator: thaw {name} (SIGCONT pid {pid})")
        return f"{name} thawed (SIGCONT to pid {pid})"

    async def set_state(self, which: str | int, state: str) -> str:
        """`ready`, `drain` or `maint` through the runtime API."""
        name = self.resolve(which)
        await self.api.set_state(BACKEND, name, state)
        self.log.event(f"operator: {name} state {state}")
        await self.refresh()
        return f"{name}: {state}"

    async def drain(self, which: str | int) -> str:
        """Toggle DRAINING: HAProxy sends nothing new; again to undo."""
        name = self.resolve(which)
        await self.refresh()
        row = self.stat.get(name)
        if row is not None and row.status.startswith("DRAIN"):
            await self.set_state(name, "ready")
            return f"{name} back in the rotation"
        if row is not None and row.status.startswith("MAINT"):
            raise KeyError(f"{name} is stopped; restart it first")
        await self.set_state(name, "drain")
        return f"{name} draining: takes nothing new"

    async def set_weight(self, which: str | int, weight: int) -> str:
        name = self.resolve(which)
        old = self.weights.get(name, 1)
        await self.api.set_weight(BACKEND, name, weight)
        self.weights[name] = weight  # a later HAProxy (algorithm switch) starts with it
        self.log.event(f"operator: weight {name} {old} -> {weight}")
        out = " (takes nothing new)" if weight == 0 else ""
        return f"{name} weight {weight}{out}"

    async def control(self, which: str | int, setting: str,
                      value: float | int | bool | None) -> tuple[str, dict]:
        """A setting or fault of one spawned server, through its supervisor, as
        `Runtime.control` does (percentages as fractions, latency as `latency_ms`)."""
        name = self._managed(which)
        key = CONTROL_KEYS[setting]
        if setting in ("flaky", "resets"):
            value = float(value or 0) / 100
        answer = await self.supervisor.control(name, **{key: value})
        shown = describe_setting(setting, value)
        self.log.event(f"operator: {setting} {name}{shown}")
        return f"{name}: {setting}{shown}", answer if isinstance(answer, dict) else {}

    async def stop_server(self, which: str | int, drain_timeout: float = 5.0) -> str:
        """Drain in HAProxy, wait for its requests to finish, maint, then SIGTERM."""
        name = self._managed(which)
        self.log.event(f"operator: stop {name}")
        await self.api.set_state(BACKEND, name, "drain")
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            await self.refresh()
            row = self.stat.get(name)
            if row is None or not row.current:
                break
            await asyncio.sleep(0.05)
        await self.api.set_state(BACKEND, name, "maint")
        await self.supervisor.stop(name)
        await self.refresh()
        return f"{name} stopped"

    async def restart(self, which: str | int) -> str:
        """Restart the process; HAProxy gets its new port and puts it back in rotation."""
        name = self._managed(which)
        self.log.event(f"operator: restart {name}")
        server = await self.supervisor.restart(name)
        if server.state.value == "failed" or server.http_port is None:
            return f"{name} failed to restart: {server.reason}"
        await self.api.set_address(BACKEND, name, server.host, server.http_port)
        await self.api.set_state(BACKEND, name, "ready")
        await self.refresh()
        return f"{name} restarted (pid {server.pid}, port {server.http_port})"

    async def add_server(self) -> str:
        """Spawn one more server and `add server` it to the running HAProxy."""
        name = self.supervisor.next_name()
        while name in self.names:
            name = f"{name}x"
        self.supervisor.declare(name)
        self.log.event(f"operator: add {name}")
        server = await self.supervisor.spawn(name)
        if server.state.value == "failed" or server.http_port is None:
            return f"{name} failed to start: {server.reason}"
        options = server_options(self.settings())
        await self.api.add_server(BACKEND, name, f"{server.host}:{server.http_port}", options)
        self.names.append(name)
        await self.refresh()
        return f"{name} added (pid {server.pid}, port {server.http_port})"

    async def remove_server(self, which: str | int) -> str:
        """`del server` from HAProxy, then stop the process."""
        name = self.resolve(which)
        await self.api.set_state(BACKEND, name, "maint")
        await self.api.del_server(BACKEND, name)
        self.names.remove(name)
        self.states.pop(name, None)
        if name in self.supervisor.servers:
            await self.supervisor.stop(name)
        self.log.event(f"operator: removed {name}")
        return f"{name} removed"

"""Health checks: HAProxy-style rise/fall counting, over three callables.

The checker knows nothing of the core. It is given `members()` (what to check
now), `probe(member)` (one check: connect if needed, ping; raises on failure)
and `report(member, generation, ok, hard, reason, elapsed, pong)`, and runs a
check of every member each interval, and of one on demand. The verdict itself
(`balancer.model.judge`) is applied by whoever `report` belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from balancer.model import HealthPolicy, Verdict, judge

__all__ = ["HealthChecker", "HealthPolicy", "Verdict", "judge"]

Report = Callable[[Any, int, bool, bool, str, float, "dict | None"], None]


class HealthChecker:
    """Runs a check of every member each interval, and on demand."""

    def __init__(self, policy: HealthPolicy, members: Callable[[], Iterable[Any]],
                 probe: Callable[[Any], Awaitable[dict]], report: Report) -> None:
        self.policy = policy
        self.members = members
        self.probe = probe
        self.report = report
        self.checks = 0
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, tuple[asyncio.Task[None], int]] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *(t for t, _ in self._running.values()))
                 if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._running.clear()

    def check_now(self, member: Any) -> None:
        """Start a check of one member at once (after a restart, say). A check still
        running from before the member's last restart is cancelled: it was
        reaching an address the member no longer has."""
        if self._task is None:
            return
        running = self._running.get(member.name)
        if running is not None:
            if running[1] == member.generation:
                return
            running[0].cancel()
        task = asyncio.get_running_loop().create_task(self.check(member))
        self._running[member.name] = (task, member.generation)
        task.add_done_callback(lambda t, name=member.name: self._forget(name, t))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        running = self._running.get(name)
        if running is not None and running[0] is task:
            del self._running[name]

    async def _run(self) -> None:
        while True:
            for member in list(self.members()):
                self.check_now(member)
            await asyncio.sleep(self.policy.interval)

    async def check(self, member: Any) -> None:
        """One check; its outcome goes to `report` with the generation it began in."""
        generation = member.generation
        started = time.monotonic()
        hard = False
        pong: dict | None = None
        try:
            pong = await asyncio.wait_for(self.probe(member), self.policy.timeout)
        except TimeoutError:
            ok, reason = False, f"check timed out after {self.policy.timeout:g}s"
        except OSError as exc:
            ok, hard = False, True
            reason = connect_reason(exc)
        else:
            ok, reason = True, "checks passed"
        self.checks += 1
        self.report(member, generation, ok, hard, reason, time.monotonic() - started, pong)


def connect_reason(exc: OSError) -> str:
    """What went wrong reaching a server, as the Servers table says it."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if exc.errno == errno.EHOSTUNREACH:
        return "no route to host"
    if exc.errno == errno.ENETUNREACH:
        return "network unreachable"
    if exc.strerror:
        return f"check failed: {exc.strerror}"
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return f"check failed: {exc.__class__.__name__}"

"""Health checks: HAProxy-style rise/fall counting over `ping` on each server's connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from balancer.backend import Admin, Backend, ServerState

if TYPE_CHECKING:
    from balancer.balancer import Balancer


@dataclass(frozen=True)
class HealthPolicy:
    """Check every `interval` s; `fall` failures mark a server DOWN, `rise` successes UP."""

    interval: float = 1.0
    rise: int = 2
    fall: int = 3
    timeout: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check for one server's streaks and state."""

    state: ServerState | None
    """The new state, or None when it stays as it is."""
    ok_streak: int
    fail_streak: int


def judge(
    state: ServerState,
    ok: bool,
    ok_streak: int,
    fail_streak: int,
    policy: HealthPolicy,
    *,
    hard: bool = False,
) -> Verdict:
    """The health state machine, pure so it can be tested alone.

    A STARTING server is UP after its first good check (it has just said it is
    ready); a DOWN one needs `rise` good checks in a row. An UP or STARTING
    server goes DOWN after `fall` failed checks in a row, or at once on a hard
    failure (a refused or dropped connection).
    """
    if ok:
        ok_streak, fail_streak = ok_streak + 1, 0
        if state is ServerState.STARTING or (
            state is ServerState.DOWN and ok_streak >= policy.rise
        ):
            return Verdict(ServerState.UP, ok_streak, fail_streak)
        return Verdict(None, ok_streak, fail_streak)
    ok_streak, fail_streak = 0, fail_streak + 1
    if state in (ServerState.UP, ServerState.STARTING) and (hard or fail_streak >= policy.fall):
        return Verdict(ServerState.DOWN, ok_streak, fail_streak)
    return Verdict(None, ok_streak, fail_streak)


class HealthChecker:
    """Runs a check of every server each interval, and on demand."""

    def __init__(self, balancer: Balancer, policy: HealthPolicy) -> None:
        self.balancer = balancer
        self.policy = policy
        self.checks = 0
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._running.clear()

    def check_now(self, backend: Backend) -> None:
        """Start a check of one server at once (after a restart, say)."""
        if backend.name in self._running or self._task is None:
            return
        task = asyncio.get_running_loop().create_task(self.check(backend))
        self._running[backend.name] = task
        task.add_done_callback(lambda _t, name=backend.name: self._running.pop(name, None))

    async def _run(self) -> None:
        while True:
            for backend in list(self.balancer.backends):
                if backend.admin is not Admin.STOPPED and backend.port:
                    self.check_now(backend)
            await asyncio.sleep(self.policy.interval)

    async def check(self, backend: Backend) -> None:
        """One check: connect if needed, ping, and apply the verdict."""
        policy = self.policy
        started = time.monotonic()
        hard = False
        try:
            if backend.conn is None:
                await asyncio.wait_for(self.balancer.connect(backend), policy.timeout)
            pong = await self.balancer.ping(backend, policy.timeout)
        except ConnectionRefusedError:
            ok, hard, reason = False, True, "connection refused"
        except TimeoutError:
            ok, reason = False, f"check timed out after {policy.timeout:g}s"
        except (OSError, ConnectionError) as exc:
            ok, hard = False, True
            reason = f"check failed: {exc.strerror or exc.__class__.__name__}" if isinstance(
                exc, OSError) else f"check failed: {exc}"
        else:
            ok = True
            backend.pong = pong
            reason = "checks passed"
        self.checks += 1
        elapsed = time.monotonic() - started
        backend.last_check = time.monotonic()
        if ok:
            backend.check_ms = elapsed * 1000
        if backend.admin is Admin.STOPPED:
            return
        verdict = judge(backend.health, ok, backend.ok_streak, backend.fail_streak, policy,
                        hard=hard)
        backend.ok_streak, backend.fail_streak = verdict.ok_streak, verdict.fail_streak
        if verdict.state is not None:
            if verdict.state is ServerState.UP:
                if backend.health is ServerState.DOWN:
                    reason = f"{verdict.ok_streak} checks passed"
                else:
                    reason = f"first check passed in {elapsed * 1000:.1f} ms"
            elif not hard:
                reason = f"{verdict.fail_streak} checks failed: {reason}"
            self.balancer.set_health(backend, verdict.state, reason)

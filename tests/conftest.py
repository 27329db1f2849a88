"""Shared fixtures: a running Runtime on port 0 with real server subprocesses.

Every fixture stops what it started; the session ends by checking that no
calculation server started by this test process is still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.runtime import Runtime, RuntimeConfig

RuntimeFactory = Callable[..., Awaitable[Runtime]]


def _children_running_servers() -> list[int]:
    """Pids of `backends.server` processes whose parent is this test process."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if b"backends.server" not in cmdline:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == me and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind() -> object:
    yield
    leftovers = _children_running_servers()
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"server processes left behind: {leftovers}"


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    """Start Runtimes on port 0 (log in tmp_path); all are stopped at teardown."""
    started: list[Runtime] = []

    async def factory(wait_up: bool = True, **overrides: object) -> Runtime:
        options: dict[str, object] = {
            "port": 0,
            "log_file": str(tmp_path / "loadbalancer.log"),
            "check_interval": 0.2,
        }
        options.update(overrides)
        runtime = Runtime(RuntimeConfig(**options))  # type: ignore[arg-type]
        started.append(runtime)
        await runtime.start()
        if wait_up:
            assert await runtime.wait_until_up(timeout=20), runtime.rows()
        return runtime

    try:
        yield factory
    finally:
        for runtime in started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runtime.stop(grace=1.0), 15)
            runtime.supervisor.kill_all_now()


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory) -> Runtime:
    """Three servers UP behind a balancer on a free port."""
    return await make_runtime()

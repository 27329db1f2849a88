"""The console driven by a Pilot with HAProxy as the engine: same keys, HAProxy's view."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.console import ConsoleApp
from app.engines.source import HaproxySource
from app.runtime import RuntimeConfig
from app.widgets.routing import RoutingView
from tests.test_console_live import SIZE, all_up, message, state, type_line, until
from tests.wire import pid_alive

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not on PATH (apt-get install haproxy)")


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[ConsoleApp]:
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2, rise=1, fall=2)
    source = HaproxySource(config)
    app = ConsoleApp(source)
    try:
        yield app
    finally:
        # Bounded: a stop that hangs must not take the suite with it; kill_now ends
        # HAProxy and every server by pid whatever happened.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(source.stop(), 30)
        source.kill_now()


async def test_batch_requests_and_routing_through_haproxy(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        await type_line(pilot, "random 300")
        await until(pilot, lambda: "300 answers" in message(console), 20, "the batch summary")
        assert "0 errors" in message(console)
        assert "server1 100 / server2 100 / server3 100" in message(console)
        await until(pilot, lambda: sum(r.served for r in console.rows) >= 300, 5)
        await until(pilot, lambda: len(console.query_one(RoutingView).lines) > 0, 5)
        await type_line(pilot, "somma 3 4")
        await until(pilot, lambda: "somma 3 4 = 7" in message(console), 5)


async def test_keys_kill_restart_drain_through_haproxy(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, HaproxySource)
        await pilot.press("2")
        old_pid = next(r.pid for r in console.rows if r.name == "server2")
        await pilot.press("k")
        await until(pilot, lambda: state(console, "server2") == "DOWN", 5, "server2 DOWN")
        assert old_pid is not None and not pid_alive(old_pid)
        servers = [(await source.request("somma 1 2"))["server"] for _ in range(6)]
        assert set(servers) == {"server1", "server3"}
        await pilot.press("r")
        await until(pilot, lambda: state(console, "server2") == "UP", 10, "server2 UP again")
        await type_line(pilot, "drain 3")
        await until(pilot, lambda: state(console, "server3") == "DRAINING", 3)
        servers = [(await source.request("somma 1 1"))["server"] for _ in range(4)]
        assert set(servers) == {"server1", "server2"}
        await type_line(pilot, "add")
        await until(pilot, lambda: "server4" in [r.name for r in console.rows]
                    and state(console, "server4") == "UP", 10, "server4 UP")
        pids = [r.pid for r in console.rows if r.pid]
        haproxy_pid = source.engine.process.pid
        await pilot.press("escape", "q")
        await until(pilot, lambda: not console.is_running, 15, "the app to exit")
    assert haproxy_pid is not None and not pid_alive(haproxy_pid)
    assert not [pid for pid in pids if pid_alive(pid)]


async def test_haproxy_dying_is_shown_and_restart_haproxy_brings_it_back(
        console: ConsoleApp) -> None:
    import os
    import signal

    from app.widgets.log_panel import LogPanel

    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, HaproxySource)
        old = source.engine.process.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await until(pilot, lambda: source.engine.haproxy_exit is not None, 10, "the exit seen")
        events = b"".join(source.event_lines()[1]).decode()
        assert "haproxy exited with code -9" in events and "restart haproxy" in events
        await until(pilot, lambda: console.query_one(LogPanel).line_count > 0, 5)
        await type_line(pilot, "drain 2")  # HAProxy is gone: a failure line, no crash
        await until(pilot, lambda: "drain server2 failed" in message(console), 5)
        await type_line(pilot, "restart haproxy")
        await until(pilot, lambda: "haproxy restarted" in message(console), 10)
        assert source.engine.process.pid not in (None, old)
        await until(pilot, lambda: all(state(console, n) == "UP"
                                       for n in ("server1", "server2", "server3")), 10)
        assert (await source.request("somma 2 3"))["result"] == 5


async def test_typed_algo_weight_and_settings_drive_haproxy(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, HaproxySource)
        engine = source.engine
        old = engine.process.pid
        await type_line(pilot, "algo p2c")
        await until(pilot, lambda: "p2c is not an HAProxy algorithm" in message(console), 5)
        assert engine.process.pid == old and engine.algorithm == "roundrobin"
        await type_line(pilot, "algo leastconn")
        await until(pilot, lambda: "algorithm leastconn: haproxy restarted" in message(console),
                    15, "the switch")
        assert engine.process.pid != old
        assert "balance leastconn" in engine.config_path.read_text()
        await type_line(pilot, "algo next")  # what a key cycling the algorithms sends
        await until(pilot, lambda: "algorithm random" in message(console), 15, "next")
        await type_line(pilot, "weight 2 0")
        await until(pilot, lambda: "server2 weight 0" in message(console), 5)
        stat = {r.server: r for r in await engine.api.show_stat()}
        assert stat["server2"].weight == 0
        servers = {(await source.request("somma 1 1"))["server"] for _ in range(20)}
        assert "server2" not in servers
        await type_line(pilot, "latency 3 30")
        await until(pilot, lambda: "server3: latency 30 ms" in message(console), 5)
        await type_line(pilot, "show servers")
        await until(pilot, lambda: message(console).startswith("3 servers:"), 5)

"""The console driven by a Pilot against real calculation servers on free ports."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.summary import SessionSummary
from app.widgets.command_input import CommandInput
from app.widgets.help_screen import HelpScreen
from app.widgets.log_panel import LogPanel
from app.widgets.routing import RoutingView
from app.widgets.server_table import ServerTable
from app.widgets.status import StatusBar
from tests.wire import pid_alive

SIZE = (120, 40)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[ConsoleApp]:
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2, rise=2, fall=2)
    source = LiveSource(config)
    app = ConsoleApp(source)
    try:
        yield app
    finally:
        await source.stop()
        source.kill_now()


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = 10.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def state(app: ConsoleApp, name: str) -> str:
    return str(app.query_one(ServerTable).get_cell(name, "state"))


def message(app: ConsoleApp) -> str:
    return str(app.query_one("#message").render())


async def all_up(pilot: Pilot, app: ConsoleApp) -> None:
    names = ("server1", "server2", "server3")
    await until(pilot, lambda: app.query_one(ServerTable).names == list(names)
                and all(state(app, n) == "UP" for n in names), 20, "three servers UP")


async def type_line(pilot: Pilot, line: str) -> None:
    """Type a line in the input box (focusing it with `/` first if needed)."""
    if not isinstance(pilot.app.focused, CommandInput):
        await pilot.press("slash")
    await pilot.press(*line, "enter")


async def test_servers_come_up_and_a_typed_batch_completes(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        rows = {r.name: r for r in console.rows}
        assert all(rows[n].pid and rows[n].port for n in rows)
        await type_line(pilot, "random 200")
        await until(pilot, lambda: "200 answers" in message(console), 15, "the batch summary")
        text = message(console)
        assert "0 errors" in text
        for name in ("server1", "server2", "server3"):
            assert name in text
        await until(pilot, lambda: sum(r.served for r in console.rows) >= 200)
        await until(pilot, lambda: len(console.query_one(RoutingView).lines) > 0)
        await type_line(pilot, "somma 3 4")
        await until(pilot, lambda: "somma 3 4 = 7" in message(console))
        await type_line(pilot, "hello")
        await until(pilot, lambda: "not understood" in message(console))


async def test_kill_takes_a_server_out_and_restart_brings_it_back(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, LiveSource)
        await pilot.press("2")
        assert console.query_one(ServerTable).selected == "server2"
        old_pid = next(r.pid for r in console.rows if r.name == "server2")
        await pilot.press("k")
        # Passive detection is immediate; active checks would take fall × interval.
        await until(pilot, lambda: state(console, "server2") == "DOWN", 3, "server2 DOWN")
        assert old_pid is not None and not pid_alive(old_pid)
        servers = [(await source.request("somma 1 2"))["server"] for _ in range(6)]
        assert "server2" not in servers
        assert set(servers) == {"server1", "server3"}

        await pilot.press("r")
        await until(pilot, lambda: state(console, "server2") == "UP", 10, "server2 UP again")
        new_pid = next(r.pid for r in console.rows if r.name == "server2")
        assert new_pid not in (None, old_pid)
        servers = [(await source.request("somma 1 2"))["server"] for _ in range(6)]
        assert servers.count("server2") == 2


async def test_pause_freezes_the_scrolling_panels(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, LiveSource)
        await source.request("somma 1 1")
        routing = console.query_one(RoutingView)
        log = console.query_one(LogPanel)
        await until(pilot, lambda: len(routing.lines) >= 1)
        await pilot.press("p")
        assert "PAUSED" in console.query_one(StatusBar).plain
        assert "PAUSED" in str(console.query_one("#routing-box").border_title)
        routed, logged = len(routing.lines), log.line_count
        for _ in range(5):
            await source.request("somma 2 2")
        await pilot.pause(0.4)
        assert (len(routing.lines), log.line_count) == (routed, logged)
        await pilot.press("p")
        assert "PAUSED" not in console.query_one(StatusBar).plain
        await until(pilot, lambda: len(routing.lines) >= routed + 5, 3, "routing to resume")
        assert log.line_count > logged


async def test_log_filter_shows_events_only(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        source = console.source
        assert isinstance(source, LiveSource)
        log = console.query_one(LogPanel)
        await pilot.press("l")
        assert "events only" in str(console.query_one("#log").border_title)
        for _ in range(5):
            await source.request("somma 2 2")
        await pilot.press("k")  # kill server1: an event among the requests
        await until(pilot, lambda: any("UP -> DOWN" in line for line in log.texts()), 5,
                    "the state change in the log panel")
        assert log.texts() and not any('{"id"' in line for line in log.texts())
        await pilot.press("l")
        await source.request("somma 3 3")
        await until(pilot, lambda: any('"result":6' in line for line in log.texts()), 5,
                    "request lines back in the log panel")


async def test_keys_typed_in_the_input_go_to_the_input(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        await pilot.press("slash", *"k2sradplq?")
        box = console.query_one(CommandInput)
        assert box.value == "k2sradplq?"
        assert not isinstance(console.screen, HelpScreen)
        assert not console.paused
        assert all(state(console, n) == "UP" for n in ("server1", "server2", "server3"))
        assert len(console.rows) == 3
        await pilot.press("escape")
        assert console.focused is console.query_one(ServerTable)
        await pilot.press("question_mark")
        assert isinstance(console.screen, HelpScreen)
        await pilot.press("k")  # behind the help screen: must not kill anything
        await pilot.press("escape")
        assert not isinstance(console.screen, HelpScreen)
        await pilot.pause(0.3)
        assert all(state(console, n) == "UP" for n in ("server1", "server2", "server3"))


async def test_history_walks_back_through_typed_lines(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        await type_line(pilot, "somma 1 2")
        await pilot.press(*"3 * 4", "enter")
        box = console.query_one(CommandInput)
        await pilot.press("up")
        assert box.value == "3 * 4"
        await pilot.press("up")
        assert box.value == "somma 1 2"
        await pilot.press("down", "down")
        assert box.value == ""


async def test_quit_stops_every_server_and_returns_a_summary(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        pids = [r.pid for r in console.rows]
        assert all(pids)
        await pilot.press("q")
        await until(pilot, lambda: console.return_value is not None or not console.is_running,
                    15, "the app to exit")
    summary = console.return_value
    assert isinstance(summary, SessionSummary)
    assert [r.name for r in summary.rows] == ["server1", "server2", "server3"]
    assert not [pid for pid in pids if pid is not None and pid_alive(pid)]
    assert os.getpid()  # the test process itself is untouched


async def test_click_drain_add_and_stop(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        table = console.query_one(ServerTable)
        # Row 3 of the table: border, header, then one line per server.
        await pilot.click(ServerTable, offset=(10, 4))
        assert table.selected == "server3"
        await type_line(pilot, "drain")
        await until(pilot, lambda: state(console, "server3") == "DRAINING", 3)
        source = console.source
        assert isinstance(source, LiveSource)
        servers = {(await source.request("somma 1 1"))["server"] for _ in range(4)}
        assert servers == {"server1", "server2"}
        await type_line(pilot, "drain 3")
        await until(pilot, lambda: state(console, "server3") == "UP", 3)
        await type_line(pilot, "add")
        await until(pilot, lambda: "server4" in table.names and state(console, "server4") == "UP",
                    10, "server4 UP")
        await type_line(pilot, "stop server4")
        await until(pilot, lambda: state(console, "server4") == "STOPPED", 10, "server4 STOPPED")
        await until(pilot, lambda: "server4 stopped" in message(console), 5)
        await type_line(pilot, "kill 9")
        await until(pilot, lambda: "no server 9" in message(console), 3)


async def test_command_palette_offers_the_server_actions(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        titles = {c.title for c in console.get_system_commands(console.screen)}
        assert {"Kill server", "Stop server", "Restart server", "Drain server", "Add server",
                "Pause / resume", "Help", "Quit", "Latency view", "Save screenshot here",
                "Search history"} <= titles
        assert "Screenshot" not in titles  # Textual's, which saves somewhere else
        await pilot.pause()


async def test_quit_during_a_batch_cancels_it_and_stops_everything(console: ConsoleApp) -> None:
    async with console.run_test(size=SIZE) as pilot:
        await all_up(pilot, console)
        pids = [r.pid for r in console.rows]
        await type_line(pilot, "random 50000000")
        await until(pilot, lambda: console.operator.progress is not None
                    and console.operator.progress.answered > 1000, 10, "the batch to run")
        await pilot.press("escape", "q")
        await until(pilot, lambda: not console.is_running, 15, "the app to exit")
    assert console.operator.task is not None and console.operator.task.done()
    assert not [pid for pid in pids if pid is not None and pid_alive(pid)]

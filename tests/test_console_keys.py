"""Keys as a terminal delivers them: a burst posted back to back, never one Pilot press at a time.

The driver reads stdin in a thread and posts every key it parsed to the App's
queue at once; `pilot.press` waits for the screen to settle after each key,
which hides any race between focusing the input box and the keys behind `/`.
These tests post the whole burst first and only then let the App run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual import events
from textual.command import CommandPalette
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Input

from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.widgets.command_input import CommandInput
from app.widgets.help_screen import HelpScreen
from app.widgets.server_table import ServerTable
from tests.frozen import FrozenSource, fresh_start
from tests.wire import pid_alive

SIZE = (80, 24)


def key_event(key: str) -> events.Key:
    """A Key event like the driver makes from one character or a key name."""
    if len(key) == 1:
        name = key if key.isalnum() else _character_to_key(key)
        return events.Key(name, key)
    return events.Key(key, None)


def burst(app: ConsoleApp, *keys: str) -> None:
    """Post every key to the App's queue without yielding in between, as the driver does."""
    for key in keys:
        event = key_event(key)
        event.set_sender(app)
        app.post_message(event)


async def settle(pilot: Pilot, condition: Callable[[], object] = lambda: True,
                 timeout: float = 5.0) -> None:
    await pilot.pause()
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await pilot.pause(0.02)
    await pilot.pause()


def nothing_fired(app: ConsoleApp, source: FrozenSource) -> None:
    assert source.actions == [], f"bindings fired: {source.actions}"
    assert not app.paused
    assert not isinstance(app.screen, HelpScreen)
    assert app.query_one(ServerTable).selected == "server1"
    assert app.is_running


@pytest.mark.parametrize("opener", ["/", ":"], ids=["slash", "colon"])
@pytest.mark.parametrize("line", ["kill 2", "random 1000", "restart 3 add drain 1 pause q?"])
async def test_a_burst_after_the_opener_lands_in_the_input(opener: str, line: str) -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        burst(app, opener, *line)
        box = app.query_one(CommandInput)
        await settle(pilot, lambda: box.value == line)
        assert box.value == line
        assert app.focused is box
        nothing_fired(app, source)


async def test_a_burst_with_enter_runs_the_typed_command_only() -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        burst(app, "2", "/", *"kill 3", "enter")
        await settle(pilot, lambda: source.actions)
        assert source.actions == [("kill", "server3")]
        assert app.query_one(CommandInput).value == ""


async def test_slash_inside_the_input_is_typed_not_a_focus_key() -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        burst(app, "/", *"10 / 4 : x")
        box = app.query_one(CommandInput)
        await settle(pilot, lambda: box.value == "10 / 4 : x")
        assert box.value == "10 / 4 : x"


async def test_a_burst_into_the_command_palette_lands_in_its_search_box() -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        burst(app, "ctrl+p", *"kill/: server?")

        def search() -> str:
            if not isinstance(app.screen, CommandPalette):
                return ""
            return app.screen.query_one(Input).value

        await settle(pilot, lambda: search() == "kill/: server?")
        assert isinstance(app.screen, CommandPalette)
        assert search() == "kill/: server?"
        assert source.actions == []
        burst(app, "escape")
        await settle(pilot, lambda: not isinstance(app.screen, CommandPalette))
        nothing_fired(app, source)


async def test_a_burst_behind_the_help_screen_fires_nothing() -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        burst(app, "?", *"kadr/:")
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen)
        assert source.actions == []
        assert app.query_one(CommandInput).value == ""


# ---------------------------------------------------------------- against real servers


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[ConsoleApp]:
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2, rise=2, fall=2)
    source = LiveSource(config)
    app = ConsoleApp(source)
    try:
        yield app
    finally:
        await source.stop()
        source.kill_now()


async def three_up(pilot: Pilot, app: ConsoleApp) -> LiveSource:
    source = app.source
    assert isinstance(source, LiveSource)
    await settle(pilot, lambda: len(app.rows) == 3 and all(r.state == "UP" for r in app.rows),
                 20)
    assert [r.state for r in app.rows] == ["UP"] * 3
    return source


def exit_status(source: LiveSource, name: str) -> int | None:
    return source.runtime.supervisor.servers[name].returncode


async def test_k_sigkills_the_selected_server(live: ConsoleApp) -> None:
    async with live.run_test(size=SIZE) as pilot:
        source = await three_up(pilot, live)
        pids = {r.name: r.pid for r in live.rows}
        burst(live, "3", "k")
        await settle(pilot, lambda: exit_status(source, "server3") is not None, 10)
        assert exit_status(source, "server3") == -signal.SIGKILL
        assert not pid_alive(pids["server3"])  # type: ignore[arg-type]
        assert exit_status(source, "server1") is None and pid_alive(pids["server1"])  # type: ignore[arg-type]
        assert exit_status(source, "server2") is None and pid_alive(pids["server2"])  # type: ignore[arg-type]


async def test_a_typed_kill_burst_kills_only_the_named_server(live: ConsoleApp) -> None:
    async with live.run_test(size=SIZE) as pilot:
        source = await three_up(pilot, live)
        burst(live, "/", *"kill 2", "enter")
        await settle(pilot, lambda: exit_status(source, "server2") is not None, 10)
        assert exit_status(source, "server2") == -signal.SIGKILL
        await pilot.pause(0.3)
        assert exit_status(source, "server1") is None  # `k` after `/` fired nothing
        assert [r.state for r in live.rows if r.name != "server2"] == ["UP", "UP"]
        assert live.query_one(CommandInput).value == ""

"""Habits: the input history kept between runs (↑, ctrl+r) and batch progress in the title."""

from __future__ import annotations

import asyncio
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from textual.pilot import Pilot

from app.console import ConsoleApp
from app.history import History, history_path
from app.widgets.batch_bar import window_title
from app.widgets.command_input import CommandInput
from balancer.client import BatchProgress
from tests.frozen import FrozenSource, fresh_start


def test_the_history_lives_in_the_xdg_state_folder(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert history_path({"XDG_STATE_HOME": "/s", "HOME": home}) == Path(
        "/s/lbconsole/history")
    for env in ({"HOME": home}, {"XDG_STATE_HOME": "relative/s", "HOME": home},
                {"XDG_STATE_HOME": "", "HOME": home}):
        assert history_path(env) == Path(home, ".local/state/lbconsole/history")


def test_the_history_is_kept_bounded_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "lbconsole" / "history"
    history = History(path, size=10)
    for line in ["somma 1 2", "somma 1 2", " kill 2 ", "", "random 10"]:
        history.add(line)
    assert history.entries == ["somma 1 2", "kill 2", "random 10"]
    assert History(path, size=10).entries == ["somma 1 2", "kill 2", "random 10"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for i in range(100):
        history.add(f"somma {i} 1")
    lines = path.read_text().splitlines()
    assert len(lines) <= 20  # rewritten to `size` whenever it reaches twice that
    assert History(path, size=10).entries == [f"somma {i} 1" for i in range(90, 100)]


def test_an_unwritable_history_costs_only_the_history(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    history = History(blocker / "lbconsole" / "history")  # a file where a folder should be
    history.add("somma 1 2")
    assert history.entries == ["somma 1 2"]


async def submit(pilot: Pilot, *lines: str) -> None:
    for line in lines:
        if not isinstance(pilot.app.focused, CommandInput):
            await pilot.press("slash")
        await pilot.press(*line, "enter")


def message(app: ConsoleApp) -> str:
    return str(app.query_one("#message").render())


async def test_lines_typed_in_one_run_come_back_in_the_next(tmp_path: Path) -> None:
    path = tmp_path / "history"
    first = ConsoleApp(fresh_start(), history=path)
    async with first.run_test(size=(80, 24)) as pilot:
        await submit(pilot, "kill 2", "random 1000", "somma 3 4")
        await pilot.pause()
    assert path.read_text().splitlines() == ["kill 2", "random 1000", "somma 3 4"]

    source = fresh_start()
    second = ConsoleApp(source, history=path)
    async with second.run_test(size=(80, 24)) as pilot:
        box = second.query_one(CommandInput)
        await pilot.press("slash", "up")
        assert box.value == "somma 3 4"
        await pilot.press("up", "up")
        assert box.value == "kill 2"
        await pilot.press("escape")
        box.value = ""
        await pilot.press("ctrl+r")  # from the dashboard: into the box, newest first
        assert second.focused is box and box.value == "somma 3 4"
        box.value = "ran"
        await pilot.press("ctrl+r")
        assert box.value == "random 1000"
        assert "'ran' → random 1000" in message(second)
        await pilot.press("ctrl+r")
        assert box.value == "random 1000" and "nothing older" in message(second)
        box.value = "kill"
        await pilot.press("ctrl+r", "enter")
        await pilot.pause()
        assert source.actions == [("kill", "server2")]


@dataclass
class SlowBatchSource(FrozenSource):
    """A frozen source whose batch advances only when the test says so."""

    step: asyncio.Event = field(default_factory=asyncio.Event)

    async def batch(self, count: int, progress: BatchProgress) -> BatchProgress:
        for answered in (count // 4, count // 2, count):
            await self.step.wait()
            self.step.clear()
            progress.sent = progress.answered = answered
        progress.finished = time.monotonic()
        return progress


async def test_a_running_batch_shows_its_progress_in_the_terminal_title() -> None:
    base = fresh_start()
    source = SlowBatchSource(base.server_rows, base.balancer_stats)
    app = ConsoleApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert app.terminal_title == "lbconsole 127.0.0.1:5001"
        await submit(pilot, "random 1000")
        seen = [app.terminal_title]
        for _ in range(3):
            source.step.set()
            deadline = time.monotonic() + 5
            while app.terminal_title == seen[-1] and time.monotonic() < deadline:
                await pilot.pause(0.05)
            seen.append(app.terminal_title)
        seen = seen[1:]
        assert seen[0] == "25% random 1.0k · lbconsole", seen
        assert seen[1] == "50% random 1.0k · lbconsole", seen
        assert seen[2] == "lbconsole 127.0.0.1:5001", seen


def test_window_titles() -> None:
    progress = BatchProgress(2_000_000)
    progress.answered = 500_000
    assert window_title("127.0.0.1:5001", progress) == "25% random 2.00M · lbconsole"
    progress.finished = 1.0
    assert window_title("127.0.0.1:5001", progress) == "lbconsole 127.0.0.1:5001"
    assert window_title("h:1", None) == "lbconsole h:1"

"""Screenshots of the console over frozen data: fresh start, a server killed, after a batch,
at the sizes people use (80×24 up to 160×50)."""

from __future__ import annotations

import time

import pytest
from textual.pilot import Pilot

from app.console import ConsoleApp
from tests.frozen import after_batch, fresh_start, server_killed


def test_fresh_start(snap_compare) -> None:
    assert snap_compare(ConsoleApp(fresh_start()), terminal_size=(120, 40))


def test_fresh_start_80x24(snap_compare) -> None:
    assert snap_compare(ConsoleApp(fresh_start()), terminal_size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 50)],
                         ids=["80x24", "100x30", "160x50"])
def test_server_killed_at_every_size(snap_compare, size: tuple[int, int]) -> None:
    async def select_server2(pilot: Pilot) -> None:
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(ConsoleApp(server_killed()), terminal_size=size,
                        run_before=select_server2)


def test_server_killed(snap_compare) -> None:
    async def select_server2(pilot: Pilot) -> None:
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(ConsoleApp(server_killed()), terminal_size=(120, 40),
                        run_before=select_server2)


def test_after_batch(snap_compare) -> None:
    async def run_batch(pilot: Pilot) -> None:
        await pilot.press("slash", *"random 1000", "enter")
        deadline = time.monotonic() + 5
        message = pilot.app.query_one("#message")
        while "1000 answers" not in str(message.render()) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.press("escape")
        await pilot.pause()

    assert snap_compare(ConsoleApp(after_batch()), terminal_size=(120, 40),
                        run_before=run_batch)


def test_help_screen(snap_compare) -> None:
    assert snap_compare(ConsoleApp(fresh_start()), terminal_size=(120, 40), press=["?"])


def test_latency_view_80x24(snap_compare) -> None:
    assert snap_compare(ConsoleApp(server_killed()), terminal_size=(80, 24), press=["g"])

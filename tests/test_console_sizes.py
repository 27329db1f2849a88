"""Every terminal size: which columns and keys fit, and resizing while a batch runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from app import keys
from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.widgets.footer import FOOTER_DROP_ORDER, ConsoleFooter, fit, item_width
from app.widgets.log_panel import LogPanel
from app.widgets.responses import ResponsesView
from app.widgets.routing import RoutingView
from app.widgets.server_table import (
    DROP_ORDER,
    KEYS,
    OPTIONAL,
    REASON_MIN,
    ServerTable,
    fit_columns,
    inflight_bar,
)
from tests.frozen import after_batch, fresh_start, row, server_killed


@pytest.mark.parametrize("optional", [frozenset(), frozenset({"weight"})],
                         ids=["no-weights", "weights"])
def test_columns_go_whole_and_in_the_documented_order(optional: frozenset[str]) -> None:
    every = tuple(k for k in KEYS if k not in OPTIONAL or k in optional)
    previous: tuple[str, ...] = every
    order = [key for key, _ in DROP_ORDER if key in every]
    for width in range(220, 39, -1):
        shown, reason = fit_columns(width, optional=optional)
        assert set(shown) <= set(previous), f"a column came back narrower, at {width}"
        gone = [k for k in every if k not in shown]
        assert set(gone) == set(order[:len(gone)]), f"out of order at {width}: {gone}"
        assert {"no", "name", "state", "inflight", "reason"} <= set(shown)
        if len(gone) < len(order):
            assert reason >= REASON_MIN, width
        previous = shown
    assert fit_columns(220, optional=optional)[0] == every
    assert ("weight" in fit_columns(80, optional=optional)[0]) == bool(optional)


def test_the_in_flight_bar_scales_to_the_busiest_server() -> None:
    assert inflight_bar(0, 100) == "    "
    assert inflight_bar(100, 100) == "████"
    assert inflight_bar(50, 100) == "██  "
    assert inflight_bar(1, 1000).strip() == "▏"  # any load shows
    assert len({len(inflight_bar(v, 977)) for v in range(0, 977, 7)}) == 1


def test_the_footer_keeps_help_and_quit_and_drops_the_least_important_first() -> None:
    items = [("select(1)", item_width("1-9", "select")), ("server('kill')", 7),
             ("pause", 8), ("latency", 10), ("help", 7), ("quit", 7)]
    assert fit(items, 200, palette=True) == (set(), True)
    dropped, palette = fit(items, 40, palette=True)
    assert not palette and dropped == {"latency"}
    dropped, _ = fit(items, 20, palette=True)
    assert {"help", "quit", "server('kill')"}.isdisjoint(dropped)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 40), (160, 50)])
async def test_nothing_is_cut_without_a_sign(size: tuple[int, int]) -> None:
    app = ConsoleApp(server_killed())
    async with app.run_test(size=size) as pilot:
        footer = app.query_one(ConsoleFooter)
        await until(pilot, lambda: len(footer.children) > 2
                    and all(k.region.width for k in footer.children), 5, "the footer")
        table = app.query_one(ServerTable)
        shown, reason = fit_columns(table.scrollable_content_region.width)
        assert table.shown == shown and table.reason_width == reason
        assert [str(c.label) for c in table.columns.values()][:3] == ["#", "server", "state"]
        for name in ("server1", "server3"):
            text = table.get_cell(name, "reason").plain
            assert text == "first check passed in 1.2 ms" or (
                text.endswith("…") and len(text) == reason), text
        keys = {k.key_display: k.description for k in footer.children}  # type: ignore[attr-defined]
        assert keys.get("?") == "help" and keys.get("q") == "quit", keys
        assert sum(k.region.width for k in footer.children) <= size[0]
        for key in footer.children:  # every key shown is on screen, whole
            assert key.region.width > 0 and key.region.right <= size[0], (key, key.region)
        if size[0] >= 120:
            assert {"workers", "queue", "counters", "share", "served"} <= set(table.shown)
        if size[0] >= 160:
            assert {"pid", "host", "mean"} <= set(table.shown)
            assert "k" in keys and "/" in keys


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[ConsoleApp]:
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2)
    source = LiveSource(config)
    app = ConsoleApp(source)
    try:
        yield app
    finally:
        await source.stop()
        source.kill_now()


async def until(pilot: Pilot, condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def test_resizing_while_a_batch_runs_keeps_it_going_and_keeps_the_panels(
        live: ConsoleApp) -> None:
    async with live.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(live.rows) == 3
                    and all(r.state == "UP" for r in live.rows), 20, "three servers UP")
        await pilot.press("slash", *"random 20000000", "enter")
        op = live.operator
        await until(pilot, lambda: op.progress is not None and op.progress.answered > 500, 10,
                    "the batch to start")
        routing, responses = live.query_one(RoutingView), live.query_one(ResponsesView)
        log = live.query_one(LogPanel)
        for size in [(80, 24), (160, 50), (60, 20), (100, 30), (80, 24), (120, 40)]:
            assert op.progress is not None
            before = op.progress.answered
            await pilot.resize_terminal(*size)
            await until(pilot, lambda b=before: op.progress.answered > b + 500, 10,  # type: ignore[union-attr]
                        f"the batch to go on at {size}")
            await until(pilot, lambda: live.query_one(ServerTable).row_count == 3, 2,
                        "the table's rows")
            assert len(routing.lines) > 0 and len(responses.lines) > 0 and log.line_count > 0
            assert live.query_one("#batch").has_class("-running")
        await pilot.press(*"cancel", "enter")  # the input box still has focus
        await until(pilot, lambda: not op.batch_running, 10, "the batch to stop")
        assert [r.state for r in live.rows] == ["UP"] * 3


def test_the_footer_drop_order_names_real_actions() -> None:
    actions = {binding.action for binding in keys.BINDINGS} | {"command_palette"}
    assert set(FOOTER_DROP_ORDER) <= actions, set(FOOTER_DROP_ORDER) - actions


async def test_many_servers_leave_room_for_the_scrollbar() -> None:
    source = fresh_start()
    app = ConsoleApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        table = app.query_one(ServerTable)
        wide = table.scrollable_content_region.width
        source.server_rows = [row(f"server{i}", pid=5000 + i) for i in range(1, 15)]
        await until(pilot, lambda: table.row_count == 14, 5, "14 rows")
        await until(pilot, lambda: table.scrollable_content_region.width < wide
                    and table.reason_width == fit_columns(
                        table.scrollable_content_region.width)[1], 5, "a refit")
        assert table.show_vertical_scrollbar


async def test_panel_lines_cut_at_the_edge_end_with_an_ellipsis() -> None:
    app = ConsoleApp(after_batch())
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(LogPanel)
        await until(pilot, lambda: log.line_count > 0 and log.size.width > 0, 5, "the log")
        await pilot.pause()
        shown = [log.render_line(y).text for y in range(log.size.height)]
        long = [t for t in shown if '"op"' in t]
        assert long and all(t.endswith("…") and len(t) == log.size.width for t in long), shown
        short = [t for t in shown if "closed its side" in t]
        assert short and not short[0].rstrip().endswith("…")

"""The lab in the console: algorithm on the status line and its key, the Servers table's
lab and fault columns, and the compare results screen. Pictures over frozen data; Pilot
tests over real servers on free ports."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from app import keys
from app.console import ConsoleApp
from app.formatting import fault_badges
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.widgets.compare_screen import CompareScreen, results_table
from app.widgets.help_screen import KEYS as HELP_KEYS
from app.widgets.server_table import COLUMNS, ServerTable, render
from app.widgets.status import StatusBar, status_text
from tests.frozen import compare_result, lab, row, server_killed, stats

# ---------------------------------------------------------------- pure pieces


def test_fault_badges_name_every_injected_fault_and_nothing_else() -> None:
    assert fault_badges({}) == ()
    assert fault_badges({"flaky": 0.3}) == ("flaky 30%",)
    assert fault_badges({"resets": 0.1, "blackhole": True}, speed=0.33, latency_ms=20) == (
        "resets 10%", "blackhole", "slow ×0.33", "+20 ms")
    assert fault_badges({"flaky": 0.0, "blackhole": False}, speed=2.0) == ("fast ×2",)


def test_the_last_change_cell_starts_with_the_badges() -> None:
    reason = next(c for c in COLUMNS if c.key == "reason")
    text = render(reason, (("flaky 30%",), "5 server faults in a row"), width=40)
    assert text.plain.startswith("flaky 30% 5 server faults")
    assert any("on #" in str(span.style) for span in text.spans)  # a badge, not plain text


def test_the_status_line_always_names_the_algorithm_and_counts_retries() -> None:
    rows = [row("server1")]
    quiet = stats(rows, algorithm="leastconn")
    for compact in (False, True):
        plain = status_text(quiet, servers=1, compact=compact).plain
        assert "leastconn" in plain and "retries" not in plain
        busy = status_text(stats(rows, algorithm="p2c", retries=1234, rate=123_456.0,
                                 redispatched=12, uptime=3725.0),
                           servers=1, compact=compact, paused=True)
        assert "p2c" in busy.plain and "retries" in busy.plain
        if compact:
            assert busy.cell_len <= 80, busy.plain


def test_the_cycle_key_is_in_the_footer_bindings_help_and_palette() -> None:
    binding = next(b for b in keys.BINDINGS if b.action == "next_algorithm")
    assert binding.key == "c" and binding.show
    assert "next_algorithm" in keys.MAIN_SCREEN_ACTIONS
    assert any(action == "next_algorithm" for _, _, action in keys.PALETTE)
    assert any(key == "c" and "algo next" in text for key, text in HELP_KEYS)


def test_the_results_table_has_a_row_per_algorithm_with_shares_and_errors() -> None:
    table = results_table(compare_result())
    headers = [str(c.header) for c in table.columns]
    assert headers[:6] == ["algorithm", "req/s", "p50", "p95", "p99", "max"]
    assert headers[-4:] == ["server1", "server2", "server3", "errors"]
    cells = {str(c.header): [str(x) for x in c._cells] for c in table.columns}
    assert cells["algorithm"] == ["roundrobin", "weighted", "leastconn", "p2c", "random"]
    assert cells["p99"] == ["132", "97.0", "38.4", "42.6", "140"]
    assert cells["server3"][1] == "14.3%" and cells["errors"][-1] == "3"


# ---------------------------------------------------------------- pictures


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_lab_table(snap_compare, size: tuple[int, int]) -> None:
    """Weighted, server2 flaky and EJECTED, server3 slow with a queue, edge1 remote."""
    assert snap_compare(ConsoleApp(lab()), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_compare_screen(snap_compare, size: tuple[int, int]) -> None:
    async def open_results(pilot: Pilot) -> None:
        pilot.app.show_compare(compare_result())  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(ConsoleApp(server_killed()), terminal_size=size,
                        run_before=open_results)


async def test_esc_closes_the_compare_screen_and_the_dashboard_keys_wait() -> None:
    source = server_killed()
    app = ConsoleApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        app.show_compare(compare_result())
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        await pilot.press("k")  # behind the results, the dashboard's keys do nothing
        await pilot.pause()
        assert source.actions == []
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CompareScreen)


# ---------------------------------------------------------------- live


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


def cell(app: ConsoleApp, name: str, column: str) -> str:
    return app.query_one(ServerTable).get_cell(name, column).plain


async def all_up(pilot: Pilot, app: ConsoleApp) -> None:
    names = ("server1", "server2", "server3")
    await until(pilot, lambda: app.query_one(ServerTable).names == list(names)
                and all(cell(app, n, "state") == "UP" for n in names), 20, "three servers UP")


async def test_c_cycles_the_algorithm_and_the_table_follows(console: ConsoleApp) -> None:
    async with console.run_test(size=(160, 50)) as pilot:
        await all_up(pilot, console)
        balancer = console.source.runtime.balancer  # type: ignore[attr-defined]
        status = console.query_one(StatusBar)
        table = console.query_one(ServerTable)
        assert balancer.algorithm_name == "roundrobin" and "roundrobin" in status.plain
        assert "weight" not in table.shown  # every weight 1 under roundrobin: no column
        await pilot.press("c")
        await until(pilot, lambda: "weighted" in status.plain, 5, "weighted on the status")
        assert balancer.algorithm_name == "weighted"
        await until(pilot, lambda: "weight" in table.shown, 5, "the weight column")
        await pilot.press("c")
        await until(pilot, lambda: "leastconn" in status.plain, 5, "leastconn on the status")
        assert balancer.algorithm_name == "leastconn"


async def test_a_fault_badge_appears_after_flaky_and_goes_after_heal(
        console: ConsoleApp) -> None:
    async with console.run_test(size=(160, 50)) as pilot:
        await all_up(pilot, console)
        await pilot.press("slash", *"flaky 2 30%", "enter")
        await until(pilot, lambda: cell(console, "server2", "reason").startswith("flaky 30%"),
                    10, "the flaky badge on server2")
        assert "flaky" not in cell(console, "server1", "reason")
        await pilot.press(*"speed 3 0.5", "enter")
        await until(pilot, lambda: cell(console, "server3", "reason").startswith("slow ×0.5"),
                    10, "the slow badge on server3")
        assert cell(console, "server3", "workers") == "∞ ×0.5"
        await pilot.press(*"heal 2", "enter")
        await until(pilot, lambda: "flaky" not in cell(console, "server2", "reason"),
                    10, "the badge gone after heal")


async def test_compare_typed_in_the_console_opens_its_results(console: ConsoleApp) -> None:
    async with console.run_test(size=(120, 40)) as pilot:
        await all_up(pilot, console)
        await pilot.press("slash", *"compare roundrobin,leastconn 300", "enter")
        await until(pilot, lambda: isinstance(console.screen, CompareScreen), 60,
                    "the compare screen")
        screen = console.screen
        assert isinstance(screen, CompareScreen)
        assert list(screen.data["results"]) == ["roundrobin", "leastconn"]
        assert all(r["answered"] == 300 for r in screen.data["results"].values())
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(console.screen, CompareScreen), 5,
                    "the dashboard back")

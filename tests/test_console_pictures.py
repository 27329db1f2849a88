"""Pictures: the latency view (its history, the `g` toggle, the chart) and screenshots."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from textual.command import CommandPalette
from textual.pilot import Pilot
from textual_plotext import PlotextPlot

from app.console import ConsoleApp
from app.formatting import server_colour
from app.runtime import RuntimeConfig
from app.source import LatencyHistory, LiveSource
from app.widgets.latency import LatencyChart, rgb
from tests.frozen import backend, server_killed, stats


def sample(p50: float | None, p99: float | None, *names: str):  # type: ignore[no-untyped-def]
    return stats([], backends=tuple(backend(n, p50, p99) for n in names))


def test_one_sample_a_second_for_the_last_minute() -> None:
    history = LatencyHistory(seconds=60)
    assert history.series() == {}
    assert history.record(100.0, sample(0.5, 2.0, "server1", "server2"))
    assert not history.record(100.9, sample(9.0, 9.0, "server1", "server2"))
    assert history.record(101.0, sample(0.6, None, "server1", "server2"))
    assert history.version == 2
    series = history.series()
    assert series["server1"] == [(-1.0, 0.5, 2.0), (0.0, 0.6, None)]
    for second in range(2, 200):
        history.record(100.0 + second, sample(float(second), 1.0, "server1"))
    series = history.series()
    assert len(series["server1"]) == 61
    assert series["server1"][0][0] == -60.0 and series["server1"][-1] == (0.0, 199.0, 1.0)
    assert "server2" not in series  # gone for longer than the window


def test_a_server_that_is_down_has_no_latency_points() -> None:
    history = LatencyHistory()
    down = stats([], backends=(backend("server1", 0.5, 2.0),
                               replace(backend("server2", 0.7, 3.0), state="DOWN")))
    history.record(0.0, down)
    assert history.series() == {"server1": [(0.0, 0.5, 2.0)], "server2": [(0.0, None, None)]}


def test_a_server_added_later_joins_the_chart() -> None:
    history = LatencyHistory()
    history.record(0.0, sample(0.5, 1.0, "server1"))
    history.record(1.0, sample(0.5, 1.0, "server1", "server4"))
    assert list(history.series()) == ["server1", "server4"]
    assert history.series()["server4"] == [(0.0, 0.5, 1.0)]


async def wait_for(pilot: Pilot, condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await pilot.pause(0.05)


async def test_g_swaps_the_panels_for_the_chart_and_back() -> None:
    app = ConsoleApp(server_killed())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        chart = app.query_one(LatencyChart)
        assert not chart.display and app.query_one("#log").display
        await pilot.press("g")
        await wait_for(pilot, lambda: chart.names)
        assert chart.display and not app.query_one("#log").display
        assert not app.query_one("#middle").display
        assert chart.names == ["server1", "server2", "server3"]
        plot = app.query_one(PlotextPlot)
        assert plot.size.height >= 10, plot.size  # readable at 80x24
        drawn = plot.plt.build()
        for name in chart.names:
            r, g, b = rgb(server_colour(name))
            assert f"38;2;{r};{g};{b}m" in drawn, f"no line for {name}"
        await pilot.press("g")
        await pilot.pause()
        assert not chart.display and app.query_one("#log").display


async def test_the_latency_view_is_in_the_palette() -> None:
    app = ConsoleApp(server_killed())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"latency view")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.has_class("-latency"))
        assert app.has_class("-latency")


async def test_ctrl_s_saves_an_svg_in_the_working_folder_and_says_where(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    app = ConsoleApp(server_killed())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: list(tmp_path.glob("*.svg")))
        [saved] = list(tmp_path.glob("*.svg"))
        svg = saved.read_text()
        assert svg.startswith("<svg") and "Servers" in svg and "server2" in svg
        notes = [n.message for n in app._notifications]
        assert any(str(saved.resolve()) in note for note in notes), notes
        assert str(saved.resolve()) in str(app.query_one("#message").render())


async def test_the_live_source_keeps_a_latency_point_a_second(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = LiveSource(RuntimeConfig(port=0, log_file=str(tmp_path / "lb.log"),
                                      check_interval=0.2))
    try:
        await source.start()
        assert await source.runtime.wait_until_up(timeout=20)
        for _ in range(6):
            await source.request("somma 1 2")
        history = source.latency(source.stats())
        first = history.version
        deadline = time.monotonic() + 5
        while history.version < first + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            source.latency(source.stats())
        assert history.version >= first + 2  # one sample a second, not one a call
        series = history.series()
        assert sorted(series) == ["server1", "server2", "server3"]
        for points in series.values():
            assert len(points) >= 2 and all(p50 is not None and p99 is not None
                                            and p50 <= p99 for _, p50, p99 in points)
    finally:
        await source.stop()
        source.kill_now()

"""The results of `compare` typed in the console: one row per algorithm and a latency chart.

The dispatcher's `compare` reply carries the whole table in `reply.data`
(`app.control.compare.compare_data`); this screen only draws it. The chart
shows each algorithm's latency distribution as its p50, p95, p99 and max side
by side (the reply holds those, not every latency), drawn by textual-plotext
like the latency view. Esc (or q) closes it and the dashboard carries on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual_plotext import PlotextPlot

from app.formatting import ms, server_colour
from app.widgets.latency import rgb

ALGORITHM_COLOURS: dict[str, str] = {
    "roundrobin": "#5fafff", "weighted": "#ffd75f", "leastconn": "#87d75f",
    "p2c": "#d787ff", "random": "#ff87af",
}
POINTS: tuple[tuple[str, str], ...] = (
    ("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"), ("max", "max_ms"))


def algorithm_colour(name: str) -> str:
    return ALGORITHM_COLOURS.get(name, "#afaf87")


def _ms(value: object) -> str:
    return ms(float(value)) if isinstance(value, int | float) else "-"


def results_table(data: dict[str, Any]) -> Table:
    """Throughput, p50/p95/p99/max, each server's share and the errors, per algorithm."""
    results: dict[str, dict[str, Any]] = data.get("results") or {}
    servers = sorted({s for r in results.values() for s in (r.get("shares") or {})})
    # Gaps on the right only, and latencies to three digits: at 80 columns five
    # algorithms and three servers fit without an ellipsis.
    table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold", expand=False,
                  collapse_padding=True)
    table.add_column("algorithm", no_wrap=True)
    table.add_column("req/s", justify="right", no_wrap=True)
    for label, _ in POINTS:
        table.add_column(label, justify="right", no_wrap=True)
    for server in servers:
        table.add_column(Text(server, style=f"bold {server_colour(server)}"), justify="right",
                         no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    best = min((r.get("p99_ms") for r in results.values()
                if isinstance(r.get("p99_ms"), int | float)), default=None)
    for name, r in results.items():
        shares = r.get("shares") or {}
        errors = int(r.get("errors") or 0)
        failure = r.get("failure")
        p99 = r.get("p99_ms")
        table.add_row(
            Text(name, style=f"bold {algorithm_colour(name)}"),
            f"{float(r.get('rate') or 0):,.0f}",
            *(Text(_ms(r.get(key)), style="bold #5fd75f" if key == "p99_ms" and p99 == best
                   and len(results) > 1 else "") for _, key in POINTS),
            *(f"{float(shares.get(s, 0)) * 100:.1f}%" for s in servers),
            Text(f"{errors:,}" + (f" ({failure})" if failure else ""),
                 style="bold #ff5f5f" if errors or failure else ""),
        )
    return table


def heading(data: dict[str, Any]) -> Text:
    """`20,000 requests each · latency in ms · work 0-20 · 64 in flight · seed 1`."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{int(data.get('count') or 0):,} requests each", style="bold")
    text.append(" · latency in ms")
    if data.get("work"):
        text.append(f" · work {data['work']}")
    if data.get("concurrency"):
        text.append(f" · {data['concurrency']} in flight")
    text.append(f" · seed {data.get('seed', 1)}", style="dim")
    return text


class CompareScreen(ModalScreen[None]):
    """`compare`'s results over the dashboard; Esc or q closes it."""

    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > #compare-box {
        width: 100%; max-width: 132; height: 100%; max-height: 40;
        border: round $accent; background: $surface; padding: 0 1;
        border-title-style: bold; border-subtitle-color: $text-muted;
    }
    CompareScreen #compare-heading { height: 1; }
    CompareScreen #compare-table { height: auto; margin-bottom: 1; }
    CompareScreen PlotextPlot { height: 1fr; min-height: 6; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "close"),
        Binding("q", "dismiss", "close", show=False),
    ]

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data
        """The `compare` reply's data, as `app.control.compare.compare_data` makes it."""

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box") as box:
            box.border_title = "compare: the same batch under each algorithm"
            box.border_subtitle = "Esc to close"
            yield Static(heading(self.data), id="compare-heading")
            yield Static(results_table(self.data), id="compare-table")
            yield PlotextPlot(id="compare-chart")

    def on_mount(self) -> None:
        self.draw()

    def draw(self) -> None:
        """Grouped bars: for p50, p95, p99 and max, one bar per algorithm (ms)."""
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        results: dict[str, dict[str, Any]] = self.data.get("results") or {}
        names = list(results)
        values = [[float(results[n].get(key) or 0.0) for _, key in POINTS] for n in names]
        if names:
            plt.multiple_bar([label for label, _ in POINTS], values, labels=names,
                             color=[rgb(algorithm_colour(n)) for n in names])
        plt.title("latency distribution per algorithm (ms)")
        plot.refresh()

"""The latency view (`g`): per server, p50 and p99 over the last minute, as a line chart.

Drawn by textual-plotext, the maintained Plotext wrapper, instead of by hand.
The chart is rebuilt only when a new per-second sample arrives and only while
it is on screen; the samples themselves are kept by the source
(`LatencyHistory`), so the view has the last minute the moment it opens.
"""

from __future__ import annotations

from rich.color import Color as RichColor
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from app.formatting import server_colour
from app.source import LatencyHistory

P50_MARKER = "hd"
P99_MARKER = "braille"


def rgb(colour: str) -> tuple[int, int, int]:
    triplet = RichColor.parse(colour).get_truecolor()
    return triplet.red, triplet.green, triplet.blue


def legend(names: list[str]) -> Text:
    """`▀▀ p50  ⠉⠉ p99   server1 server2 server3`, each server in its colour."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("▀▀", style="bold")
    text.append(" p50  ")
    text.append("⠉⠉", style="bold")
    text.append(" p99 (ms, each second)  ")
    for name in names:
        text.append(f" {name}", style=f"bold {server_colour(name)}")
    if not names:
        text.append("  no samples yet", style="dim")
    return text


class LatencyChart(Vertical):
    """A legend line over a Plotext chart; `show` is cheap when nothing new arrived."""

    DEFAULT_CSS = """
    LatencyChart { height: 1fr; }
    LatencyChart > #latency-legend { height: 1; padding: 0 1; }
    LatencyChart > PlotextPlot { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.version = -1
        """The `LatencyHistory.version` drawn last."""
        self.names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(legend([]), id="latency-legend")
        yield PlotextPlot(id="latency-plot")

    def show(self, history: LatencyHistory) -> None:
        """Redraw from `history` if it has a sample this chart has not drawn (and is shown)."""
        if history.version == self.version or not self.display:
            return
        self.version = history.version
        series = history.series()
        self.names = list(series)
        self.query_one("#latency-legend", Static).update(legend(self.names))
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.xlim(-history.seconds, 0)
        plt.ylim(0, None)
        plt.xlabel("seconds ago")
        for name, points in series.items():
            colour = rgb(server_colour(name))
            for index, marker in ((1, P50_MARKER), (2, P99_MARKER)):
                xs = [p[0] for p in points if p[index] is not None]
                ys = [p[index] for p in points if p[index] is not None]
                if xs:
                    plt.plot(xs, ys, color=colour, marker=marker)
        plot.refresh()

"""Per-server throughput over the last minute: one sparkline per server, on one scale."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.formatting import server_colour, short_count

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: tuple[int, ...], width: int, peak: int) -> str:
    """The last `width` values as bars (right-aligned), scaled so `peak` is a full bar;
    any traffic at all shows above the baseline."""
    shown = values[-width:] if width > 0 else ()
    top = len(BARS) - 1
    bars = [
        BARS[max(1, min(top, round(v / peak * top)))] if v > 0 and peak > 0 else BARS[0]
        for v in shown
    ]
    return " " * (width - len(shown)) + "".join(bars)


class ThroughputChart(Widget, can_focus=False):
    """`server1 ▁▂▅▇█▇  12.3k/s`: answers per second, oldest left, one shared scale."""

    DEFAULT_CSS = """
    ThroughputChart { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.series: list[tuple[str, tuple[int, ...]]] = []

    def show(self, series: list[tuple[str, tuple[int, ...]]]) -> None:
        """(server, answers per second oldest first) for each server; redraws if changed."""
        if series == self.series:
            return
        relayout = len(series) != len(self.series)
        self.series = series
        self.refresh(layout=relayout)

    def get_content_height(self, container, viewport, width) -> int:  # type: ignore[no-untyped-def]
        return max(1, len(self.series))

    def render(self) -> Text:
        if not self.series:
            return Text("no servers yet", style="dim")
        width = self.size.width
        name_width = max(len(name) for name, _ in self.series)
        bars = max(0, width - name_width - 10)
        peak = max((max(values, default=0) for _, values in self.series), default=0)
        text = Text(no_wrap=True, overflow="crop")
        for index, (name, values) in enumerate(self.series):
            colour = server_colour(name)
            if index:
                text.append("\n")
            text.append(f"{name:<{name_width}} ", style=f"bold {colour}")
            text.append(sparkline(values, bars, peak), style=colour)
            now = values[-1] if values else 0
            text.append(f" {short_count(now):>6}/s", style="dim")
        return text

"""The log panel: the lines written to loadbalancer.log, as they are flushed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from rich.style import Style
from textual.strip import Strip

from app.widgets.tail_view import TailView

STAMP = Style(dim=True)
STAMP_WIDTH = len("2026-11-27 19:30:41.123 ")


class LogPanel(TailView, can_focus=True):
    """Fed once per tick with only the lines flushed since the previous tick.

    A TailView, like the routing and responses panels: its scroll area is as tall
    as `max_lines` from the start, so a tick that adds lines repaints this panel
    only. (Textual's `Log` grows its virtual size with each write until it is
    full, and every growth lays out the whole screen: 7 ms a tick here, a fifth
    of the console's cost per request in its first seconds under load.)
    """

    PER_TICK = 30
    """Lines written per tick at most; when more arrived, a marker says how many were
    skipped (they are all in the file)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=500, id=id, classes=classes)
        self.seen = 0
        self.events_only = False
        """Show only events (connections, states, actions), not one line per request."""

    @property
    def line_count(self) -> int:
        return len(self.lines)

    def texts(self) -> list[str]:
        """The lines shown, as plain text."""
        return [strip.text for strip in self.lines]

    def set_events_only(self, events_only: bool) -> None:
        """Switch what the panel follows; it starts again from the latest lines."""
        self.events_only = events_only
        self.seen = 0
        self.clear()

    def show(self, total: int, recent: Sequence[bytes]) -> None:
        """`total` lines were flushed so far; the new ones are the tail of `recent`."""
        new = total - self.seen
        if new <= 0:
            return
        self.seen = total
        take = min(new, len(recent), self.PER_TICK)
        strips = [self.line(raw.decode("utf-8", "replace").rstrip("\n"))
                  for raw in islice(recent, len(recent) - take, None)]
        if new > take:
            strips.insert(0, self.strip((f"… {new - take:,} more lines (all in the log file)",
                                         STAMP)))
        self.append(strips)

    @classmethod
    def line(cls, text: str) -> Strip:
        """A log line, its timestamp dimmed."""
        if text[:4].isdigit():
            return cls.strip((text[:STAMP_WIDTH], STAMP), (text[STAMP_WIDTH:], None))
        return cls.strip((text, None))

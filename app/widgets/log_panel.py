"""The log panel: the lines written to loadbalancer.log, as they are flushed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from textual.widgets import Log

from app.widgets.tail_view import Following


class LogPanel(Following, Log):
    """A `Log` fed once per tick with only the lines flushed since the previous tick."""

    PER_TICK = 30
    """Lines written per tick at most; when more arrived, a marker says how many were
    skipped (they are all in the file)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=500, auto_scroll=False, id=id, classes=classes)
        self.seen = 0
        self.events_only = False
        """Show only events (connections, states, actions), not one line per request."""

    def set_events_only(self, events_only: bool) -> None:
        """Switch what the panel follows; it starts again from the latest lines."""
        self.events_only = events_only
        self.seen = 0
        self.clear()

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """Skip Log's background measure of the widest line.

        Log starts a thread worker on every write to find the widest line, then
        calls back into the app: at ten writes a second that doubles the screen
        updates. This panel never scrolls sideways (overflow-x is hidden), so the
        width it would find is not needed.
        """

    def show(self, total: int, recent: Sequence[bytes]) -> None:
        """`total` lines were flushed so far; the new ones are the tail of `recent`."""
        new = total - self.seen
        if new <= 0:
            return
        self.seen = total
        take = min(new, len(recent), self.PER_TICK)
        lines = [raw.decode("utf-8", "replace").rstrip("\n")
                 for raw in islice(recent, len(recent) - take, None)]
        if new > take:
            lines.insert(0, f"… {new - take:,} more lines (all in the log file)")
        self.write_lines(lines, scroll_end=False)
        self.follow_end()


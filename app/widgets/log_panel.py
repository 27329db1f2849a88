"""The log panel: the lines written to loadbalancer.log, as they are flushed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from textual.widgets import Log

from app.widgets.tail_view import Following


class LogPanel(Following, Log):
    """A `Log` fed once per tick with only the lines flushed since the previous tick."""

    PER_TICK = 200
    """Lines written per tick at most; when more arrived, a marker says how many were
    skipped (they are all in the file)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=1000, auto_scroll=False, id=id, classes=classes)
        self.seen = 0

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


"""A scrolling list of pre-rendered lines that only ever grows at the end.

The routing and responses panels append a handful of lines per UI tick and
show the latest ones; this Line API widget keeps at most `max_lines` ready-made
strips and renders only the rows on screen, so appending costs nothing more
than building the new strips. It follows the end unless the operator has
scrolled up (or the console is paused), like a terminal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

T = TypeVar("T")
MORE = Style(color="#8a8a8a", bold=True)
"""The `…` that ends a line cut at the panel's edge."""


def newer_than(items: Sequence[T], last: Any, limit: int) -> list[T]:
    """The items after `last` (compared by identity) at the end of a bounded deque, oldest
    first, at most `limit` of them: what arrived since the previous tick."""
    found: list[T] = []
    for item in reversed(items):
        if item is last or len(found) >= limit:
            break
        found.append(item)
    found.reverse()
    return found


class Following:
    """Mixin for a scroll view that keeps its last line in view until the operator
    scrolls up, and again once they scroll back to the end.

    Textual's own check (`is_vertical_scroll_end` before each write) loses track
    when lines arrive faster than layout settles; a flag changed only by the
    operator's scrolling does not.
    """

    follow: bool = True
    _following_scroll: bool = False

    def follow_end(self) -> None:
        if not self.follow:
            return
        self._following_scroll = True
        try:
            # force: the scrollbar may not exist yet (it appears on the next layout).
            self.scroll_end(  # type: ignore[attr-defined]
                animate=False, immediate=True, x_axis=False, force=True)
        finally:
            self._following_scroll = False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)  # type: ignore[misc]
        if not self._following_scroll:
            self.follow = new_value >= self.max_scroll_y - 1  # type: ignore[attr-defined]


class TailView(Following, ScrollView, can_focus=False):
    """Lines of styled text; `append` adds some at the end and follows them.

    The lines sit at the bottom of a scroll area as tall as `max_lines` from the
    start (newest last, like a terminal): its size never changes as lines arrive,
    so appending repaints this panel only instead of laying out the whole screen.
    """

    DEFAULT_CSS = """
    TailView {
        overflow-x: hidden;
        overflow-y: auto;
    }
    """

    def __init__(self, max_lines: int = 500, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.capacity = max_lines
        self.lines: deque[Strip] = deque(maxlen=max_lines)

    @staticmethod
    def strip(*parts: tuple[str, Style | None]) -> Strip:
        """One line from (text, style) pieces."""
        return Strip([Segment(text, style) for text, style in parts if text])

    def append(self, strips: Iterable[Strip]) -> None:
        """Add lines at the end; follow them unless the operator scrolled up."""
        before = len(self.lines)
        self.lines.extend(strips)
        if len(self.lines) == before and before < self.capacity:
            return
        self.follow_end()
        self.refresh()

    def clear(self) -> None:
        self.lines.clear()
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(max(1, self.size.width), self.capacity)
        self.follow_end()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y - (self.capacity - len(self.lines))
        width = self.size.width
        style = self.rich_style
        if not 0 <= index < len(self.lines):
            return Strip.blank(width, style)
        line = self.lines[index].apply_style(style)
        if line.cell_length > scroll_x + width > scroll_x + 1:
            # Cut at the right edge: say so, as a terminal pager would.
            cut = line.crop(scroll_x, scroll_x + width - 1)
            return Strip.join([cut, Strip([Segment("…", style + MORE)])])
        return line.crop_extend(scroll_x, scroll_x + width, style)

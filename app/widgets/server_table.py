"""The servers panel: one keyed row per server, updated cell by cell, fitted to its width.

The table never cuts a column in the middle. When the panel is too narrow for
every column, whole columns go, least important first (`DROP_ORDER`); the
`last change` column takes what is left and ends with `…` when its text is
longer. A resize that changes which columns fit rebuilds the columns once from
the values the table already holds; ticks only ever update cells.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from app.formatting import STATE_STYLES, count, fault_badges, ms, server_colour, short_count
from app.runtime import ServerRow

BAR_CELLS = 4
EIGHTHS = " ▏▎▍▌▋▊▉█"
TRACK = "·"
"""The empty part of an in-flight bar (spaces would be trimmed off the cell)."""
REASON_MIN = 14
"""The `last change` column is kept at least this wide; columns go before it gets narrower."""


@dataclass(frozen=True)
class Line:
    """What one row's cells are made from."""

    row: ServerRow
    index: int
    p50_ms: float | None
    inflight_peak: int
    """The largest in-flight count of any server now: the in-flight bars' full scale."""


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None
    """None: the `last change` column, which takes the room left."""
    right: bool
    cell: Callable[[Line], object]
    """The cell's raw value (compared between ticks); `render` turns it into text."""
    counter: bool = False
    """Changes on every tick under load: may be refreshed less often (see `show`)."""


def _share(line: Line) -> str:
    r = line.row
    return f"{r.share * 100:.0f}%" if r.served or r.errors else "-"


def inflight_bar(value: int, peak: int, cells: int = BAR_CELLS) -> str:
    """`█▌  `: `value` against `peak` in eighths of a cell; any load at all shows a sliver."""
    if value <= 0 or peak <= 0:
        return " " * cells
    eighths = max(1, round(min(1.0, value / peak) * cells * 8))
    whole, part = divmod(eighths, 8)
    return ("█" * whole + (EIGHTHS[part] if part else "")).ljust(cells)


def _workers(line: Line) -> str:
    r = line.row
    text = "∞" if r.workers is None else count(r.workers)
    return text + (f" ×{r.speed:.2g}" if r.speed != 1.0 else "")


def _counters(line: Line) -> str:
    r = line.row
    if not (r.faults or r.retries or r.ejections):
        return "-"
    return f"{short_count(r.faults)}/{short_count(r.retries)}/{r.ejections}"


COLUMNS: tuple[Column, ...] = (
    Column("no", "#", 2, False, lambda x: (x.index, x.row.is_next), counter=True),
    Column("name", "server", 8, False, lambda x: x.row.name),
    Column("state", "state", 8, False, lambda x: x.row.state),
    Column("weight", "wt", 3, True, lambda x: x.row.weight),
    Column("served", "served", 9, True, lambda x: count(x.row.served), counter=True),
    Column("inflight", "in flight", 5 + 1 + BAR_CELLS, True,
           lambda x: (count(x.row.inflight), inflight_bar(x.row.inflight, x.inflight_peak)),
           counter=True),
    Column("workers", "workers", 7, True, _workers),
    Column("queue", "queue", 5, True, lambda x: count(x.row.queued), counter=True),
    Column("errors", "err", 4, True, lambda x: count(x.row.errors)),
    Column("counters", "flt/rty/ej", 10, True, _counters),
    Column("resent", "re-sent", 7, True, lambda x: count(x.row.redispatched)),
    Column("mean", "mean ms", 7, True, lambda x: ms(x.row.mean_ms), counter=True),
    Column("p50", "p50 ms", 6, True, lambda x: ms(x.p50_ms), counter=True),
    Column("p99", "p99 ms", 6, True, lambda x: ms(x.row.p99_ms), counter=True),
    Column("share", "share", 5, True, _share, counter=True),
    Column("pid", "pid", 7, True, lambda x: str(x.row.pid) if x.row.pid else "-"),
    Column("host", "host", 15, False, lambda x: (x.row.host or "-", x.row.remote)),
    Column("port", "port", 5, True, lambda x: str(x.row.port) if x.row.port else "-"),
    Column("reason", "last change", None, False,
           lambda x: (fault_badges(x.row.injected, x.row.speed, x.row.latency_ms),
                      x.row.reason)),
)
KEYS = tuple(c.key for c in COLUMNS)

OPTIONAL = frozenset({"weight"})
"""Columns shown only when they say something: weights when one is not 1 or the
algorithm is `weighted` (see `wants_weight`)."""

DROP_ORDER: tuple[tuple[str, int], ...] = (
    ("resent", 28), ("p50", 28), ("port", 22), ("pid", 22), ("host", 22),
    ("mean", REASON_MIN), ("served", REASON_MIN), ("counters", REASON_MIN),
    ("queue", REASON_MIN), ("workers", REASON_MIN), ("share", REASON_MIN),
    ("errors", REASON_MIN), ("weight", REASON_MIN), ("p99", REASON_MIN),
)
"""Columns that go when the panel is narrow, first to last, each while `last change`
would be narrower than the width beside it. Never dropped: #, server, state, in flight
(with its bar) and last change, which starts with the fault badges."""


def wants_weight(rows: list[ServerRow], algorithm: str) -> bool:
    return algorithm == "weighted" or any(r.weight != 1 for r in rows)


def fit_columns(width: int, padding: int = 1,
                optional: frozenset[str] | set[str] = frozenset()) -> tuple[tuple[str, ...], int]:
    """The columns that fit in `width` cells (in table order) and the width left for the
    `last change` column, dropping columns in `DROP_ORDER` while it has too little room.
    `optional`: the columns of `OPTIONAL` wanted now (the others are not shown at all)."""
    shown = set(KEYS) - (OPTIONAL - set(optional))

    def fixed() -> int:
        return sum((c.width or 0) + 2 * padding for c in COLUMNS
                   if c.key in shown and c.width is not None)

    for key, room in DROP_ORDER:
        if key in shown and width - fixed() - 2 * padding < room:
            shown.discard(key)
    reason = max(1, width - fixed() - 2 * padding)
    return tuple(k for k in KEYS if k in shown), reason


BADGE_STYLE = "bold #000000 on #ff875f"
def render(column: Column, raw: object, width: int = 0) -> Text:
    if column.key == "no":
        index, is_next = raw  # type: ignore[misc]
        return Text.assemble(("▶" if is_next else " ", "bold #ffd75f"), f"{index}")
    if column.key == "name":
        return Text(str(raw), style=f"bold {server_colour(str(raw))}")
    if column.key == "state":
        return Text(str(raw), style=STATE_STYLES.get(str(raw), ""))
    if column.key == "errors" and raw != "0":
        return Text(str(raw), style="bold #ff5f5f", justify="right")
    if column.key == "inflight":
        number, bar = raw  # type: ignore[misc]
        filled = bar.rstrip()
        return Text.assemble((f"{number:>5} ", ""), (filled, "#ffaf5f"),
                             (TRACK * (len(bar) - len(filled)), "#4e4e4e"), justify="right")
    if column.key == "weight":
        weight = int(raw)  # type: ignore[call-overload]
        return Text(str(weight), justify="right",
                    style="bold #ff5f5f" if weight == 0 else "bold" if weight != 1 else "")
    if column.key == "queue" and raw != "0":
        return Text(str(raw), style="bold #ffaf5f", justify="right")
    if column.key == "counters" and raw != "-":
        return Text(str(raw), style="bold #ff875f", justify="right")
    if column.key == "host":
        host, remote = raw  # type: ignore[misc]
        text = Text.assemble(("⇄ ", "bold #5fd7d7") if remote else "", host, no_wrap=True)
        text.truncate(column.width or 1, overflow="ellipsis")
        return text
    if column.key == "reason":
        badges, reason = raw  # type: ignore[misc]
        text = Text(no_wrap=True)
        for badge in badges:
            text.append(badge, style=BADGE_STYLE)
            text.append(" ")
        text.append(str(reason))
        text.truncate(max(1, width), overflow="ellipsis")
        return text
    return Text(str(raw), justify="right" if column.right else "left")


class ServerTable(DataTable):
    """Servers in balancer order; the cursor row is the selected server."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[object, ...]] = {}
        self.shown: tuple[str, ...] = ()
        """The keys of the columns on screen, in order."""
        self.reason_width = 0
        self.optional: frozenset[str] = frozenset()
        """The optional columns wanted now (see `OPTIONAL`)."""
        self._fit(120)

    # ------------------------------------------------------------ columns

    def _fit(self, width: int) -> bool:
        """Choose the columns for `width`; rebuild the table if they changed."""
        self._width = width
        shown, reason = fit_columns(width, self.cell_padding, self.optional)
        if (shown, reason) == (self.shown, self.reason_width):
            return False
        selected = self.selected
        self.shown, self.reason_width = shown, reason
        self.clear(columns=True)
        for column in COLUMNS:
            if column.key in shown:
                self.add_column(column.label, key=column.key,
                                width=column.width if column.width is not None else reason)
        for name, raw in self._cells.items():
            self.add_row(*self._render_row(raw), key=name)
        if selected is not None:
            self.select_name(selected)
        return True

    def _render_row(self, raw: tuple[object, ...]) -> list[Text]:
        return [render(c, v, self.reason_width)
                for c, v in zip(COLUMNS, raw, strict=True) if c.key in self.shown]

    def on_resize(self, event: events.Resize) -> None:
        self._fit(self.scrollable_content_region.width or event.size.width)

    # ------------------------------------------------------------ selection

    @property
    def names(self) -> list[str]:
        return list(self._cells)

    @property
    def selected(self) -> str | None:
        """The server under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return row_key.value

    def select_index(self, index: int) -> str | None:
        """Put the cursor on the 0-based row `index`; the server selected, or None."""
        if 0 <= index < self.row_count:
            self.move_cursor(row=index)
            return self.selected
        return None

    def select_name(self, name: str) -> None:
        if name in self._cells:
            self.move_cursor(row=self.get_row_index(name))

    # ------------------------------------------------------------ updates

    def show(self, rows: list[ServerRow], *, counters: bool = True,
             p50: Mapping[str, float | None] | None = None,
             algorithm: str = "roundrobin") -> None:
        """Bring the table up to date: changed cells only; rows added or removed.

        With `counters=False` the busy columns (served, in flight, latency, share)
        keep their old values until a later call: any `update_cell` makes DataTable
        render every cell again, which under load is its main cost, while states,
        errors and the next-server marker must show at once.
        """
        p50 = p50 or {}
        optional = frozenset({"weight"} if wants_weight(rows, algorithm) else ())
        if optional != self.optional:
            self.optional = optional
            self._fit(self._width)
        peak = max((r.inflight for r in rows), default=0)
        present = {row.name for row in rows}
        for name in [n for n in self._cells if n not in present]:
            self.remove_row(name)
            del self._cells[name]
        for index, row in enumerate(rows, start=1):
            line = Line(row, index, p50.get(row.name), peak)
            raw = tuple(column.cell(line) for column in COLUMNS)
            old = self._cells.get(row.name)
            if old is None:
                self.add_row(*self._render_row(raw), key=row.name)
                self._cells[row.name] = raw
            elif old != raw:
                kept = []
                for column, before, after in zip(COLUMNS, old, raw, strict=True):
                    if before == after or (column.counter and not counters):
                        kept.append(before)
                        continue
                    kept.append(after)
                    if column.key in self.shown:
                        self.update_cell(row.name, column.key,
                                         render(column, after, self.reason_width))
                self._cells[row.name] = tuple(kept)

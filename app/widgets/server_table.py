"""The servers panel: one keyed row per server, updated cell by cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from app.formatting import STATE_STYLES, count, ms, server_colour
from app.runtime import ServerRow


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None
    """None: as wide as the content."""
    right: bool
    cell: Callable[[ServerRow, int], object]
    """The cell's raw value (compared between ticks); `render` turns it into text."""
    counter: bool = False
    """Changes on every tick under load: may be refreshed less often (see `show`)."""


def _share(row: ServerRow, _: int) -> str:
    return f"{row.share * 100:.0f}%" if row.served or row.errors else "-"


COLUMNS: tuple[Column, ...] = (
    Column("no", "#", 2, False, lambda r, i: (i, r.is_next), counter=True),
    Column("name", "server", 8, False, lambda r, i: r.name),
    Column("state", "state", 8, False, lambda r, i: r.state),
    Column("served", "served", 9, True, lambda r, i: count(r.served), counter=True),
    Column("inflight", "infl", 5, True, lambda r, i: count(r.inflight), counter=True),
    Column("errors", "err", 4, True, lambda r, i: count(r.errors)),
    Column("mean", "mean ms", 7, True, lambda r, i: ms(r.mean_ms), counter=True),
    Column("p99", "p99 ms", 6, True, lambda r, i: ms(r.p99_ms), counter=True),
    Column("share", "share", 5, True, _share, counter=True),
    Column("pid", "pid", 7, True, lambda r, i: str(r.pid) if r.pid else "-"),
    Column("port", "port", 5, True, lambda r, i: str(r.port) if r.port else "-"),
    Column("reason", "last change", None, False, lambda r, i: r.reason),
)


def render(column: Column, raw: object) -> Text:
    if column.key == "no":
        index, is_next = raw  # type: ignore[misc]
        return Text.assemble(("▶" if is_next else " ", "bold #ffd75f"), f"{index}")
    if column.key == "name":
        return Text(str(raw), style=f"bold {server_colour(str(raw))}")
    if column.key == "state":
        return Text(str(raw), style=STATE_STYLES.get(str(raw), ""))
    if column.key == "errors" and raw != "0":
        return Text(str(raw), style="bold #ff5f5f", justify="right")
    return Text(str(raw), justify="right" if column.right else "left")


class ServerTable(DataTable):
    """Servers in balancer order; the cursor row is the selected server."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[object, ...]] = {}
        for column in COLUMNS:
            self.add_column(column.label, width=column.width, key=column.key)

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

    def show(self, rows: list[ServerRow], *, counters: bool = True) -> None:
        """Bring the table up to date: changed cells only; rows added or removed.

        With `counters=False` the busy columns (served, in flight, latency, share)
        keep their old values until a later call: any `update_cell` makes DataTable
        render every cell again, which under load is its main cost, while states,
        errors and the next-server marker must show at once.
        """
        present = {row.name for row in rows}
        for name in [n for n in self._cells if n not in present]:
            self.remove_row(name)
            del self._cells[name]
        for index, row in enumerate(rows, start=1):
            raw = tuple(column.cell(row, index) for column in COLUMNS)
            old = self._cells.get(row.name)
            if old is None:
                self.add_row(*(render(c, v) for c, v in zip(COLUMNS, raw, strict=True)),
                             key=row.name)
                self._cells[row.name] = raw
            elif old != raw:
                kept = []
                for column, before, after in zip(COLUMNS, old, raw, strict=True):
                    if before == after or (column.counter and not counters):
                        kept.append(before)
                        continue
                    kept.append(after)
                    self.update_cell(row.name, column.key, render(column, after),
                                     update_width=column.width is None)
                self._cells[row.name] = tuple(kept)

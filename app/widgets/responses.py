"""The responses panel: the latest answers, errors in red."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from textual.strip import Strip

from app.formatting import answer_text, ms
from app.widgets.routing import server_style
from app.widgets.tail_view import TailView, newer_than

DIM = Style(dim=True)
ERROR = Style(color="#ff5f5f", bold=True)


class ResponsesView(TailView):
    """`#1234 somma 3 4 = 7  server2  0.41 ms`."""

    PER_TICK = 24

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=500, id=id, classes=classes)
        self._last: object = None

    def show(self, answers: Sequence[tuple[float, bytes, float]]) -> None:
        if not answers or answers[-1] is self._last:
            return
        new = newer_than(answers, self._last, self.PER_TICK)
        self._last = answers[-1]
        self.append(self.line(line, latency) for _, line, latency in new)


    @classmethod
    def line(cls, line: bytes, latency: float) -> Strip:
        text, is_error, server = answer_text(line)
        parts: list[tuple[str, Style | None]] = [(text, ERROR if is_error else None)]
        if server:
            parts.append((f"  {server}", server_style(server)))
        parts.append((f"  {ms(latency * 1000)} ms", DIM))
        return cls.strip(*parts)

"""The routing panel: the latest requests and the server each one went to."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rich.style import Style
from textual.strip import Strip

from app.formatting import payload_text, server_colour
from app.widgets.tail_view import TailView, newer_than
from balancer.routes import Route

DIM = Style(dim=True)
REDISPATCH = Style(color="#ffd75f", bold=True)


@lru_cache(maxsize=64)
def server_style(name: str) -> Style:
    return Style(color=server_colour(name), bold=True)


class RoutingView(TailView):
    """`server2  #1234  somma 3 4  c1`, re-dispatches marked `↻ from server1`."""

    PER_TICK = 24
    """Lines added per tick at most: at high rates older ones would scroll past unseen."""
    REDISPATCHED_PER_TICK = 8
    """Re-dispatched requests kept among them even when newer traffic would crowd them out."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=500, id=id, classes=classes)
        self._last: object = None

    def show(self, routes: Sequence[Route]) -> None:
        """Append what was routed since the last tick."""
        if not routes or routes[-1] is self._last:
            return
        new = newer_than(routes, self._last, len(routes))
        self._last = routes[-1]
        if len(new) > self.PER_TICK:
            resent = [r for r in new if r.redispatched_from][-self.REDISPATCHED_PER_TICK:]
            rest = [r for r in new if not r.redispatched_from]
            new = resent + rest[len(resent) - self.PER_TICK:]
        # The balancer samples routes per server per write; put them back in dispatch order.
        new.sort(key=Route.order)
        self.append(self.line(route) for route in new)

    @classmethod
    def line(cls, route: Route) -> Strip:
        parts: list[tuple[str, Style | None]] = [
            (f"{route.server:<8} ", server_style(route.server)),
            (f"#{route.request_id:<7} ", DIM),
            (payload_text(route.request), None),
        ]
        if route.redispatched_from:
            parts.append((f"  ↻ from {route.redispatched_from}", REDISPATCH))
        parts.append((f"  {route.client}", DIM))
        return cls.strip(*parts)

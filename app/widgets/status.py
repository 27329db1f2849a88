"""The status line at the top: address, algorithm, rate, totals, servers UP, uptime, PAUSED.

The algorithm is always there (it decides everything the table shows), right after
the address so a narrow terminal cuts the end of the line, never it; retries show
once there are any.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.formatting import count, short_count, uptime
from balancer.stats import BalancerStats

PAUSED_BADGE = " PAUSED "
ALGO_STYLE = "bold #5fd7d7"


def status_text(stats: BalancerStats | None, *, servers: int = 0, paused: bool = False,
                note: str = "", compact: bool = False) -> Text:
    """The line; `compact` drops words so it fits in 80 columns."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not compact:
        text.append(" lbconsole ", style="bold")
    if paused:
        text.append(PAUSED_BADGE, style="bold #000000 on #ffd75f")
    text.append(" ")
    if stats is None:
        text.append(note or "starting…", style="dim")
        return text
    total = servers or len(stats.backends)
    if stats.servers_up == total and total:
        up_style = "bold #5fd75f"
    else:
        up_style = "bold #ff5f5f" if stats.servers_up == 0 else "bold #ffd75f"
    if compact:
        host, _, port = stats.address.rpartition(":")
        text.append_tokens([
            # The usual loopback host goes first when room is short: the port is what counts.
            (f":{port}" if host == "127.0.0.1" else stats.address, "bold"),
            ("  ", None), (stats.algorithm, ALGO_STYLE),
            ("  ", None), (short_count(stats.rate), "bold"), ("/s", "dim"),
            ("  ", None), (short_count(stats.answered), "bold"), (" ans", "dim"),
            ("  ", None), (count(stats.errors), "bold #ff5f5f" if stats.errors else "bold"),
            (" err", "dim"),
            ("  ", None), (f"{stats.servers_up}/{total}", up_style), (" UP", "dim"),
            ("  ", None), (uptime(stats.uptime), "bold"),
        ])
        if stats.redispatched:
            text.append_tokens([("  ", None), (count(stats.redispatched), "bold #ffd75f"),
                                (" ↻", "dim")])
        if stats.retries:
            text.append_tokens([("  ", None), (short_count(stats.retries), "bold #ff875f"),
                                (" retries", "dim")])
        if stats.queued:
            text.append_tokens([("  ", None), (count(stats.queued), "bold #ff5f5f"),
                                (" queued", "dim")])
    else:
        sep = ("  │ ", "dim")
        text.append_tokens([
            (stats.address, "bold"),
            sep, (stats.algorithm, ALGO_STYLE),
            sep, (short_count(stats.rate), "bold"), (" req/s", "dim"),
            sep, (count(stats.answered), "bold"), (" answered", "dim"),
            sep, (count(stats.errors), "bold #ff5f5f" if stats.errors else "bold"),
            (" errors", "dim"),
            sep, (f"{stats.servers_up}/{total}", up_style), (" UP", "dim"),
            sep, ("up ", "dim"), (uptime(stats.uptime), "bold"),
        ])
        if stats.redispatched:
            text.append_tokens([sep, (count(stats.redispatched), "bold #ffd75f"),
                                (" re-sent", "dim")])
        if stats.retries:
            text.append_tokens([sep, (count(stats.retries), "bold #ff875f"), (" retries", "dim")])
        if stats.queued:
            text.append_tokens([sep, (count(stats.queued), "bold #ff5f5f"), (" queued", "dim")])
    if note:
        text.append_tokens([("  ", None), (note, "bold #ffd75f")])
    return text


class StatusBar(Widget, can_focus=False):
    """One line; redrawn only when what it says changes."""

    DEFAULT_CSS = """
    StatusBar { height: 1; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.full = status_text(None, paused=False)
        self.short = self.full

    @property
    def plain(self) -> str:
        return self.full.plain

    def show(self, stats: BalancerStats | None, *, servers: int, paused: bool,
             note: str = "") -> None:
        full = status_text(stats, servers=servers, paused=paused, note=note)
        if full.plain != self.full.plain or full.spans != self.full.spans:
            self.full = full
            self.short = status_text(stats, servers=servers, paused=paused, note=note,
                                     compact=True)
            self.refresh()

    def render(self) -> Text:
        return self.full if self.full.cell_len <= self.size.width else self.short

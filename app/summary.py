"""The summary printed to the terminal after the console closes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from app.formatting import STATE_STYLES, count, ms, server_colour, uptime
from app.runtime import ServerRow
from balancer.stats import BalancerStats


@dataclass(frozen=True)
class SessionSummary:
    stats: BalancerStats
    rows: tuple[ServerRow, ...]
    log_path: str | None


def summary_table(summary: SessionSummary) -> Table:
    stats = summary.stats
    table = Table(
        title=f"lbconsole {stats.address}: {count(stats.answered)} answered, "
              f"{count(stats.errors)} errors, up {uptime(stats.uptime)}",
        title_justify="left",
        caption=(f"log: {summary.log_path}" if summary.log_path else None),
        caption_justify="left",
    )
    for label in ("server", "state", "requests", "errors", "re-sent", "mean ms",
                  "p99 ms", "share"):
        table.add_column(label, justify="left" if label in ("server", "state") else "right")
    for row in summary.rows:
        table.add_row(
            Text(row.name, style=f"bold {server_colour(row.name)}"),
            Text(row.state, style=STATE_STYLES.get(row.state, "")),
            count(row.served + row.errors),
            Text(count(row.errors), style="bold red" if row.errors else ""),
            count(row.redispatched),
            ms(row.mean_ms),
            ms(row.p99_ms),
            f"{row.share * 100:.1f}%",
        )
    total_served = sum(r.served + r.errors for r in summary.rows)
    table.add_section()
    table.add_row("total", "", count(total_served), count(sum(r.errors for r in summary.rows)),
                  count(stats.redispatched), "", "", "")
    return table

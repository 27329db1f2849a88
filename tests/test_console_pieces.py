"""The console's small pure parts: formatting, sparklines, route selection, status text."""

from __future__ import annotations

from app.formatting import (
    answer_text,
    duration,
    ms,
    payload_text,
    server_colour,
    short_count,
    uptime,
)
from app.widgets.batch_bar import progress_text
from app.widgets.routing import RoutingView
from app.widgets.status import PAUSED_BADGE, status_text
from app.widgets.tail_view import newer_than
from app.widgets.throughput import sparkline
from balancer.client import BatchProgress
from tests.frozen import route, row, stats


def test_numbers() -> None:
    assert [short_count(v) for v in (0, 950, 12_345, 123_456, 1_250_000)] == [
        "0", "950", "12.3k", "123k", "1.25M"]
    assert [ms(v) for v in (None, 0.4123, 12.34, 250.6)] == ["-", "0.41", "12.3", "251"]
    assert [duration(v) for v in (None, 4.2, 185, 3725)] == ["-", "4s", "3m05s", "1h02m"]
    assert uptime(3725) == "1:02:05"


def test_server_colours_are_stable_and_distinct() -> None:
    names = ["server1", "server2", "server3", "server4"]
    assert len({server_colour(n) for n in names}) == 4
    assert server_colour("server2") == server_colour("server2")
    assert server_colour("backend-x") == server_colour("backend-x")


def test_payloads_and_answers() -> None:
    assert payload_text(b"somma 3 4") == "somma 3 4"
    assert payload_text(b'{"op":"somma","a":3,"b":4}') == "somma 3 4"
    assert payload_text(b'{"text":"say \\"hi\\""}') == 'say "hi"'
    assert payload_text(b"\xffsomma") == "\ufffdsomma"
    text, error, server = answer_text(
        b'{"id":7,"op":"somma","a":3,"b":4,"result":7,"server":"server2"}\n')
    assert (text, error, server) == ("#7 somma 3 4 = 7", False, "server2")
    text, error, server = answer_text(b'{"id":8,"error":"division by zero"}\n')
    assert error and "division by zero" in text and server == ""


def test_newer_than_takes_only_what_arrived_since_the_last_look() -> None:
    items = [(i,) for i in range(10)]
    assert newer_than(items, items[6], 100) == items[7:]
    assert newer_than(items, items[9], 100) == []
    assert newer_than(items, None, 3) == items[7:]
    assert newer_than(items, ("gone",), 100) == items


def test_routing_keeps_redispatches_visible_under_load() -> None:
    view = RoutingView()
    shown: list = []
    view.append = shown.extend  # type: ignore[method-assign]
    routes = ([route("server1", "c1", i, "somma") for i in range(100)]
              + [route("server2", "c1", i, "somma", origin="server3") for i in range(100, 110)]
              + [route("server1", "c1", i, "somma") for i in range(110, 300)])
    view.show(routes)
    texts = [strip.text for strip in shown]
    assert len(texts) == RoutingView.PER_TICK
    assert sum("↻ from server3" in t for t in texts) == RoutingView.REDISPATCHED_PER_TICK
    assert texts[-1].startswith("server1  #299")
    shown.clear()
    view.show(routes)
    assert shown == []


def test_sparkline_scale_and_width() -> None:
    assert sparkline((0, 5, 10), 5, 10) == "  ▁▅█"
    assert sparkline((1, 2, 3, 4), 2, 4) == "▆█"
    assert sparkline((0, 0), 2, 0) == "▁▁"


def test_status_text_fits_80_columns_when_compact() -> None:
    rows = [row("server1", served=1_234_567), row("server2", state="DOWN")]
    s = stats(rows, rate=123_456.0, uptime=3725.0, redispatched=12)
    full = status_text(s, servers=2, paused=True)
    compact = status_text(s, servers=2, paused=True, compact=True)
    assert PAUSED_BADGE in full.plain and PAUSED_BADGE in compact.plain
    assert "1/2" in full.plain and "123k req/s" in full.plain and "1:02:05" in full.plain
    assert compact.cell_len <= 80


def test_progress_text() -> None:
    progress = BatchProgress(300_000, answered=75_000, started=0.0)
    text = progress_text(progress).plain
    assert "random 300,000" in text and "25%" in text and "75.0k/300k" in text

"""Random batches with a cost (`random N work A-B`, `work exp:M`) and their latency summary,
over a real `lbconsole serve --port 0` and the real `lbconsole client` process."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

import balancer.client as client_module
from app.control.batch import make_batch
from app.control.grammar import Work
from balancer.client import BatchProgress, run_batch
from tests.test_cli import LBCONSOLE, serve

SUMMARY = re.compile(r"(random \d+(?: work \S+)?): (\d+) answers, (\d+) errors, .* p50 (\S+) "
                     r"p95 (\S+) p99 (\S+) max (\S+) ms, server1 \d+ / server2 \d+ / server3 \d+$")


@pytest.fixture
def balancer_port(tmp_path: Path) -> Iterator[int]:
    with serve(tmp_path) as (_, port):
        yield port


def _summaries(out: str) -> dict[str, tuple[int, int, list[float]]]:
    found = {}
    for line in out.splitlines():
        match = SUMMARY.fullmatch(line)
        if match:
            found[match[1]] = (int(match[2]), int(match[3]), [float(v) for v in match.groups()[3:]])
    return found


def test_work_batches_carry_work_ms_and_report_percentiles(balancer_port: int) -> None:
    result = subprocess.run(
        [*LBCONSOLE, "client", "-q", f"127.0.0.1:{balancer_port}"],
        input="random 40 work 30-40\nrandom 300 work exp:20\nrandom 30\n"
              "random 20 work 5-1\nrandom 10 work\nexit\n",
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summaries = _summaries(result.stdout)
    assert set(summaries) == {"random 40 work 30-40", "random 300 work exp:20", "random 30"}, \
        result.stdout
    for _, errors, (p50, p95, p99, top) in summaries.values():
        assert errors == 0 and p50 <= p95 <= p99 <= top
    # Every request of the uniform batch works 30 to 40 ms before it is answered.
    answers, _, (p50, _, _, top) = summaries["random 40 work 30-40"]
    assert answers == 40 and p50 >= 30 and top >= 30
    # Exponential, mean 20 ms: the median is 13.9 ms, and one of 300 beyond 40 ms is all
    # but certain (all below: (1 - e^-2)^300, about 1e-19).
    answers, _, (p50, _, _, top) = summaries["random 300 work exp:20"]
    assert answers == 300 and p50 >= 5 and top >= 40
    assert "work takes A-B (uniform, ms) or exp:M (mean M ms), at most 60000 ms, not '5-1'" \
        in result.stdout
    assert "usage: random N [work A-B | work exp:M]" in result.stdout


async def test_a_sampled_big_batch_stands_for_every_answer(
        balancer_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above TIME_ALL_UP_TO one answer in SAMPLE_EVERY is timed; their weights add up
    to every answer, and the work shows in the percentiles."""
    monkeypatch.setattr(client_module, "TIME_ALL_UP_TO", 0)
    lines = make_batch(500, Work("uniform", 10, 20), seed=3, ids=False)
    assert not any(b'"id"' in line for line in lines)
    progress = await run_batch("127.0.0.1", balancer_port, 2000, window=256, lines=lines)
    assert progress.failure is None and progress.answered == 2000 and progress.errors == 0
    assert progress.bad == 0 and progress.checked > 0
    assert sum(progress.latencies.values()) == pytest.approx(2000)
    p = progress.percentiles()
    assert 10 <= p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] <= p["max_ms"]  # type: ignore[operator]


def test_percentiles_are_nearest_rank_over_weights() -> None:
    progress = BatchProgress(100)
    for ms in range(1, 101):
        progress.add_latency(float(ms))
    assert progress.percentiles() == {"p50_ms": 50, "p95_ms": 95, "p99_ms": 99, "max_ms": 100}
    sampled = BatchProgress(100)
    sampled.add_latency(2.0, weight=98)  # one timed answer standing for 98
    sampled.add_latency(70.0, weight=2)
    assert sampled.percentiles() == {"p50_ms": 2, "p95_ms": 2, "p99_ms": 70, "max_ms": 70}
    assert BatchProgress(5).percentiles() == dict.fromkeys(
        ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
    assert " ms" not in BatchProgress(5).summary()


def _lines_at_80_columns(text: str) -> list[str]:
    """The console's message line: 80 columns less its padding, wrapped as Textual does."""
    return [line.plain for line in Text(text).wrap(Console(width=78), 78)]


def test_a_big_batch_summary_fits_the_console_message_at_80_columns() -> None:
    progress = BatchProgress(1_000_000, answered=1_000_000, started=0.0)
    progress.finished = 12.34
    progress.per_server = Counter(server1=333_334, server2=333_333, server3=333_333)
    for ms in (4.56, 12.3, 78.9, 999.0):
        progress.add_latency(ms)
    assert len(_lines_at_80_columns(f"random 1,000,000: {progress.summary()}")) <= 2
    # With many errors it takes a third line, which the message cuts: only the per-server
    # counts (also in the Servers table) are lost, never the latencies.
    progress.errors = 9_999
    shown = " ".join(_lines_at_80_columns(
        f"random 1,000,000 cancelled: {progress.summary()}")[:2])
    assert "p50 12.3 p95 999 p99 999 max 999 ms" in shown


async def test_a_window_bigger_than_the_pool_sends_every_request(balancer_port: int) -> None:
    """35 in flight from a pool of 10 lines: the first write goes round the pool 3.5 times."""
    lines = make_batch(10, None, seed=2, ids=False)
    progress = await run_batch("127.0.0.1", balancer_port, 100, window=35, lines=lines,
                               check_all=True, stall_timeout=5)
    assert progress.failure is None and progress.answered == progress.sent == 100
    assert progress.checked == 100 and progress.bad == 0 and progress.errors == 0

"""Partitions across real network paths, during a batch through `lbconsole serve`.

Three calculation servers run in the lab's hosts h1..h3; `serve --servers 0
--backend hN=ADDR:PORT` runs in the default namespace. During a paced batch of
at least 30,000 pipelined requests, h1 is cut by taking its link down and h2 by
an nftables drop, one after the other, each healed after a while. Asserted:
every request got exactly one correct answer, `serve` reported each host DOWN
within request timeout + 1 s of the cut, and UP again after the heal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netlab.batch import run_batch
from tests.netlab.fleet import Serve, start_serve, start_servers
from tests.netlab.lab import NetLab

pytestmark = pytest.mark.netns

REQUEST_TIMEOUT = 1.0
HELD = 1.5
"""Seconds a partition is held after it was detected (reconnects fail meanwhile)."""
UP_AFTER_HEAL = 10.0
"""Bound on rejoining: checks every 0.2 s, rise 2, plus TCP's retransmit backoff."""


@dataclass
class Cut:
    """One partition as the scenario saw it (times relative to the cut)."""

    host: str
    method: str
    down_after: float | None = None
    down_reason: str = ""
    up_after_heal: float | None = None
    error: str = ""

    def __str__(self) -> str:
        down = "never" if self.down_after is None else f"{self.down_after:.2f}s"
        up = "never" if self.up_after_heal is None else f"{self.up_after_heal:.2f}s"
        return (f"{self.host} ({self.method}): DOWN after {down} ({self.down_reason!r}), "
                f"UP {up} after heal{'; ' + self.error if self.error else ''}")


def _wait_change(serve: Serve, host: str, new: str, since: float, bound: float) -> float | None:
    deadline = since + bound
    while time.monotonic() < deadline:
        change = serve.change(host, new, since)
        if change is not None:
            return change.at - since
        time.sleep(0.01)
    return None


def partition_and_heal(serve: Serve, host: str, method: str, cut: Callable[[str], None],
                       heal: Callable[[str], None]) -> Cut:
    """Cut `host`, wait for DOWN (or give up), hold the cut, heal it, wait for UP."""
    record = Cut(host, method)
    at = time.monotonic()
    cut(host)
    try:
        record.down_after = _wait_change(serve, host, "DOWN", at, REQUEST_TIMEOUT + 5)
        if record.down_after is not None:
            record.down_reason = serve.change(host, "DOWN", at).reason  # type: ignore[union-attr]
        time.sleep(HELD)
    finally:
        healed = time.monotonic()
        heal(host)
    record.up_after_heal = _wait_change(serve, host, "UP", healed, UP_AFTER_HEAL)
    return record


async def test_partitions_during_a_batch_lose_nothing(lab: NetLab, tmp_path: Path) -> None:
    ports = start_servers(lab, tmp_path)
    serve = start_serve(lab, ports, tmp_path / "serve.log",
                        "--request-timeout", str(REQUEST_TIMEOUT), "--check-interval", "0.2",
                        "--check-timeout", "0.5", "--rise", "2", "--fall", "2")
    cuts: list[Cut] = []
    done = False

    def scenario() -> None:
        nonlocal done
        try:
            time.sleep(1.0)  # the batch is flowing to all three hosts
            cuts.append(partition_and_heal(serve, "h1", "link down", lab.link_down,
                                           lab.link_up))
            cuts.append(partition_and_heal(serve, "h2", "nftables drop", lab.block,
                                           lab.unblock))
            time.sleep(0.5)  # some requests after both heals
        finally:
            done = True

    batch, _ = await asyncio.gather(
        run_batch(serve.port, lambda: not done, minimum=30_000, rate=3_000, window=3_000,
                  time_limit=40.0),
        asyncio.to_thread(scenario),
    )
    report = (f"{batch.sent} sent in {batch.seconds:.1f}s, answers by server "
              f"{dict(batch.by_server())}\n" + "\n".join(map(str, cuts)) + "\nserve said:\n"
              + "\n".join(line for _, line in serve.lines.lines))
    print(report)  # shown by `make netlab` (-s) and on failure
    assert batch.sent >= 30_000, report
    assert not batch.problems(), batch.problems() + "\n" + report
    assert [c.host for c in cuts] == ["h1", "h2"], report
    for c in cuts:
        assert c.down_after is not None and c.down_after <= REQUEST_TIMEOUT + 1.0, report
        assert c.up_after_heal is not None, report
    assert set(batch.by_server()) == {"h1", "h2", "h3"}, report
    assert serve.lines.process.poll() is None, "serve died\n" + report

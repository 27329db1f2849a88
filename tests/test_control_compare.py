"""`compare` and its seeded batches: the pure parts first, then over real servers.

The acceptance run of the lab issue (leastconn and p2c beat round robin's p99
with a slow server) needs the core to route by algorithm and the servers to do
`work_ms`; it is skipped until both have landed (the balancer's SHIM is gone and
the supervisor has `control`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import statistics
import subprocess
import sys
from collections import Counter

import orjson
import pytest

from app.control.batch import (
    BatchResult,
    _Runner,
    make_batch,
    percentile,
    run_measured,
    sample_work,
)
from app.control.compare import compare_live, compare_table
from app.control.grammar import MAX_WORK_MS, Compare, Work
from app.runtime import Runtime
from backends.supervisor import ServerSupervisor
from balancer.service import Balancer
from tests.conftest import RuntimeFactory

LAB_READY = ("SHIM" not in inspect.getsource(Balancer)
             and hasattr(ServerSupervisor, "control"))


# ---------------------------------------------------------------- pure


def test_the_same_seed_gives_the_same_batch() -> None:
    work = Work("uniform", 0, 20)
    one, two = make_batch(500, work, seed=7), make_batch(500, work, seed=7)
    assert one == two
    assert make_batch(500, work, seed=8) != one
    requests = [orjson.loads(line) for line in one]
    assert [r["id"] for r in requests] == list(range(1, 501))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in one)
    assert all(0 <= r["work_ms"] <= 20 for r in requests)
    assert len({r["op"] for r in requests}) == 4
    assert 7 < statistics.mean(r["work_ms"] for r in requests) < 13


def test_no_work_no_field_and_exponential_work() -> None:
    assert all(b"work_ms" not in line for line in make_batch(50, None))
    rng = random.Random(3)
    samples = [sample_work(Work("exp", 5), rng) for _ in range(20_000)]
    assert 4.6 < statistics.mean(samples) < 5.4
    assert min(samples) >= 0
    big = [sample_work(Work("exp", MAX_WORK_MS), random.Random(1)) for _ in range(2000)]
    assert max(big) <= MAX_WORK_MS


def test_percentiles_and_shares() -> None:
    assert percentile([], 0.5) is None
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.50) == 50 and percentile(ordered, 0.99) == 99
    result = BatchResult(total=4, answered=4, elapsed=2.0, latencies_ms=[4.0, 1.0, 3.0, 2.0],
                         per_server=Counter(server2=1, server1=3))
    assert result.percentiles() == {"p50_ms": 2.0, "p95_ms": 4.0, "p99_ms": 4.0, "max_ms": 4.0}
    assert result.shares() == {"server1": 0.75, "server2": 0.25}
    assert result.rate == 2.0 and result.ok
    assert not BatchResult(total=5, answered=4).ok
    data = result.as_dict()
    assert data["p99_ms"] == 4.0 and data["per_server"] == {"server1": 3, "server2": 1}
    json.dumps(data)


def test_the_table_has_one_row_per_algorithm_and_a_column_per_server() -> None:
    fast = BatchResult(total=2, answered=2, elapsed=1.0, latencies_ms=[1.0, 2.0],
                       per_server=Counter(server1=1, server2=1))
    slow = BatchResult(total=2, answered=2, errors=1, elapsed=2.0, latencies_ms=[5.0, 9.0],
                       per_server=Counter(server1=2))
    lines = compare_table({"roundrobin": fast, "leastconn": slow}).splitlines()
    assert lines[0].split() == ["algorithm", "req/s", "p50", "ms", "p95", "ms", "p99", "ms",
                                "max", "ms", "server1", "%", "server2", "%", "errors"]
    assert lines[1].split() == ["roundrobin", "2", "1.00", "2.00", "2.00", "2.00", "50.0",
                                "50.0", "0"]
    assert lines[2].split() == ["leastconn", "1", "5.00", "9.00", "9.00", "9.00", "100.0",
                                "0.0", "1"]
    assert len({len(line) for line in lines}) == 1  # aligned


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


async def test_the_runner_keeps_the_window_and_counts_what_is_wrong() -> None:
    lines = make_batch(5, None)
    result = BatchResult(total=5)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    runner = _Runner(lines, 2, result, done)
    transport = FakeTransport()
    runner.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written == [lines[0] + lines[1]]
    # Out of order, split across chunks; one answer twice; one id nobody sent.
    runner.data_received(b'{"id":2,"result":1,"server":"s1"}\n{"id":1,"err')
    assert transport.written[-1] == lines[2]
    runner.data_received(b'or":"division by zero","server":"s2"}\n{"id":2,"result":1}\n'
                         b'{"id":99,"result":0}\n')
    assert transport.written[-1] == lines[3]
    assert (result.answered, result.errors, result.duplicates) == (2, 2, 1)
    runner.data_received(b'{"id":3,"server":"s1"}\n{"id":4,"server":"s1"}\n'
                         b'{"id":5,"server":"s2"}\n')
    assert done.done() and result.answered == 5
    assert result.per_server == {"s1": 3, "s2": 2}
    assert not result.ok  # an error answer, a duplicate and a stranger
    assert "division by zero" in result.error_samples


# ---------------------------------------------------------------- real servers


async def test_a_measured_batch_times_every_answer(make_runtime: RuntimeFactory) -> None:
    runtime: Runtime = await make_runtime(servers=2, admin_socket=None)
    lines = make_batch(2000, None, seed=1)
    result = await run_measured("127.0.0.1", runtime.balancer.port, lines, concurrency=32)
    assert result.ok, result.summary()
    assert result.answered == 2000 and len(result.latencies_ms) == 2000
    assert sum(result.per_server.values()) == 2000
    assert set(result.per_server) == {"server1", "server2"}
    assert all(latency >= 0 for latency in result.latencies_ms)


async def test_compare_live_runs_each_algorithm_and_puts_the_first_back(
        make_runtime: RuntimeFactory) -> None:
    runtime: Runtime = await make_runtime(servers=2, admin_socket=None)
    runtime.set_algorithm("random")
    reply = await compare_live(runtime, Compare(("roundrobin", "leastconn"), 400, None, 16))
    assert reply.ok, reply.message
    assert reply.data is not None and list(reply.data["results"]) == ["roundrobin", "leastconn"]
    assert all(r["answered"] == 400 for r in reply.data["results"].values())
    assert runtime.balancer.algorithm_name == "random"
    assert reply.message.splitlines()[1].startswith("roundrobin")


def test_lbconsole_compare_headless_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "compare", "--algorithms", "roundrobin,p2c",
         "-n", "300", "--servers", "2", "--concurrency", "8", "--json"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data["results"]) == ["roundrobin", "p2c"]
    assert data["count"] == 300 and data["concurrency"] == 8
    for row in data["results"].values():
        assert row["answered"] == 300 and row["errors"] == 0
        assert row["p99_ms"] is not None and sum(row["per_server"].values()) == 300


@pytest.mark.parametrize(("args", "says"), [
    (["--algorithms", "roundrobin,fastest"], "unknown algorithm 'fastest'"),
    (["--work", "9-1"], "work takes A-B"),
    (["--servers", "0"], "--servers from 1 to 64"),
    (["-n", "0"], "-n is from 1"),
])
def test_lbconsole_compare_refuses_bad_options(args: list[str], says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "app.cli", "compare", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and says in result.stderr, result.stderr


@pytest.mark.skipif(not LAB_READY, reason="needs the core's algorithms and the servers' "
                                          "work_ms/workers/speed")
def test_with_a_slow_server_leastconn_and_p2c_beat_round_robin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "compare", "--algorithms", "roundrobin,leastconn,p2c",
         "-n", "4000", "--work", "0-20", "--concurrency", "64", "--servers", "3",
         "--server-workers", "4", "--server-speed", "server3=0.33", "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert rows["leastconn"]["p99_ms"] < 0.8 * rows["roundrobin"]["p99_ms"]
    assert rows["p2c"]["p99_ms"] < 0.8 * rows["roundrobin"]["p99_ms"]


@pytest.mark.skipif(not LAB_READY, reason="needs the core's algorithms")
def test_weighted_shares_follow_the_weights() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "compare", "--algorithms", "weighted", "-n", "7000",
         "--servers", "3", "--weight", "server1=3", "--weight", "server2=3",
         "--weight", "server3=1", "--json"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shares = json.loads(result.stdout)["results"]["weighted"]["shares"]
    for name, want in (("server1", 3 / 7), ("server2", 3 / 7), ("server3", 1 / 7)):
        assert abs(shares[name] - want) <= 0.02, shares

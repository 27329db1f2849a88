"""Hostile or broken clients: many idle sockets, churn, a connection cap,
a client that never reads, and one that leaves with requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RuntimeFactory
from tests.test_cli import serve
from tests.wire import Wire


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sequential_latencies(port: int, count: int) -> list[float]:
    """A well-behaved client: one request at a time, each answer checked."""
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for i in range(count):
            started = time.perf_counter()
            sock.sendall(b"somma %d 1\n" % i)
            answer = json.loads(reader.readline())
            times.append(time.perf_counter() - started)
            assert answer["result"] == i + 1, answer
    return times


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int]]:
    with serve(tmp_path) as (process, port):
        yield process.pid, port


def test_idle_connections_and_churn_leave_a_good_client_alone(served: tuple[int, int]) -> None:
    _, port = served
    baseline = statistics.median(sequential_latencies(port, 200))
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(1000)]
    stop = threading.Event()
    churned = 0

    def churn() -> None:
        nonlocal churned
        deadline = time.monotonic() + 10
        while not stop.is_set() and churned < 3000 and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), timeout=5) as sock:
                if churned % 2:
                    sock.sendall(b"somma 1 ")  # half a request, then gone
            churned += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        loaded = statistics.median(sequential_latencies(port, 300))
    finally:
        stop.set()
        worker.join(timeout=20)
        for sock in idle:
            sock.close()
    print(f"median latency {baseline * 1e3:.3f} ms alone, {loaded * 1e3:.3f} ms with 1000 idle "
          f"connections and {churned} connect/drop cycles")
    assert churned > 100
    # A sanity bound only (noisy shared machine): nowhere near a stall.
    assert loaded < 50 * baseline + 0.05


def test_max_clients_refuses_extra_connections_with_an_error(tmp_path: Path) -> None:
    with serve(tmp_path, "--max-clients", "20") as (_, port):
        held = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"ping\n")
            assert "pong" in json.loads(sock.makefile("rb").readline())
            held.append(sock)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            data = extra.makefile("rb").read()
        answer = json.loads(data)
        assert "too many clients (limit 20)" in answer["error"]
        held.pop().close()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
            again.sendall(b"3 * 4\n")
            assert json.loads(again.makefile("rb").readline())["result"] == 12
        for sock in held:
            sock.close()


def test_a_client_that_never_reads_is_paused_not_buffered(served: tuple[int, int]) -> None:
    pid, port = served
    before = rss_kb(pid)
    hog = socket.create_connection(("127.0.0.1", port), timeout=10)
    hog.setblocking(False)
    chunk = b"moltiplicazione 12345 6789\n" * 4000
    pushed = 0
    stalled_since = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            pushed += hog.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    # The balancer stopped reading: the hog is stuck with most of its requests unsent.
    assert stalled_since is not None, "the balancer never pushed back"
    times = sequential_latencies(port, 100)
    after = rss_kb(pid)
    hog.close()
    print(f"hog pushed {pushed / 1e6:.1f} MB before it was paused; balancer RSS "
          f"{before / 1024:.0f} -> {after / 1024:.0f} MB; other client median "
          f"{statistics.median(times) * 1e3:.3f} ms")
    assert pushed < 200 * 1024 * 1024
    assert after - before < 100 * 1024


async def test_client_leaving_with_requests_in_flight(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(server_delays={"server1": 0.2, "server2": 0.2, "server3": 0.2})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(3000)])
    deadline = time.monotonic() + 10
    while runtime.balancer.inflight_total() < 3000:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # Gone at once: SO_LINGER 0 makes close() send a reset, not a polite half-close.
    wire.writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wire.writer.transport.abort()
    deadline = time.monotonic() + 15
    while runtime.balancer.inflight_total() or runtime.balancer.clients:
        assert time.monotonic() < deadline, runtime.balancer.inflight_total()
        await asyncio.sleep(0.02)
    backends = runtime.balancer.backends
    assert sum(b.served for b in backends) == 3000  # the servers' work was done...
    assert sum(b.errors for b in backends) == 0     # ...and not turned into errors
    assert all(not b.inflight for b in backends)
    assert runtime.stats().discarded == 3000  # ...and their answers dropped, counted
    other = await Wire.open(runtime.balancer.port)
    await other.send("somma 40 2")
    assert (await other.answer())["result"] == 42
    await other.close()


async def test_inflight_cap_pauses_reading(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(max_inflight=50,
                                 server_delays={"server1": 0.1, "server2": 0.1, "server3": 0.1})
    wire = await Wire.open(runtime.balancer.port)
    total = 1500
    max_pending = 0
    paused_seen = False

    async def watch() -> None:
        nonlocal max_pending, paused_seen
        while True:
            for client in runtime.balancer.clients:
                max_pending = max(max_pending, client.pending)
                paused_seen = paused_seen or client.flow.paused("inflight")
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        for start in range(0, total, 10):
            await wire.send(*[f"somma {i} 1" for i in range(start, start + 10)])
        answers = await wire.answers(total, timeout=60)
    finally:
        watcher.cancel()
    await wire.close()
    assert sorted(a["result"] for a in answers) == [i + 1 for i in range(total)]
    print(f"in flight peaked at {max_pending} for a cap of 50 (reads pause past it)")
    assert paused_seen
    assert max_pending <= 50

"""Failures real balancers meet, injected into real server processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from balancer.log import RequestLog
from balancer.service import Balancer, BalancerConfig
from tests.chaos import crash_storm, frozen_server
from tests.conftest import RuntimeFactory
from tests.test_cli import LBCONSOLE, server_pids
from tests.wire import Wire, pid_alive, wait_state, wait_until


async def test_crash_storm_loses_and_duplicates_nothing(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime()
    report = await crash_storm(runtime, total=50_000, clients=4, pace=0.004)
    print(report.summary())
    assert report.sent == report.answered == 50_000
    assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)
    assert not report.errors, report.errors
    assert report.faults >= 3
    assert runtime.balancer.inflight_total() == 0
    # The log has one line per answer, the re-dispatched ones marked as such.
    redispatched = runtime.balancer.redispatched
    await runtime.stop()
    answers = moved = 0
    with open(runtime.config.log_file, "rb") as log:
        for line in log:
            if b' {"id":' in line:
                answers += 1
                moved += b" (re-dispatched from server" in line
    assert answers == 50_000
    # A request moved twice (its second server died too) is logged once.
    assert moved <= redispatched and (moved > 0) == (redispatched > 0)


async def test_frozen_server_is_detected_and_its_late_answers_dropped(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(request_timeout=1.0, check_timeout=0.5)
    report, facts = await frozen_server(runtime, total=12_000, clients=2)
    print(report.summary(), facts)
    assert report.sent == report.answered == 12_000
    assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)
    assert not report.errors
    assert "no answer for" in str(facts["reason"]) or "check" in str(facts["reason"])
    assert report.redispatched > 0
    assert report.late_dropped > 0
    # Requests stuck on the frozen server were re-sent within the request timeout
    # (plus one sweep and one check interval of slack).
    assert report.max_detect is not None and report.max_detect < 1.0 + 1.0
    # It is back in the rotation.
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*["somma 1 1"] * 6)
    servers = {a["server"] for a in await wire.answers(6)}
    await wire.close()
    assert "server2" in servers


async def test_slow_server_loses_nothing_and_shows_its_latency(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(server_delays={"server2": 0.03})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} {i}" for i in range(3000)])
    answers = await wire.answers(3000, timeout=60)
    await wire.close()
    assert sorted(a["id"] for a in answers) == list(range(1, 3001))
    assert all(a["result"] == 2 * (a["id"] - 1) for a in answers)
    rows = {r.name: r for r in runtime.rows()}
    assert rows["server2"].served == 1000
    # Every answer of server2 waited at least its 30 ms delay; the stats show it.
    assert rows["server2"].mean_ms is not None and rows["server2"].mean_ms >= 30
    assert rows["server2"].p99_ms is not None and rows["server2"].p99_ms >= 30
    assert rows["server1"].mean_ms is not None and rows["server1"].mean_ms < rows["server2"].mean_ms


async def test_every_answer_is_logged_once_with_where_it_was_re_dispatched_from(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(server_delays={"server2": 0.5})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {n} 1" for n in range(30)])
    backend = runtime.balancer.backend("server2")
    await wait_until(lambda: len(backend.inflight) == 10, what="server2 holding 10")
    # More requests, and server2 killed while it holds its 10 (and some of these):
    # they go to server1 and server3 with the new ones, answered in the same chunks.
    await wire.send(*[f"somma {n} 2" for n in range(60)])
    runtime.kill(2)
    answers = await wire.answers(90)
    assert sorted(a["id"] for a in answers) == list(range(1, 91))
    # A second client that vanishes with a request in flight: its answer is logged too.
    gone = await Wire.open(runtime.balancer.port)
    await gone.send("somma 100 1")
    gone.writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.writer.transport.abort()
    await wait_until(lambda: runtime.stats().answered == 91, what="the vanished client's answer")
    await wire.close()
    await runtime.stop()

    lines = Path(runtime.config.log_file).read_text().splitlines()
    logged = [json.loads(line[line.index("{"):]) for line in lines if ' c1 {"id":' in line
              or " c1 (re-dispatched" in line]
    assert sorted(a["id"] for a in logged) == list(range(1, 91))  # each once
    moved = [line for line in lines if " c1 (re-dispatched from server2) {" in line]
    assert len(moved) == runtime.balancer.redispatched >= 10
    assert all('"server":"server1"' in line or '"server":"server3"' in line for line in moved)
    assert any(' c2 {"id":1,"op":"somma","a":100,"b":1,"result":101' in line for line in lines)


async def test_log_keeps_order_around_a_re_dispatched_answer(tmp_path: Path) -> None:
    """Answers queued for a client are logged in the order they are written, the
    re-dispatched one with its origin, whether or not they share a chunk."""
    log = RequestLog(tmp_path / "order.log")
    balancer = Balancer(BalancerConfig(port=0), log)
    await balancer.start()
    wire = await Wire.open(balancer.port)
    await wait_until(lambda: balancer.clients, what="the client connected")
    client = next(iter(balancer.clients))
    for n in (1, 2):
        client.out.append(b'{"id":%d,"result":%d}\n' % (n, n))
    client.out.append(b'{"id":3,"result":3}\n')
    client.answered("server2")
    client.out.append(b'{"id":4,"result":4}\n')
    client.flush()
    assert [a["id"] for a in await wire.answers(4)] == [1, 2, 3, 4]
    await wire.close()
    await balancer.close()
    log.close()
    body = [line.split(" ", 2)[2] for line in (tmp_path / "order.log").read_text().splitlines()
            if '{"id"' in line]
    assert body == ['c1 {"id":1,"result":1}', 'c1 {"id":2,"result":2}',
                    'c1 (re-dispatched from server2) {"id":3,"result":3}',
                    'c1 {"id":4,"result":4}']


async def test_all_down_then_one_back(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=2, queue_timeout=3.0)
    runtime.kill(1)
    runtime.kill(2)
    await wait_state(runtime, "server1", "DOWN")
    await wait_state(runtime, "server2", "DOWN")
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"moltiplicazione {i} 2" for i in range(100)])
    await asyncio.sleep(0.2)
    assert len(runtime.balancer.waiting) == 100
    # Waiting costs no CPU: the balancer sleeps on timers, it does not spin.
    cpu_before, wall_before = time.process_time(), time.monotonic()
    sweeps_before = runtime.balancer.health.checks
    await asyncio.sleep(1.0)
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    assert cpu < 0.5 * wall, f"{cpu:.2f}s of CPU in {wall:.2f}s of waiting"
    assert runtime.balancer.health.checks - sweeps_before < 50
    await runtime.restart(1)
    answers = await wire.answers(100)
    assert sorted(a["result"] for a in answers) == [2 * i for i in range(100)]
    assert {a["server"] for a in answers} == {"server1"}
    # Beyond the queue timeout: a clear error, for exactly those requests.
    runtime.kill(1)
    await wait_state(runtime, "server1", "DOWN")
    await wire.send("somma 1 1", "somma 2 2")
    late = await wire.answers(2, timeout=10)
    assert [a["error"] for a in late] == ["no server available"] * 2
    await wire.close()


async def test_server_that_fails_to_start(make_runtime: RuntimeFactory) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        runtime = await make_runtime(wait_up=False, server_ports={"server2": taken})
        assert await runtime.wait_until_up(2, timeout=20)
        await wait_state(runtime, "server2", "DOWN")
        reason = runtime.balancer.backend("server2").reason
        assert f"cannot listen on 127.0.0.1:{taken}" in reason and "in use" in reason
        wire = await Wire.open(runtime.balancer.port)
        await wire.send(*["somma 2 2"] * 4)
        answers = await wire.answers(4)
        assert {a["server"] for a in answers} == {"server1", "server3"}
        message = await runtime.restart(2)
        assert "failed to restart" in message
        blocker.close()
        message = await runtime.restart(2)
        assert "restarted" in message
        await wait_state(runtime, "server2", "UP")
        await wire.send(*["somma 2 2"] * 3)
        assert "server2" in {a["server"] for a in await wire.answers(3)}
        await wire.close()
    finally:
        blocker.close()


def test_sigterm_answers_everything_in_flight_and_stops_clean(tmp_path: Path) -> None:
    log = tmp_path / "lb.log"
    process = subprocess.Popen(
        [*LBCONSOLE, "serve", "--port", "0", "--log-file", str(log), "--server-delay", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(re.findall(r":(\d+)$", process.stdout.readline().strip())[0])
        pids = server_pids(log)
        deadline = time.monotonic() + 20
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            while time.monotonic() < deadline:
                sock.sendall(b"ping\n")
                if json.loads(sock.makefile().readline())["servers_up"] == 3:
                    break
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"".join(b"somma %d 1\n" % i for i in range(300)))
            time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        answers = [json.loads(line) for line in data.splitlines()]
        assert sorted(a["id"] for a in answers) == list(range(1, 301))
        assert all("result" in a or a["error"] == "balancer shutting down" for a in answers)
        assert process.wait(timeout=20) == 0
        assert not [p for p in pids if pid_alive(p)]
        text = log.read_text()
        assert text.rstrip().endswith("all servers stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.chaos
async def test_chaos_report(make_runtime: RuntimeFactory) -> None:
    """`make chaos`: larger counts, default timeouts, a printed report."""
    runtime = await make_runtime(check_interval=1.0)
    storm = await crash_storm(runtime, total=300_000, clients=4, pace=0.002)
    await runtime.stop()
    runtime2 = await make_runtime(check_interval=1.0)
    frozen, facts = await frozen_server(runtime2, total=60_000, clients=4)
    print()
    print(storm.summary())
    print(frozen.summary(), f"rejoined {facts['rejoined_after']:.2f} s after SIGCONT;",
          f"reason: {facts['reason']}")
    for report in (storm, frozen):
        assert report.sent == report.answered
        assert (report.lost, report.duplicates, report.wrong) == (0, 0, 0)


def test_default_bind_is_loopback() -> None:
    from app.runtime import RuntimeConfig

    assert RuntimeConfig().host == "127.0.0.1"
    out = subprocess.run([*LBCONSOLE, "serve", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "--host" in out and "exposes" in out




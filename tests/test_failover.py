"""Failover behaviours a deliberate bug used to slip past: each test names the bug."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests.conftest import RuntimeFactory
from tests.wire import Wire, wait_state, wait_until


async def test_a_frozen_server_is_found_by_the_request_timeout_alone(
    make_runtime: RuntimeFactory,
) -> None:
    """Checks every 30 s cannot find it in time: only the request timeout can."""
    runtime = await make_runtime(check_interval=30.0, request_timeout=0.5)
    runtime.freeze(2)
    wire = await Wire.open(runtime.balancer.port)
    started = time.monotonic()
    await wire.send(*[f"somma {i} 1" for i in range(30)])
    answers = await wire.answers(30, timeout=10)
    found = time.monotonic() - started
    runtime.thaw(2)
    backend = runtime.balancer.backend("server2")
    assert "no answer for" in backend.reason, backend.reason
    assert found < 5.0, f"took {found:.1f}s: not the request timeout"
    assert sorted(a["result"] for a in answers) == list(range(1, 31))
    await wire.close()


async def test_requests_taken_from_a_failed_server_are_spread_in_rotation(
    make_runtime: RuntimeFactory,
) -> None:
    """Bug caught: every re-sent request going to the same server."""
    runtime = await make_runtime(request_timeout=0.5, check_interval=30.0)
    runtime.freeze(1)
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(60)])
    answers = await wire.answers(60, timeout=10)
    runtime.thaw(1)
    moved = Counter(a["server"] for a in answers if a["id"] % 3 == 1)
    assert set(moved) == {"server2", "server3"}
    assert abs(moved["server2"] - moved["server3"]) <= 1, moved
    await wire.close()


async def test_a_request_moved_twice_is_answered_once(make_runtime: RuntimeFactory) -> None:
    """Its first and second servers both freeze; the third answers it, once."""
    runtime = await make_runtime(request_timeout=0.4, check_interval=30.0)
    runtime.freeze(1)
    runtime.freeze(2)
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(30)])
    answers = await wire.answers(30, timeout=15)
    runtime.thaw(1)
    runtime.thaw(2)
    assert sorted(a["id"] for a in answers) == list(range(1, 31))
    assert {a["server"] for a in answers} == {"server3"}
    await wire.send("exit")
    rest = await asyncio.wait_for(wire.reader.read(), 5)
    assert rest.count(b"\n") == 1 and b"goodbye" in rest, rest
    assert runtime.balancer.inflight_total() == 0
    await wire.close()


async def test_the_inflight_cap_holds_one_line_at_a_time(make_runtime: RuntimeFactory) -> None:
    """Bug caught: a cap checked only for chunks of many lines."""
    runtime = await make_runtime(max_inflight=5, request_timeout=30.0)
    for n in (1, 2, 3):
        runtime.freeze(n)
    wire = await Wire.open(runtime.balancer.port)
    for i in range(20):
        await wire.send(f"somma {i} 1")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    client = next(iter(runtime.balancer.clients))
    assert client.pending == 5 and client.flow.paused("inflight")
    for n in (1, 2, 3):
        runtime.thaw(n)
    answers = await wire.answers(20, timeout=10)
    assert sorted(a["result"] for a in answers) == list(range(1, 21))
    await wire.close()


async def test_a_lone_re_dispatched_answer_is_logged_with_its_origin(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(request_timeout=0.4, check_interval=30.0)
    runtime.freeze(1)
    wire = await Wire.open(runtime.balancer.port)
    await wire.send('{"id": 77, "op": "somma", "a": 7, "b": 7}')
    answer = await wire.answer(timeout=5)
    runtime.thaw(1)
    assert answer["result"] == 14 and answer["server"] == "server2"
    await wire.close()
    await runtime.stop()
    log = Path(runtime.config.log_file).read_text(encoding="utf-8")
    line = next(x for x in log.splitlines() if '{"id":77,' in x)
    assert "(re-dispatched from server1)" in line, line


async def test_the_queue_timeout_is_honoured_from_above_and_below(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(servers=1, queue_timeout=1.0)
    runtime.kill(1)
    await wait_state(runtime, "server1", "DOWN")
    wire = await Wire.open(runtime.balancer.port)
    started = time.monotonic()
    await wire.send("somma 1 1")
    await wait_until(lambda: runtime.balancer.waiting, what="the request queued")
    answer = await wire.answer(timeout=5)
    waited = time.monotonic() - started
    assert answer["error"] == "no server available"
    assert 1.0 <= waited <= 1.0 + 0.5, waited
    await wire.close()

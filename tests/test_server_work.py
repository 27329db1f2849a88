"""Simulated work over a real server process: timers not sleeps, a worker queue, speed, latency."""

from __future__ import annotations

import time

from tests.serverproc import ServerProcess, calc_server  # noqa: F401


def work(rid: int, ms: float, a: int = 1, b: int = 2) -> str:
    return f'{{"id": {rid}, "op": "somma", "a": {a}, "b": {b}, "work_ms": {ms}}}'


async def test_work_does_not_block_a_later_request(calc_server) -> None:  # noqa: F811
    """A 300 ms request answers after a 0 ms one and a plain one sent after it, ids intact."""
    server: ServerProcess = await calc_server()
    wire = await server.wire()
    start = time.monotonic()
    await wire.send(work(1, 300), work(2, 0, 5, 6), "somma 7 8")
    first, second, third = await wire.answers(3)
    elapsed = time.monotonic() - start
    assert [first["id"], second["id"], third["id"]] == [2, 3, 1]
    assert (first["result"], second["result"], third["result"]) == (11, 15, 3)
    assert elapsed >= 0.29  # timers never fire early: the work was really done
    await wire.close()


async def test_workers_queue_requests_in_arrival_order(calc_server) -> None:  # noqa: F811
    """Two workers, four 200 ms requests: two in work, two queued, answered in two rounds."""
    server = await calc_server("--workers", "2")
    wire = await server.wire()
    start = time.monotonic()
    await wire.send(*(work(i, 200, a=i) for i in range(1, 5)), "ping")
    pong = await wire.answer()
    assert (pong["busy"], pong["queued"], pong["workers"]) == (2, 2, 2)
    arrivals = []
    for _ in range(4):
        answer = await wire.answer()
        arrivals.append((answer["id"], time.monotonic() - start))
    assert sorted(i for i, _ in arrivals[:2]) == [1, 2]
    assert sorted(i for i, _ in arrivals[2:]) == [3, 4]
    # The second round starts when the first ends: about twice as long, whatever the machine.
    assert arrivals[2][1] / arrivals[0][1] > 1.6
    await wire.send("ping")
    pong = await wire.answer()
    assert (pong["busy"], pong["queued"]) == (0, 0)
    await wire.close()


async def test_more_workers_live_take_from_the_queue(calc_server) -> None:  # noqa: F811
    server = await calc_server("--workers", "1")
    wire = await server.wire()
    await wire.send(*(work(i, 3000) for i in range(1, 4)), "ping")
    pong = await wire.answer()
    assert (pong["busy"], pong["queued"]) == (1, 2)
    assert (await server.set(workers=3))["workers"] == 3
    await wire.send("ping")
    pong = await wire.answer()
    assert (pong["busy"], pong["queued"]) == (3, 0)
    assert (await server.set(workers=None))["workers"] is None
    await wire.close()


async def test_speed_scales_the_work(calc_server) -> None:  # noqa: F811
    """At speed 0.25, 200 ms of work takes 800 ms; at speed 4, 1000 ms takes 250: it passes it."""
    server = await calc_server("--speed", "0.25")
    wire = await server.wire()
    start = time.monotonic()
    await wire.send(work(1, 200))
    await wire.send("ping")
    assert (await wire.answer())["speed"] == 0.25
    assert (await server.set(speed=4))["speed"] == 4
    await wire.send(work(2, 1000))
    first, second = await wire.answers(2)
    assert [first["id"], second["id"]] == [2, 1]
    assert time.monotonic() - start >= 0.79
    await wire.close()


async def test_latency_delays_every_answer_pings_included(calc_server) -> None:  # noqa: F811
    server = await calc_server("--latency", "150")
    wire = await server.wire()
    start = time.monotonic()
    await wire.send("ping", "somma 1 2")
    pong, answer = await wire.answers(2)
    assert time.monotonic() - start >= 0.149
    assert pong["latency_ms"] == 150 and answer["result"] == 3
    await server.set(latency_ms=0)
    await wire.send("ping")
    assert (await wire.answer())["latency_ms"] == 0
    await wire.close()


async def test_bad_work_is_a_clear_client_error(calc_server) -> None:  # noqa: F811
    server = await calc_server()
    wire = await server.wire()
    bad = ['-1', '60001', '"10"', 'true', 'null']
    await wire.send(*(work(i, ms) for i, ms in enumerate(bad, start=1)), work(9, 0, 1, 1),
                    "somma 2 2")
    answers = await wire.answers(7)
    by_id = {a["id"]: a for a in answers}
    for i in range(1, 6):
        assert by_id[i]["error"] == "work_ms must be a number of milliseconds from 0 to 60000"
        assert "fault" not in by_id[i]
    assert by_id[9]["result"] == 2 and by_id[7]["result"] == 4
    await wire.send(work(10, 10, 3, 4)[:-1] + ', "extra": 1}')
    assert "unexpected field" in (await wire.answer())["error"]
    await wire.close()


async def test_a_half_close_waits_for_work_in_progress(calc_server) -> None:  # noqa: F811
    server = await calc_server()
    wire = await server.wire()
    await wire.send(work(1, 200), "somma 1 1")
    wire.writer.write_eof()
    answers = await wire.answers(2)
    assert sorted(a["id"] for a in answers) == [1, 2]
    assert await wire.closed()
    await wire.close()

"""One request at a time (ping-pong, a person typing): the short path through the
balancer must keep every piece of bookkeeping the batched path keeps."""

from __future__ import annotations

import asyncio
import socket
import struct

from tests.conftest import RuntimeFactory
from tests.wire import Wire, wait_until


async def test_lone_requests_are_counted_logged_sampled_and_routed(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime()
    balancer = runtime.balancer
    wire = await Wire.open(balancer.port)
    answers = []
    for line in ("somma 3 4", "divisione 1 0", "moltiplicazione 6 7", "3 - 5"):
        await wire.send(line)
        answers.append(await wire.answer())
    assert [a.get("result") for a in answers] == [7, None, 42, -2]
    assert answers[1]["error"] == "division by zero"
    assert [a["id"] for a in answers] == [1, 2, 3, 4]
    assert [a["server"] for a in answers] == ["server1", "server2", "server3", "server1"]

    stats = runtime.stats()
    assert (stats.requests, stats.answered, stats.errors) == (4, 4, 1)
    rows = {row.name: row for row in stats.backends}
    assert rows["server2"].errors == 1 and rows["server1"].served == 2
    assert all(row.mean_ms is not None and row.mean_ms > 0 for row in rows.values())
    assert all(row.inflight == 0 for row in rows.values())

    # The routing panel saw each request with the id its client knows it by.
    routes = [(r.server, r.request_id, r.request) for r in balancer.recent_routes]
    assert routes == [("server1", "1", b"somma 3 4"), ("server2", "2", b"divisione 1 0"),
                      ("server3", "3", b"moltiplicazione 6 7"), ("server1", "4", b"3 - 5")]
    assert [line for _, line, _ in balancer.recent_answers][-1].endswith(
        b'"result":-2,"server":"server1"}\n')

    await wire.close()
    await runtime.stop()
    text = open(runtime.config.log_file).read()  # noqa: SIM115
    assert 'c1 {"id":1,"op":"somma","a":3,"b":4,"result":7,"server":"server1"}' in text
    assert any('c1 {"id":2,"error":"division by zero"' in line
               and line.endswith('"server":"server2"}') for line in text.splitlines())


async def test_exit_while_a_lone_request_is_in_flight(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=1, server_delays={"server1": 0.2})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send("somma 1 1")
    await asyncio.sleep(0.05)  # the request is on the (slow) server now
    await wire.send("exit")
    assert await wire.answer() == {"id": 1, "op": "somma", "a": 1, "b": 1, "result": 2,
                                   "server": "server1"}
    assert await wire.answer() == {"id": 2, "goodbye": True}
    assert await wire.closed()


async def test_lone_answer_for_a_client_that_left_is_discarded(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = await make_runtime(servers=1, server_delays={"server1": 0.2})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send("somma 1 1")
    await asyncio.sleep(0.05)
    # Gone at once (a reset, not a half-close), its answer still to come.
    wire.writer.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wire.writer.transport.abort()
    await wait_until(lambda: runtime.stats().answered == 1, what="the late answer")
    stats = runtime.stats()
    assert stats.discarded == 1 and stats.clients == 0
    # The balancer goes on: the next client is served.
    other = await Wire.open(runtime.balancer.port)
    await other.send("somma 2 2")
    assert (await other.answer())["result"] == 4
    await other.close()


async def test_lone_requests_at_the_in_flight_cap(make_runtime: RuntimeFactory) -> None:
    # With a cap of 1 every request fills it: reading pauses after each and
    # resumes when its answer is written.
    runtime = await make_runtime(max_inflight=1)
    wire = await Wire.open(runtime.balancer.port)
    for n in range(6):
        await wire.send(f"somma {n} 1")
        assert (await wire.answer())["result"] == n + 1
    await wire.send(*[f"somma {n} 0" for n in range(50)])
    answers = await wire.answers(50)
    assert sorted(a["result"] for a in answers) == list(range(50))
    await wire.close()

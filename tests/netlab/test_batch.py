"""The batch driver's own checks, against a fake balancer on 127.0.0.1 (no namespaces):
a lost, a duplicated and a wrong answer must each be reported."""

from __future__ import annotations

import asyncio

import orjson

from tests.netlab.batch import run_batch


async def fake_balancer(lose: int, repeat: int, falsify: int) -> asyncio.Server:
    """Answers `{"id":N,"a":A,"b":B}` with A+B, except: no answer for id `lose`, two for
    `repeat`, a wrong result for `falsify`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = orjson.loads(line)
            sid = req["id"]
            answer = orjson.dumps({"id": sid, "result": req["a"] + req["b"] + (sid == falsify),
                                   "server": "fake"}) + b"\n"
            if sid != lose:
                writer.write(answer * (2 if sid == repeat else 1))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_clean_batch_has_no_problems() -> None:
    server = await fake_balancer(0, 0, 0)
    async with server:
        batch = await run_batch(server.sockets[0].getsockname()[1], lambda: False,
                                minimum=2_000, rate=50_000, drain=5)
    assert batch.sent == 2_000 and not batch.problems()
    assert batch.by_server() == {"fake": 2_000}


async def test_lost_duplicated_and_wrong_answers_are_reported() -> None:
    server = await fake_balancer(lose=700, repeat=1_234, falsify=1_500)
    async with server:
        batch = await run_batch(server.sockets[0].getsockname()[1], lambda: False,
                                minimum=2_000, rate=50_000, drain=1)
    assert batch.lost() == [700]
    assert batch.duplicated() == [1_234]
    assert [a["id"] for a in batch.wrong()] == [1_500]
    problems = batch.problems()
    assert "1 lost" in problems and "1 answered more than once" in problems
    assert "1 wrong answers" in problems


async def test_the_batch_goes_on_while_asked_and_stops_at_its_limit() -> None:
    server = await fake_balancer(0, 0, 0)
    async with server:
        batch = await run_batch(server.sockets[0].getsockname()[1], lambda: True,
                                minimum=100, limit=3_000, rate=50_000, drain=5)
    assert batch.sent == 3_000 and not batch.problems()

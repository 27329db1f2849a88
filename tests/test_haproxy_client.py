"""The HTTP keep-alive client (`client --http`, the console on HAProxy), against a real
server's HTTP port: answers matched by order, ids as the caller knows them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.engines.http_client import HttpClient, run_http_batch
from balancer.client import ClientError
from tests.httpwire import ServerProcess, start_server


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    running = start_server("server5")
    try:
        yield running
    finally:
        running.stop()


async def test_pipelined_answers_keep_the_callers_ids(server: ServerProcess) -> None:
    client = await HttpClient.connect("127.0.0.1", server.http_port)
    try:
        futures = [client.send("somma 1 2"), client.send('{"id": 77, "op": "mul", "a": 6, "b": 7}'),
                   client.send("divisione 1 0"), client.send("3 * 5")]
        answers = await asyncio.wait_for(asyncio.gather(*futures), 10)
    finally:
        assert await client.exit() == {"goodbye": True}
    assert [a["id"] for a in answers] == [1, 77, 3, 4]
    assert [a.get("result") for a in answers] == [3, 42, None, 15]
    assert answers[2]["error"] == "division by zero"
    assert {a["server"] for a in answers} == {"server5"}
    assert not client.connected


async def test_requests_in_flight_fail_when_the_peer_goes(server: ServerProcess) -> None:
    client = await HttpClient.connect("127.0.0.1", server.http_port)
    try:
        assert (await client.request("somma 1 1"))["result"] == 2
        server.proc.kill()
        server.proc.wait(5)
        with pytest.raises(ClientError):
            await asyncio.wait_for(client.send("somma 2 2"), 10)
    finally:
        await client.close()


async def test_refused_connection_is_a_client_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ClientError, match="connection refused"):
        await HttpClient.connect("127.0.0.1", port)


async def test_a_batch_counts_every_answer_over_several_connections(
        server: ServerProcess) -> None:
    progress = await run_http_batch("127.0.0.1", server.http_port, 999, window=64,
                                    connections=4, seed=3)
    assert progress.failure is None
    assert (progress.sent, progress.answered, progress.errors) == (999, 999, 0)
    assert dict(progress.per_server) == {"server5": 999}
    assert progress.checked >= 1 and progress.bad == 0

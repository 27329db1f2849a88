"""The calculation server's HTTP/1.1 interface over real sockets, on a real server process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends.http import MAX_HEADER, status_of
from balancer.protocol import MAX_LINE
from tests.httpwire import HttpWire, ServerProcess, start_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    running = start_server("server7")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def wire(server: ServerProcess) -> Iterator[HttpWire]:
    conn = HttpWire(server.http_port)
    try:
        yield conn
    finally:
        conn.close()


def test_post_answers_the_line_protocol_json_with_the_server_name(wire: HttpWire) -> None:
    r = wire.request("somma 3 4")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json == {"id": 1, "op": "somma", "a": 3, "b": 4, "result": 7, "server": "server7"}
    r = wire.request('{"id": 42, "op": "divisione", "a": 10, "b": 4}')
    assert r.status == 200 and r.json["id"] == 42 and r.json["result"] == 2.5


def test_keep_alive_serves_many_requests_on_one_connection(wire: HttpWire) -> None:
    for i in range(1, 51):
        r = wire.request(f"moltiplicazione {i} 2")
        assert r.status == 200 and r.json["result"] == 2 * i and r.json["id"] == i
    assert "connection" not in r.headers


def test_pipelined_requests_are_answered_in_order(wire: HttpWire) -> None:
    bodies = [f"somma {i} 1000" for i in range(200)]
    data = b"".join(
        b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(b), b.encode()) for b in bodies)
    # Split mid-request, so heads and bodies arrive in pieces too.
    wire.send(data[:333])
    wire.send(data[333:])
    results = [wire.read().json["result"] for _ in bodies]
    assert results == [i + 1000 for i in range(200)]


def test_ping_is_the_health_check_with_counters(wire: HttpWire) -> None:
    wire.request("somma 1 1")
    wire.get("/ping")
    r = wire.read()
    assert r.status == 200
    assert r.json["pong"] == "server7" and r.json["served"] >= 1 and "uptime" in r.json


def test_bad_input_is_400_with_the_same_json_error(wire: HttpWire) -> None:
    r = wire.request("divisione 1 0")
    assert r.status == 400 and r.json["error"] == "division by zero"
    r = wire.request("frobnicate 1 2")
    assert r.status == 400 and "unknown operation" in r.json["error"]
    r = wire.request("somma 2 2")  # the connection stays usable
    assert r.status == 200 and r.json["result"] == 4


def test_server_fault_is_503() -> None:
    assert status_of(b'{"id":1,"error":"injected","fault":"server"}\n') == 503
    assert status_of(b'{"id":1,"error":"division by zero"}\n') == 400
    assert status_of(b'{"id":1,"result":3}\n') == 200


def test_unknown_path_is_404_and_wrong_method_405(wire: HttpWire) -> None:
    wire.get("/nowhere")
    assert wire.read().status == 404
    wire.get("/")
    assert wire.read().status == 405
    assert wire.request("somma 1 1").status == 200


def test_post_without_content_length_is_411_and_closes(wire: HttpWire) -> None:
    wire.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsomma\r\n0\r\n\r\n")
    r = wire.read()
    assert r.status == 411 and r.headers.get("connection") == "close"
    assert wire.closed()


def test_body_too_large_is_413(wire: HttpWire) -> None:
    wire.send(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_LINE + 1))
    assert wire.read().status == 413
    assert wire.closed()


def test_header_too_large_is_431(wire: HttpWire) -> None:
    wire.send(b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER + 10))
    assert wire.read().status == 431
    assert wire.closed()


def test_garbage_request_line_is_400_and_closes(wire: HttpWire) -> None:
    wire.send(b"somma 3 4\r\n\r\n")
    assert wire.read().status == 400
    assert wire.closed()


def test_connection_close_is_honoured_after_the_answer(wire: HttpWire) -> None:
    wire.post("somma 1 2")
    wire.post("somma 2 3", close=True)
    wire.post("somma 3 4")  # after close: never answered
    assert wire.read().json["result"] == 3
    last = wire.read()
    assert last.json["result"] == 5 and last.headers["connection"] == "close"
    assert wire.closed()
    assert wire.buffer == b""


def test_http10_closes_after_one_answer(server: ServerProcess) -> None:
    conn = HttpWire(server.http_port)
    try:
        conn.send(b"GET /ping HTTP/1.0\r\n\r\n")
        assert conn.read().status == 200
        assert conn.closed()
    finally:
        conn.close()


def test_the_line_protocol_still_works_beside_http(server: ServerProcess) -> None:
    import json
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"somma 5 6\n")
        line = sock.makefile("rb").readline()
    assert json.loads(line)["result"] == 11


class _Slow:
    """A server whose answers come later, in reverse order: the connection must
    still write them in request order."""

    name = "slow"
    connections = 0
    delay = 0.0

    def answer(self, line: bytes, seq: int) -> bytes:  # the Answering protocol
        return b'{"id":%d,"echo":"%b"}\n' % (seq, line)


async def test_late_answers_leave_in_request_order_and_none_resets() -> None:
    import asyncio

    from backends.http import start_http

    server = _Slow()
    loop = asyncio.get_running_loop()

    def handle(line: bytes, seq: int, reply) -> None:  # type: ignore[no-untyped-def]
        if line == b"reset":
            loop.call_later(0.05, reply, None)
            return
        loop.call_later(0.2 - 0.03 * seq, reply, server.answer(line, seq))

    listener, port, _ = await start_http(server, "127.0.0.1", 0, lambda seq: b"{}\n", handle)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bodies = [b"a", b"b", b"c", b"d", b"e"]
        writer.write(b"".join(b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n%b" % b
                              for b in bodies))
        echoes = []
        for _ in bodies:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            echoes.append((await reader.readexactly(length)).split(b'"echo":"')[1][:1])
        assert echoes == bodies
        writer.write(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nreset")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
        writer.close()
    finally:
        listener.close()


def test_answers_to_one_chunk_leave_in_one_write() -> None:
    """Pipelined requests read together are answered in one write, not one each
    (one write per request made the server four times slower here)."""
    from backends.http import HttpConnection, answer_handler
    from backends.server import CalcServer

    class Transport:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(data)

    calc = CalcServer("one")
    conn = HttpConnection(calc, answer_handler(calc), calc.pong, set())
    transport = Transport()
    conn.transport = transport  # type: ignore[assignment]
    conn.data_received(b"".join(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nsomma %d 1" % i
                                for i in range(100, 110)))
    assert len(transport.writes) == 1
    assert transport.writes[0].count(b"HTTP/1.1 200 OK") == 10

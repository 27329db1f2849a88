"""Every request gets exactly one answer, at every edge a hostile client or a broken
server can reach. Each test here failed on the core before its rebuild."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from balancer.log import RequestLog
from balancer.model import HealthPolicy
from balancer.service import Balancer, BalancerConfig
from tests.conftest import RuntimeFactory
from tests.fakeserver import FakeServers, good
from tests.wire import Wire, wait_state, wait_until

BareFactory = Callable[..., Awaitable[Balancer]]


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[BareFactory]:
    """A Balancer on port 0 in front of the given fake servers, named s1, s2…"""
    made: list[tuple[Balancer, list[FakeServers]]] = []

    async def factory(*fakes: FakeServers, interval: float = 0.1, **options: object
                      ) -> Balancer:
        config = BalancerConfig(port=0, health=HealthPolicy(interval=interval, timeout=0.5),
                                **options)  # type: ignore[arg-type]
        balancer = Balancer(config, RequestLog(tmp_path / "lb.log"))
        await balancer.start()
        made.append((balancer, list(fakes)))
        for index, fake in enumerate(fakes, 1):
            await fake.start()
            balancer.add_backend(f"s{index}")
            balancer.set_address(f"s{index}", "127.0.0.1", fake.port)
        await wait_until(lambda: all(b.eligible for b in balancer.backends), what="all UP")
        return balancer

    yield factory
    for balancer, fakes in made:
        await balancer.close(grace=0.2)
        balancer.log.close()
        for fake in fakes:
            await fake.close()


def raw_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> list[dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


# ---------------------------------------------------------------- 1.1, 1.2, 1.9


async def test_requests_before_an_over_long_line_are_answered_first(runtime) -> None:
    """1.1: the two requests read with the over-long line get their answers, then the
    final error, then the close."""
    sock = raw_socket(runtime.balancer.port)
    sock.sendall(b"somma 1 1\nsomma 2 2\n" + b"7" * 70_000 + b"\n")
    answers = await asyncio.to_thread(read_all, sock)
    sock.close()
    assert sorted(a.get("result") for a in answers[:2]) == [2, 4]
    assert {a["id"] for a in answers[:2]} == {1, 2}
    assert "line too long" in answers[2]["error"] and len(answers) == 3


async def test_blank_lines_take_no_room_and_no_id(make_runtime: RuntimeFactory) -> None:
    """1.2: with a cap of 2, blank lines before a request do not stall it."""
    runtime = await make_runtime(max_inflight=2)
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(b"\n\nsomma 1 2")
    answer = await wire.answer(timeout=5)
    assert (answer["id"], answer["result"]) == (1, 3)
    await wire.send(b"\n" * 4096 + b"  \n\r\nsomma 2 2")
    answer = await wire.answer(timeout=5)
    assert (answer["id"], answer["result"]) == (2, 4)
    await wire.close()


async def test_half_close_answers_the_unterminated_last_line(runtime) -> None:
    """1.9: `printf 'somma 2 2' | nc -N` gets its answer."""
    sock = raw_socket(runtime.balancer.port)
    sock.sendall(b"somma 1 1\nsomma 2 2")
    sock.shutdown(socket.SHUT_WR)
    answers = await asyncio.to_thread(read_all, sock)
    sock.close()
    assert sorted(a["result"] for a in answers) == [2, 4]


# ---------------------------------------------------------------- 1.3


async def test_queued_requests_do_not_make_a_fresh_server_look_frozen(
    make_runtime: RuntimeFactory,
) -> None:
    """1.3: requests that waited longer than the request timeout in the queue get the
    full timeout on the server they finally go to."""
    runtime = await make_runtime(servers=1, request_timeout=0.6,
                                 server_delays={"server1": 0.3})
    runtime.kill(1)
    await wait_state(runtime, "server1", "DOWN")
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(20)])
    await asyncio.sleep(1.0)
    assert len(runtime.balancer.waiting) == 20
    await runtime.restart(1)
    answers = await wire.answers(20, timeout=10)
    assert sorted(a["result"] for a in answers) == list(range(1, 21))
    await asyncio.sleep(0.8)
    backend = runtime.balancer.backend("server1")
    assert backend.state.value == "UP", backend.reason
    assert backend.late == 0
    await wire.close()


# ---------------------------------------------------------------- 1.4, 1.5, 1.10, 1.11


async def test_no_client_line_can_take_a_healthy_server_down(runtime) -> None:
    """1.4: lines just under the limit, re-encoded longer, used to close servers."""
    pad = ",".join(["1e5"] * 16_000)
    bad = b'{"op":"somma","a":1,"b":1,"pad":[' + pad.encode() + b"]}"
    spaced = b'{"op":"somma",' + b" " * 65_000 + b'"a":1e5,"b":1}'
    assert len(bad) < 65536 and len(spaced) < 65536
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(bad, bad, bad, spaced)
    answers = {a["id"]: a for a in await wire.answers(4, timeout=10)}
    assert all("unexpected field" in answers[i]["error"] for i in (1, 2, 3))
    assert answers[4]["result"] == 100001.0
    assert runtime.balancer.core.ring and len(runtime.balancer.core.ring) == 3
    assert all(b.state.value == "UP" for b in runtime.balancer.backends)
    await wire.close()


async def test_big_json_integers_are_exact(runtime) -> None:
    """1.5: the JSON form answers what the text form answers, exactly."""
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(b'{"op":"somma","a":10000000000000000000000,"b":1}',
                    b"somma 10000000000000000000000 1")
    lines = [await wire.reader.readline() for _ in range(2)]
    for line in lines:
        answer = json.loads(line)
        assert answer["result"] == 10000000000000000000001, line
        assert answer["a"] == 10000000000000000000000 and isinstance(answer["a"], int)
    await wire.close()


async def test_id_limits_are_the_ones_stated(runtime) -> None:
    """1.10: ids up to the documented limits are echoed; past them the error says so."""
    wire = await Wire.open(runtime.balancer.port)
    long_ok, long_bad = "x" * 256, "x" * 257
    await wire.send(json.dumps({"id": long_ok, "op": "somma", "a": 1, "b": 1}),
                    json.dumps({"id": 2**63, "op": "somma", "a": 1, "b": 2}),
                    json.dumps({"id": 10**39, "op": "somma", "a": 1, "b": 3}),
                    json.dumps({"id": long_bad, "op": "somma", "a": 1, "b": 1}),
                    json.dumps({"id": 10**41, "op": "somma", "a": 1, "b": 1}))
    answers = await wire.answers(5, timeout=10)
    by_id = {a["id"]: a for a in answers}
    assert by_id[long_ok]["result"] == 2
    assert by_id[2**63]["result"] == 3
    assert by_id[10**39]["result"] == 4
    errors = [a for a in answers if "error" in a]
    assert len(errors) == 2 and {a["id"] for a in errors} == {4, 5}
    assert all("at most 256 characters" in a["error"] and "40 digits" in a["error"]
               for a in errors)
    await wire.close()


async def test_every_form_of_ping_is_answered_by_the_balancer(runtime) -> None:
    """1.11: no client reads a server's health-check answer."""
    wire = await Wire.open(runtime.balancer.port)
    await wire.send('{"id":"p","text":"ping"}', '{"id":"q","op":"PING"}', "  Ping ",
                    '{"id":"r","text":" ping "}')
    answers = await wire.answers(4, timeout=5)
    assert all(a["pong"] == "lbconsole" and "pid" not in a for a in answers), answers
    assert not any("server" in a for a in answers)
    await wire.close()


# ---------------------------------------------------------------- 1.6


async def test_reconnecting_a_server_with_requests_in_flight_loses_none(
    make_runtime: RuntimeFactory,
) -> None:
    """1.6: set_address on an UP server holding requests answers each exactly once."""
    runtime = await make_runtime(server_delays={"server1": 0.3})
    balancer = runtime.balancer
    wire = await Wire.open(balancer.port)

    def batch(start: int, count: int) -> list[str]:
        return [json.dumps({"id": i, "op": "somma", "a": i, "b": 1})
                for i in range(start, start + count)]

    await wire.send(*batch(0, 300))
    server1 = balancer.backend("server1")
    await wait_until(lambda: len(server1.inflight) >= 50, what="server1 holding requests")
    balancer.set_address("server1", server1.host, server1.port, reason="reconnect")
    await wait_state(runtime, "server1", "UP")
    # New requests on the new connection must not land on numbers still in use.
    await wire.send(*batch(300, 900))
    answers = await wire.answers(1200, timeout=15)
    assert sorted(a["id"] for a in answers) == list(range(1200))
    assert all(a["result"] == a["id"] + 1 for a in answers)
    await asyncio.sleep(0.5)
    assert balancer.inflight_total() == 0
    await wire.close()


# ---------------------------------------------------------------- 1.7, 1.8, 1.14d


def _respond(mode: str):  # type: ignore[no-untyped-def]
    def answer(number: int, line: bytes) -> bytes | None:
        if mode == "no result":
            return b'{"id":%d}\n' % number
        if mode == "crlf":
            return good(number, line)[:-1] + b"\r\n"
        if mode == "garbage":
            return b"this is not json\n"
        if mode == "unknown id":
            return good(number + 1000, line)
        if mode == "duplicate id":
            return good(number, line) * 2
        if mode == "endless":
            return b'{"id":%d,"result":' % number + b"1" * 70_000
        raise AssertionError(mode)

    return answer


@pytest.mark.parametrize("mode", ["no result", "crlf", "garbage", "unknown id",
                                  "duplicate id", "endless"])
async def test_a_server_breaking_the_protocol_is_taken_down(bare: BareFactory,
                                                            mode: str) -> None:
    """1.7: its requests go to the good server; clients only ever see their own,
    valid JSON."""
    balancer = await bare(FakeServers(_respond(mode)), FakeServers(), interval=5.0)
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(10)])
    answers = await wire.answers(10, timeout=10)
    assert sorted(a["id"] for a in answers) == list(range(1, 11))
    assert all(a["result"] == a["id"] for a in answers), answers
    bad = balancer.backend("s1")
    assert bad.state.value == "DOWN" and "protocol violation" in bad.reason, bad.reason
    assert bad.violations >= 1
    await wire.close()


async def test_answers_in_any_key_order_are_relayed_and_counted(bare: BareFactory) -> None:
    """1.14d: an answer whose id is not the first key goes through the same path."""
    def reordered(number: int, line: bytes) -> bytes:
        _, a, b = line.split()
        return b'{"op":"somma","result":%d,"id":%d}\n' % (int(a) + int(b), number)

    balancer = await bare(FakeServers(reordered))
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(5)])
    answers = await wire.answers(5, timeout=5)
    assert sorted(a["id"] for a in answers) == [1, 2, 3, 4, 5]
    assert all(a["result"] == a["id"] and a["server"] == "s1" for a in answers)
    backend = balancer.backend("s1")
    assert backend.answered == 5 and backend.state.value == "UP"
    await wire.close()


async def test_error_counts_are_exact_when_an_answer_is_split(bare: BareFactory) -> None:
    """1.8: 10 results and 10 errors, cut in the middle of a line, count as such."""
    fake = FakeServers(lambda number, line: None)
    balancer = await bare(fake, interval=30.0)  # no pong may land inside a split line
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(20)])
    await wait_until(lambda: len(fake.seen) == 20, what="the server read all 20")
    numbers = [int(n) for n in balancer.backend("s1").inflight]
    body = b"".join(
        b'{"id":%d,"error":"division by zero"}\n' % n if i % 2 else
        b'{"id":%d,"op":"somma","a":1,"b":1,"result":2}\n' % n
        for i, n in enumerate(numbers))
    for start in range(0, len(body), 37):
        fake.write(body[start:start + 37])
        await asyncio.sleep(0.005)
    await wire.answers(20, timeout=5)
    backend = balancer.backend("s1")
    assert (backend.served, backend.errors) == (10, 10)
    await wire.close()


# ---------------------------------------------------------------- 1.12


async def test_sigterm_resends_what_a_frozen_server_holds(make_runtime: RuntimeFactory) -> None:
    """1.12: shutting down with a frozen server and a healthy one, within the grace."""
    runtime = await make_runtime(servers=2, request_timeout=30.0)
    runtime.freeze(1)
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(40)])
    await wait_until(lambda: len(runtime.balancer.backend("server1").inflight) == 20,
                     what="server1 holding half")
    closing = asyncio.create_task(runtime.balancer.close(grace=2.0))
    answers = await wire.answers(40, timeout=10)
    await closing
    runtime.thaw(1)
    assert not [a for a in answers if "error" in a]
    assert sorted(a["result"] for a in answers) == list(range(1, 41))
    await wire.close()


# ---------------------------------------------------------------- 1.13


def test_log_rotation_keeps_every_file_within_its_limit(tmp_path: Path) -> None:
    """1.13: a 20,000-byte limit is not a 1.7 MB file, however big a batch is."""
    path = tmp_path / "rot.log"
    log = RequestLog(path, max_bytes=20_000, backups=3)

    async def write() -> None:
        log.start()
        body = [b'{"id":%d,"result":%d}\n' % (i, i) for i in range(60_000)]
        log.lines(b"c1 ", body)
        log.close()

    asyncio.run(write())
    files = [path, *(path.with_name(f"rot.log.{i}") for i in (1, 2, 3))]
    sizes = [f.stat().st_size for f in files if f.exists()]
    assert len(sizes) == 4
    assert max(sizes) <= 20_000, sizes
    assert min(sizes[1:]) > 19_000, sizes  # the rotated files are full, not cut early


# ---------------------------------------------------------------- 1.14


async def test_requests_re_sent_into_a_full_queue_are_refused(bare: BareFactory) -> None:
    """1.14b: re-dispatch respects max_queue like any other request."""
    fake = FakeServers(lambda number, line: None)
    balancer = await bare(fake, max_queue=5, interval=5.0)
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(20)])
    await wait_until(lambda: len(fake.seen) == 20, what="the server read all 20")
    await fake.close()
    answers = await wire.answers(15, timeout=5)
    assert all("queue full" in a["error"] for a in answers)
    assert len(balancer.waiting) == 5
    await wire.close()


async def test_a_check_of_the_old_address_cannot_take_the_new_process_down(
    bare: BareFactory,
) -> None:
    """1.14c: a check still waiting on the old process is ignored after a restart."""
    silent = FakeServers(silent=True)
    await silent.start()
    fresh = FakeServers()
    await fresh.start()
    balancer = await bare(FakeServers(), interval=0.3)
    backend = balancer.backend("s1")
    balancer.set_address("s1", "127.0.0.1", silent.port)
    await asyncio.sleep(0.15)  # a check is now waiting for the silent server's pong
    balancer.set_address("s1", "127.0.0.1", fresh.port)
    await wait_until(lambda: backend.state.value == "UP", what="UP on the new address")
    await asyncio.sleep(1.0)
    assert backend.state.value == "UP", backend.reason
    await silent.close()
    await fresh.close()


async def test_stop_then_restart_does_not_stop_the_new_process(
    make_runtime: RuntimeFactory,
) -> None:
    """1.14a: a stop still draining when a restart starts leaves the new process up."""
    runtime = await make_runtime(servers=2, server_delays={"server1": 0.6})
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(10)])
    stopping = asyncio.create_task(runtime.stop_server(1, drain_timeout=3.0))
    await asyncio.sleep(0.1)
    await runtime.restart(1)
    await stopping
    proc = runtime.supervisor.servers["server1"]
    await asyncio.sleep(0.3)
    assert proc.alive, "the restarted process was stopped by the earlier stop"
    await wire.answers(10, timeout=10)
    await wire.close()


# ---------------------------------------------------------------- retries and ejection


def _faulty(every: int):  # type: ignore[no-untyped-def]
    def answer(number: int, line: bytes) -> bytes:
        if every and number % every == 0:
            return b'{"id":%d,"error":"server fault (injected)","fault":"server"}\n' % number
        return good(number, line)

    return answer


async def test_a_server_fault_is_retried_once_elsewhere(bare: BareFactory) -> None:
    """The client gets the other server's result, with attempts 2."""
    balancer = await bare(FakeServers(_faulty(1)), FakeServers(), interval=5.0, eject_after=0,
                          retry_budget=1.0)
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(10)])
    answers = sorted(await wire.answers(10, timeout=5), key=lambda a: a["id"])
    assert all(a["result"] == a["id"] and a["server"] == "s2" for a in answers), answers
    moved = [a for a in answers if a.get("attempts") == 2]
    assert len(moved) == 5
    assert balancer.backend("s1").retries == 5 and balancer.core.retries == 5
    await wire.close()


async def test_past_the_retry_budget_the_fault_is_the_answer(bare: BareFactory) -> None:
    balancer = await bare(FakeServers(_faulty(1)), FakeServers(), interval=5.0,
                          eject_after=0, retry_budget=0.0)
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(40)])
    answers = await wire.answers(40, timeout=5)
    faults = [a for a in answers if a.get("fault") == "server"]
    assert balancer.core.retries == 3  # the floor of the budget
    assert len(faults) == 20 - 3
    assert all(a["server"] == "s1" for a in faults)
    await wire.close()


async def test_faults_in_a_row_eject_a_server_until_its_checks_pass(bare: BareFactory) -> None:
    fake = FakeServers(_faulty(1))
    balancer = await bare(fake, FakeServers(), FakeServers(), interval=0.1, eject_after=3,
                          eject_time=0.5)
    backend = balancer.backend("s1")
    wire = await Wire.open(balancer.port)
    for i in range(12):
        await wire.send(f"somma {i} 1")
        await wire.answer(timeout=5)
    assert backend.ejections == 1
    fake.answer = good
    await wait_until(lambda: backend.state.value == "UP", timeout=5, what="s1 back UP")
    balancer.log.flush()
    await asyncio.sleep(0.1)
    log = Path(balancer.log.path).read_text()
    assert "UP -> EJECTED: ejected for 0.5s after 3 server faults" in log
    assert "EJECTED -> DOWN: ejection over" in log
    await wire.close()


async def test_client_errors_are_never_retried(bare: BareFactory) -> None:
    def client_error(number: int, line: bytes) -> bytes:
        return b'{"id":%d,"error":"division by zero"}\n' % number

    balancer = await bare(FakeServers(client_error), FakeServers(client_error), interval=5.0,
                          retry_budget=1.0, eject_after=2)
    wire = await Wire.open(balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(10)])
    answers = await wire.answers(10, timeout=5)
    assert all(a["error"] == "division by zero" and "attempts" not in a for a in answers)
    assert balancer.core.retries == 0
    assert all(b.ejections == 0 and b.state.value == "UP" for b in balancer.backends)
    await wire.close()


async def test_a_late_answer_last_in_a_chunk_is_dropped_and_the_rest_delivered(
    bare: BareFactory,
) -> None:
    """A chunk whose last line is a late answer (its request was answered elsewhere
    while the server stayed connected) still delivers the answers before it."""
    held: list[tuple[int, bytes]] = []
    fake = FakeServers(lambda number, line: held.append((number, line)) and None)
    balancer = await bare(fake, FakeServers(), request_timeout=0.3, interval=0.1)
    s1 = balancer.backend("s1")
    wire = await Wire.open(balancer.port)
    await wire.send("somma 1 1")
    first = await wire.answer(timeout=5)  # s1 held it: re-sent to s2 after 0.3 s
    assert first["server"] == "s2" and first["attempts"] == 2
    await wait_until(lambda: s1.state.value == "UP", timeout=5, what="s1 back UP")
    await wire.send("somma 2 2", "somma 3 3")  # one of them goes to s1
    await wait_until(lambda: len(held) == 2, timeout=5, what="s1 holding the second")
    (old_number, old_line), (new_number, new_line) = held
    fake.write(good(new_number, new_line) + good(old_number, old_line))
    answers = await wire.answers(2, timeout=5)
    assert sorted(a["result"] for a in answers) == [4, 6]
    assert s1.late == 1 and s1.state.value == "UP"
    await wire.close()


def test_the_routing_sample_keeps_up_with_a_long_batch() -> None:
    """The Routing panel's sampler spends its budget per 20 ms window, then starts
    again: a batch's later chunks show too, not only those of its first window."""
    import time

    from balancer.core import Core
    from balancer.model import ServerState

    class Asker:
        name, number, alive, pending = "c1", 1, True, 0

        def __init__(self) -> None:
            self.out: list[bytes] = []

        def answered(self, origin: str | None) -> None: ...

        def flush(self) -> None: ...

    class Loop:  # the core only asks its loop to call flush_all soon
        def call_soon(self, callback: object) -> None: ...

    core = Core(BalancerConfig(), RequestLog(None))
    core.bind(Loop())  # type: ignore[arg-type]
    written: list[bytes] = []
    for name in ("s1", "s2"):
        backend = core.add_backend(name, "127.0.0.1", 1)
        core.attach(backend, object(), written.append)
        core.set_health(backend, ServerState.UP, "test")
    client = Asker()
    for chunk in range(12):
        lines = [b"somma %d 1" % (chunk * 64 + i) for i in range(64)]
        core.dispatch(client, [b'{"id":%d' % (chunk * 64 + i + 1) for i in range(64)], lines)
        core.flush_all()
        if chunk % 3 == 2:  # three chunks spend a window's budget (a busy batch)...
            time.sleep(0.025)  # ...and the next window starts
    latest = max(int(route.request_id) for route in core.routes.recent)
    assert latest > 9 * 64, latest  # from the last window, not only the first

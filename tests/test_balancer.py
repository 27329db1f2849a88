"""The balancer over real sockets with real server subprocesses."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from app.runtime import Runtime
from balancer.protocol import check_answer
from tests.conftest import RuntimeFactory
from tests.wire import Wire, wait_until

OPS = ["somma", "sottrazione", "moltiplicazione", "divisione"]


def state(runtime: Runtime, name: str) -> str:
    return runtime.balancer.backend(name).state.value


async def sequential_servers(wire: Wire, count: int) -> list[str]:
    servers = []
    for _ in range(count):
        await wire.send("somma 1 1")
        answer = await wire.answer()
        assert answer["result"] == 2
        servers.append(answer["server"])
    return servers


async def test_round_robin_order_skip_and_rejoin(runtime: Runtime) -> None:
    wire = await Wire.open(runtime.balancer.port)
    order = await sequential_servers(wire, 9)
    assert order == ["server1", "server2", "server3"] * 3

    runtime.kill(2)
    await wait_until(lambda: state(runtime, "server2") == "DOWN", what="server2 DOWN")
    after_kill = await sequential_servers(wire, 6)
    assert "server2" not in after_kill
    assert after_kill in (["server1", "server3"] * 3, ["server3", "server1"] * 3)

    await runtime.restart(2)
    await wait_until(lambda: state(runtime, "server2") == "UP", what="server2 back UP")
    rejoined = await sequential_servers(wire, 6)
    assert Counter(rejoined) == {"server1": 2, "server2": 2, "server3": 2}
    start = rejoined.index("server1")
    assert (rejoined * 2)[start:start + 3] == ["server1", "server2", "server3"]
    await wire.close()


async def test_ten_thousand_pipelined_requests_answered_once_and_right(runtime: Runtime) -> None:
    rng = random.Random(7)
    lines = []
    for _ in range(10_000):
        op = rng.choice(OPS)
        lines.append(f"{op} {rng.randint(-1000, 1000)} {rng.randint(1, 1000)}")
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*lines)
    answers = await wire.answers(10_000, timeout=60)
    ids = Counter(a["id"] for a in answers)
    assert set(ids) == set(range(1, 10_001)) and max(ids.values()) == 1
    for answer in answers:
        op, a, b = lines[answer["id"] - 1].split()
        assert (answer["op"], answer["a"], answer["b"]) == (op, int(a), int(b))
        assert check_answer(answer), answer
    per_server = Counter(a["server"] for a in answers)
    assert per_server == {"server1": 3334, "server2": 3333, "server3": 3333}
    await wire.close()


async def test_random_requests_draw_operands_in_range(runtime: Runtime) -> None:
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*(OPS * 50))
    answers = await wire.answers(200)
    assert all(1 <= a["a"] <= 50 and 1 <= a["b"] <= 50 for a in answers)
    assert all(check_answer(a) for a in answers)
    await wire.close()


async def test_sigkill_mid_batch_loses_and_duplicates_nothing(runtime: Runtime) -> None:
    total = 20_000
    lines = [f"moltiplicazione {i} 3" for i in range(1, total + 1)]
    wire = await Wire.open(runtime.balancer.port)
    received: list[dict] = []

    async def reader() -> None:
        while len(received) < total:
            received.append(await wire.answer(timeout=30))

    task = asyncio.create_task(reader())
    for start in range(0, total, 2000):
        if start == 6000:
            # Freeze first so server2 surely holds requests when it dies.
            runtime.freeze(2)
        await wire.send(*lines[start:start + 2000])
        if start == 6000:
            await wait_until(lambda: len(runtime.balancer.backend("server2").inflight) > 100,
                           what="requests stuck on server2")
            runtime.kill(2)
        await asyncio.sleep(0.005)
    await asyncio.wait_for(task, 60)
    ids = Counter(a["id"] for a in received)
    assert len(received) == total
    assert set(ids) == set(range(1, total + 1)) and max(ids.values()) == 1
    assert all("error" not in a and a["result"] == a["id"] * 3 for a in received)
    assert runtime.balancer.backend("server2").state.value == "DOWN"
    assert runtime.balancer.backend("server2").redispatched > 100
    await wire.close()
    await wait_until(lambda: runtime.balancer.inflight_total() == 0, what="in-flight maps empty")


BAD_INPUTS = [
    (b"foo 1 2", "unknown operation"),
    (b"somma x 2", "not a number"),
    (b"somma 1 2 3", "too many operands"),
    (b"somma 1", "takes two operands"),
    (b'{"id": 1, "op": "somma"', "malformed JSON"),
    (b'{"op": "somma", "a": "x", "b": 1}', "not a number"),
    (b"[1,2,3]", "must be an object"),
    (b"\xc3\x28 1 2", "invalid UTF-8"),
    (b"divisione 1 0", "division by zero"),
    (b"somma 1e999 1", "out of range"),
    (b'{"op": "somma", "a": 1, "b": 2, "c": 3}', "unexpected field"),
]


async def test_bad_input_gets_an_error_and_the_connection_goes_on(runtime: Runtime) -> None:
    wire = await Wire.open(runtime.balancer.port)
    for line, message in BAD_INPUTS:
        await wire.send(line)
        answer = await wire.answer()
        assert message in answer.get("error", ""), (line, answer)
        await wire.send("somma 2 2")
        assert (await wire.answer())["result"] == 4
    await wire.close()


async def test_overlong_line_gets_a_final_error_and_the_connection_closes(
    runtime: Runtime,
) -> None:
    wire = await Wire.open(runtime.balancer.port)
    other = await Wire.open(runtime.balancer.port)
    wire.writer.write(b"somma 1 1\n" + b"9" * (70 * 1024))
    answers = [await wire.answer(), await wire.answer()]
    assert any(a.get("result") == 2 for a in answers)
    assert any("line too long" in a.get("error", "") for a in answers)
    assert await wire.closed()
    await other.send("somma 5 5")
    assert (await other.answer())["result"] == 10
    await other.close()


async def test_exit_answers_what_is_in_flight_then_says_goodbye(runtime: Runtime) -> None:
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*[f"somma {i} 1" for i in range(500)], "exit", "somma 9 9")
    answers = await wire.answers(501)
    assert answers[-1] == {"id": 501, "goodbye": True}
    assert sorted(a["id"] for a in answers[:-1]) == list(range(1, 501))
    assert await wire.closed()


async def test_ids_json_and_text_share_the_connection(runtime: Runtime) -> None:
    wire = await Wire.open(runtime.balancer.port)
    await wire.send('{"id": "abc", "op": "mul", "a": 6, "b": 7}', "3 * 4",
                    '{"op": "div", "a": 9, "b": 3}', "ping")
    answers = {a["id"]: a for a in await wire.answers(4)}
    assert answers["abc"]["result"] == 42 and answers["abc"]["op"] == "moltiplicazione"
    assert answers[2]["result"] == 12
    assert answers[3]["result"] == 3
    assert answers[4]["pong"] == "lbconsole" and answers[4]["servers_up"] == 3
    await wire.close()


async def test_no_server_up_requests_wait_then_get_served(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=1, queue_timeout=10.0)
    runtime.kill(1)
    await wait_until(lambda: state(runtime, "server1") == "DOWN", what="server1 DOWN")
    wire = await Wire.open(runtime.balancer.port)
    await wire.send("somma 20 22", "somma 1 1")
    await asyncio.sleep(0.3)
    assert len(runtime.balancer.waiting) == 2
    await runtime.restart(1)
    answers = await wire.answers(2)
    assert sorted(a["result"] for a in answers) == [2, 42]
    await wire.close()


async def test_no_server_up_past_the_queue_timeout(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=1, queue_timeout=0.5)
    runtime.kill(1)
    await wait_until(lambda: state(runtime, "server1") == "DOWN", what="server1 DOWN")
    wire = await Wire.open(runtime.balancer.port)
    started = time.monotonic()
    await wire.send("somma 1 1")
    answer = await wire.answer()
    assert answer == {"id": 1, "error": "no server available"}
    assert time.monotonic() - started >= 0.5
    await wire.close()


async def test_log_file_records_connections_requests_answers_states_and_actions(
    runtime: Runtime,
) -> None:
    wire = await Wire.open(runtime.balancer.port)
    await wire.send("somma 3 4", "divisione 1 0", "nonsense")
    await wire.answers(3)
    runtime.kill(3)
    await wait_until(lambda: state(runtime, "server3") == "DOWN", what="server3 DOWN")
    await wire.send("exit")
    await wire.answer()
    await wire.close()
    await runtime.stop()
    text = open(runtime.config.log_file).read()  # noqa: SIM115
    for needle in (
        "listening on 127.0.0.1:",
        "c1 connected from 127.0.0.1:",
        '{"id":1,"op":"somma","a":3,"b":4,"result":7,"server":"server1"}',
        '"error":"division by zero"',
        "unknown operation 'nonsense'",
        "operator: kill server3 (SIGKILL pid",
        "server3 UP -> DOWN: connection lost",
        "server3 process",
        "killed by SIGKILL",
        "c1 said goodbye after 3 requests",
        "server1 STARTING -> UP: first check passed",
        "all servers stopped",
    ):
        assert needle in text, needle
    first = text.splitlines()[0]
    assert first[:4].isdigit() and first[4] == "-" and first[10] == " " and first[19] == "."

"""Injected faults over a real server process: flaky, resets, black hole, heal, control errors."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.serverproc import calc_server  # noqa: F401
from tests.wire import pid_alive


async def faulted_ids(server, count: int) -> set[int]:
    wire = await server.wire()
    await wire.send(*(["somma 3 4"] * count))
    answers = await wire.answers(count)
    await wire.close()
    faulted = set()
    for answer in answers:
        if "fault" in answer:
            assert answer == {"id": answer["id"], "error": "server fault (injected)",
                              "fault": "server"}
            faulted.add(answer["id"])
        else:
            assert answer["result"] == 7
    return faulted


async def test_flaky_share_is_within_margins_and_repeatable(calc_server) -> None:  # noqa: F811
    first = await calc_server("--seed", "7", "--flaky", "0.3")
    second = await calc_server("--seed", "7")
    assert (await second.set(flaky=0.3))["flaky"] == 0.3
    faulted = await faulted_ids(first, 2000)
    assert 0.25 * 2000 < len(faulted) < 0.35 * 2000
    assert await faulted_ids(second, 2000) == faulted  # same seed, same faults
    stats = await first.stats()
    assert stats["faults_injected"] == len(faulted)
    assert stats["faults"] == {"flaky": 0.3}


async def test_client_errors_stay_client_errors_and_pings_are_spared(calc_server) -> None:  # noqa: F811
    server = await calc_server("--seed", "1", "--flaky", "1")
    wire = await server.wire()
    await wire.send("divisione 1 0", "bogus", "ping", "somma 1 1")
    div, bogus, pong, fault = await wire.answers(4)
    assert div["error"] == "division by zero" and "fault" not in div
    assert "unknown operation" in bogus["error"] and "fault" not in bogus
    assert pong["pong"] == "t" and pong["faults"] == {"flaky": 1.0}
    assert fault["fault"] == "server" and fault["id"] == 4
    await wire.close()


async def test_resets_close_the_connection_instead_of_answering(calc_server) -> None:  # noqa: F811
    server = await calc_server("--seed", "3")
    await server.set(resets=1)
    wire = await server.wire()
    await wire.send("ping")
    assert (await wire.answer())["faults"] == {"resets": 1.0}  # pings are never reset
    await wire.send("somma 1 2", "somma 3 4")
    with pytest.raises((ConnectionError, OSError)):
        await wire.answer()
    await wire.close()
    await server.set(resets=0.5)
    closed = 0
    for _ in range(5):
        wire = await server.wire()
        await wire.send(*(["somma 1 1"] * 20))
        try:
            await wire.answers(20, timeout=5)
        except (ConnectionError, OSError):
            closed += 1
        await wire.close()
    assert closed == 5  # 20 requests at 50%: each connection is reset
    assert (await server.stats())["resets_injected"] == 6


async def test_blackhole_silences_everything_until_heal(calc_server) -> None:  # noqa: F811
    server = await calc_server("--latency", "5", "--speed", "2")
    before = await server.wire()
    await before.send('{"id": 1, "op": "somma", "a": 1, "b": 1, "work_ms": 100}', "ping")
    assert (await before.answer())["busy"] == 1  # the work was read before the black hole
    settings = await server.set(blackhole=True, flaky=0.5)
    assert settings["blackhole"] is True
    await before.send("ping", *(["somma 1 1"] * 25))
    with pytest.raises(TimeoutError):
        await before.answer(timeout=0.5)  # neither the work's answer nor the new ones
    after = await server.wire()  # the port still accepts: alive, but silent
    await after.send("ping")
    with pytest.raises(TimeoutError):
        await after.answer(timeout=0.3)
    await after.send(*(["somma 1 1"] * 25))
    await asyncio.sleep(0.2)
    assert pid_alive(server.pid)
    stats = await server.stats()
    assert stats["faults"]["blackhole"] is True
    # Nothing was read while black-holed: only the first request was counted.
    assert (stats["served"], stats["errors"], stats["faults_injected"]) == (1, 0, 0)
    healed = await server.set(heal=True)
    assert healed == {"workers": None, "speed": 1.0, "latency_ms": 0.0, "flaky": 0.0,
                      "resets": 0.0, "blackhole": False}
    held = await before.answers(27, timeout=5)
    assert sorted(a["id"] for a in held) == [1, *range(3, 29)]
    pong, *rest = await after.answers(26, timeout=5)  # read once healed, in order
    assert pong["faults"] == {} and pong["speed"] == 1.0
    assert [a["id"] for a in rest] == list(range(2, 27))
    await before.close()
    await after.close()


async def test_the_control_channel_refuses_bad_orders(calc_server) -> None:  # noqa: F811
    server = await calc_server()
    for order, message in [
        ({"set": {"flaky": 2}}, "flaky must be a fraction from 0 to 1"),
        ({"set": {"workers": 0}}, "workers must be a whole number"),
        ({"set": {"speed": 0}}, "speed must be above 0"),
        ({"set": {"latency_ms": -1}}, "latency_ms must be from 0"),
        ({"set": {"blackhole": "yes"}}, "blackhole must be true or false"),
        ({"set": {"colour": 1}}, "unknown setting 'colour'"),
        ({"set": [1]}, '"set" takes an object'),
        ({"dance": True}, "unknown order"),
    ]:
        reply = await server.order(order)
        assert reply["ok"] is False and message in reply["error"], (order, reply)
    assert (await server.order({"get": "settings"}))["settings"]["flaky"] == 0.0
    assert server.process.stdin is not None
    server.process.stdin.write(b"not json\n")
    line = await asyncio.wait_for(server.process.stdout.readline(), 5)  # type: ignore[union-attr]
    assert b'"ok":false' in line


async def test_orders_are_not_accepted_on_the_data_port(calc_server) -> None:  # noqa: F811
    server = await calc_server()
    wire = await server.wire()
    await wire.send('{"set": {"blackhole": true}}', '{"op": "ping", "set": {"workers": 1}}')
    refused, pong = await wire.answers(2)
    assert "error" in refused
    assert pong["workers"] is None
    assert (await server.order({"get": "settings"}))["settings"]["blackhole"] is False
    await wire.close()


async def test_stdin_eof_ends_the_server(calc_server) -> None:  # noqa: F811
    server = await calc_server()
    assert server.process.stdin is not None
    server.process.stdin.close()
    assert await asyncio.wait_for(server.process.wait(), 10) == 0
    assert not os.path.exists(f"/proc/{server.pid}/cmdline") or not pid_alive(server.pid)

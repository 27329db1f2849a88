"""The supervisor's control API over real server processes: live settings, errors, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from backends.supervisor import ProcessState, ServerSupervisor
from tests.wire import Wire

HEALED = {"workers": None, "speed": 1.0, "latency_ms": 0.0, "flaky": 0.0, "resets": 0.0,
          "blackhole": False}


@pytest.fixture
async def supervisor() -> AsyncIterator[ServerSupervisor]:
    sup = ServerSupervisor(ready_timeout=20)
    try:
        yield sup
    finally:
        with contextlib.suppress(Exception):
            await sup.close()
        sup.kill_all_now()


async def ping(sup: ServerSupervisor, name: str, timeout: float = 10.0) -> dict:
    port = sup.servers[name].port
    assert port is not None
    wire = await Wire.open(port)
    try:
        await wire.send("ping")
        return await wire.answer(timeout)
    finally:
        await wire.close()


async def test_declared_settings_reach_the_process_and_change_live(supervisor) -> None:
    supervisor.declare("s1", workers=3, speed=0.5, latency_ms=20, seed=5)
    server = await supervisor.spawn("s1")
    assert server.state is ProcessState.RUNNING, server.reason
    pong = await ping(supervisor, "s1")
    assert (pong["workers"], pong["speed"], pong["latency_ms"]) == (3, 0.5, 20.0)
    settings = await supervisor.control("s1", workers=4, flaky=0.3)
    assert settings == {**HEALED, "workers": 4, "speed": 0.5, "latency_ms": 20.0, "flaky": 0.3}
    assert supervisor.settings("s1") == settings
    pong = await ping(supervisor, "s1")
    assert pong["workers"] == 4 and pong["faults"] == {"flaky": 0.3}
    assert (await supervisor.control("s1", workers=None))["workers"] is None


async def test_bad_orders_raise_and_change_nothing(supervisor) -> None:
    supervisor.declare("s1")
    await supervisor.spawn("s1")
    with pytest.raises(KeyError, match="no server named 'nope'"):
        await supervisor.control("nope", workers=2)
    for bad, message in [({"flaky": 2}, "flaky must be a fraction"),
                         ({"workers": 0}, "workers must be a whole number"),
                         ({"speed": -1}, "speed must be above 0"),
                         ({"latency_ms": "x"}, "latency_ms must be a number"),
                         ({"colour": "red"}, "unknown setting")]:
        with pytest.raises(ValueError, match=message):
            await supervisor.control("s1", **bad)
    assert supervisor.settings("s1") == HEALED
    assert (await ping(supervisor, "s1"))["faults"] == {}
    await supervisor.stop("s1")
    with pytest.raises(KeyError, match="s1 is not running"):
        await supervisor.control("s1", workers=2)
    with pytest.raises(KeyError):
        supervisor.settings("nope")


async def test_settings_survive_restart_and_crash_until_healed(supervisor) -> None:
    supervisor.declare("s1")
    first = (await supervisor.spawn("s1")).pid
    await supervisor.control("s1", workers=2, speed=0.5, flaky=0.2, latency_ms=1)
    await supervisor.restart("s1")
    assert supervisor.servers["s1"].pid != first
    pong = await ping(supervisor, "s1")
    assert (pong["workers"], pong["speed"], pong["latency_ms"]) == (2, 0.5, 1.0)
    assert pong["faults"] == {"flaky": 0.2}
    supervisor.kill("s1")
    await supervisor.servers["s1"].watcher  # type: ignore[misc]
    await supervisor.spawn("s1")  # a crash, then a start: the same settings again
    assert (await ping(supervisor, "s1"))["faults"] == {"flaky": 0.2}
    healed = await supervisor.control("s1", heal=True)
    assert healed == {**HEALED, "workers": 2}  # heal keeps the capacity
    await supervisor.restart("s1")
    pong = await ping(supervisor, "s1")
    assert pong["faults"] == {} and pong["speed"] == 1.0 and pong["workers"] == 2


async def test_blackhole_silences_the_data_port_not_the_control_channel(supervisor) -> None:
    supervisor.declare("s1")
    await supervisor.spawn("s1")
    assert (await supervisor.control("s1", blackhole=True))["blackhole"] is True
    with pytest.raises(TimeoutError):
        await ping(supervisor, "s1", timeout=0.5)
    stats = await supervisor.server_stats("s1")
    assert stats["faults"] == {"blackhole": True}
    await supervisor.control("s1", heal=True)
    assert (await ping(supervisor, "s1"))["pong"] == "s1"


async def test_an_order_to_a_frozen_server_applies_when_it_thaws(supervisor) -> None:
    supervisor.declare("s1")
    await supervisor.spawn("s1")
    supervisor.freeze("s1")
    assert (await supervisor.control("s1", workers=5))["workers"] == 5
    supervisor.thaw("s1")
    assert (await ping(supervisor, "s1"))["workers"] == 5
    assert (await supervisor.control("s1", speed=2))["speed"] == 2


async def test_supervisor_defaults_and_seed_reach_every_server(supervisor) -> None:
    sup = ServerSupervisor(workers=4, speed=0.5, seed=11)
    try:
        await sup.start(2)
        seeds = {sup.servers[n].seed for n in ("server1", "server2")}
        assert len(seeds) == 2 and None not in seeds
        for name in ("server1", "server2"):
            pong = await ping(sup, name)
            assert (pong["workers"], pong["speed"]) == (4, 0.5)
    finally:
        await sup.close()
        sup.kill_all_now()


async def test_an_order_while_starting_reaches_the_new_process(supervisor) -> None:
    supervisor.declare("s1")
    spawning = asyncio.ensure_future(supervisor.spawn("s1"))
    for _ in range(500):
        if supervisor.servers["s1"].process is not None:
            break
        await asyncio.sleep(0.01)
    assert supervisor.servers["s1"].state is ProcessState.STARTING
    assert (await supervisor.control("s1", workers=7))["workers"] == 7
    await spawning
    assert (await ping(supervisor, "s1"))["workers"] == 7

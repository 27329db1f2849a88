"""`--engine haproxy` over real processes: a real HAProxy, real servers, real sockets.

Skipped, with one reason, only where haproxy is not on PATH (`.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.engines.haproxy import HaproxyEngine
from app.engines.haproxy_config import BACKEND
from app.runtime import RuntimeConfig
from tests.httpwire import AsyncHttpWire

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not on PATH (apt-get install haproxy)")

EngineFactory = Callable[..., Awaitable[HaproxyEngine]]


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[EngineFactory]:
    started: list[HaproxyEngine] = []

    async def factory(**overrides: object) -> HaproxyEngine:
        options: dict[str, object] = {"port": 0, "log_file": str(tmp_path / "loadbalancer.log"),
                                      "check_interval": 0.2, "rise": 1, "fall": 2}
        options.update(overrides)
        engine = HaproxyEngine(RuntimeConfig(**options))  # type: ignore[arg-type]
        started.append(engine)
        await engine.start()
        assert await engine.wait_until_up(timeout=20), engine.rows()
        return engine

    try:
        yield factory
    finally:
        for engine in started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(engine.stop(grace=1.0), 15)
            engine.kill_now()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> HaproxyEngine:
    return await make_engine()


async def servers_of(wire: AsyncHttpWire, count: int) -> list[str]:
    """Send `count` requests one after another on one keep-alive connection."""
    names = []
    for i in range(count):
        r = await wire.request(f"somma {i} 1")
        assert r.status == 200, r.body
        assert r.json["result"] == i + 1
        names.append(r.json["server"])
    return names


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_strict_per_request_rotation_on_one_connection(engine: HaproxyEngine) -> None:
    wire = await AsyncHttpWire.open(engine.port)
    try:
        names = await servers_of(wire, 9)
    finally:
        await wire.close()
    cycle = ["server1", "server2", "server3"]
    start = cycle.index(names[0])
    assert names == [cycle[(start + i) % 3] for i in range(9)], names


async def test_drain_maint_ready_through_the_runtime_api(engine: HaproxyEngine) -> None:
    wire = await AsyncHttpWire.open(engine.port)
    try:
        assert "draining" in await engine.drain("server2")
        assert engine.states["server2"] == "DRAINING"
        assert "server2" not in await servers_of(wire, 8)
        await engine.set_state("server3", "maint")
        assert engine.states["server3"] == "STOPPED"
        assert set(await servers_of(wire, 6)) == {"server1"}
        assert "back in the rotation" in await engine.drain("server2")
        await engine.set_state("server3", "ready")
        assert set(await servers_of(wire, 9)) == {"server1", "server2", "server3"}
        # HAProxy's own `show stat` agrees with the engine's rows.
        stat = {r.server: r.status.split()[0] for r in await engine.api.show_stat()
                if r.backend == BACKEND}
        assert stat == {"server1": "UP", "server2": "UP", "server3": "UP"}
        assert [r.state for r in engine.rows()] == ["UP", "UP", "UP"]
    finally:
        await wire.close()


async def test_a_killed_server_is_detected_and_its_requests_retried(
        engine: HaproxyEngine) -> None:
    total, per_conn, window = 600, 200, 8
    answers: list[tuple[int, dict]] = []
    killed = asyncio.Event()

    async def client(index: int) -> None:
        wire = await AsyncHttpWire.open(engine.port)
        try:
            sent = got = 0
            while got < per_conn:
                while sent < per_conn and sent - got < window:
                    wire.post(f"moltiplicazione {index * 1000 + sent} 3")
                    sent += 1
                r = await wire.read()
                answers.append((r.status, r.json))
                got += 1
                if len(answers) == total // 3 and not killed.is_set():
                    killed.set()
                    engine.kill("server2")
        finally:
            await wire.close()

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(3))), 60)
    assert killed.is_set()
    assert len(answers) == total
    bad = [a for a in answers if a[0] != 200]
    assert not bad, bad[:5]
    results = sorted(a[1]["result"] for a in answers)
    assert results == sorted(3 * (i * 1000 + k) for i in range(3) for k in range(per_conn))
    deadline = time.monotonic() + 10
    while engine.states.get("server2") != "DOWN" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.states["server2"] == "DOWN"
    row = next(r for r in engine.rows() if r.name == "server2")
    assert "L4CON" in row.reason or "L4" in row.reason or "L7" in row.reason, row.reason
    after = [a[1]["server"] for a in answers[total // 3 + 3 * window + 30:]]
    assert "server2" not in after


async def test_add_appears_in_show_stat_and_takes_traffic(engine: HaproxyEngine) -> None:
    said = await engine.add_server()
    assert said.startswith("server4 added"), said
    stat = {r.server: r for r in await engine.api.show_stat() if r.backend == BACKEND}
    assert "server4" in stat
    assert stat["server4"].address.endswith(f":{engine.supervisor.servers['server4'].http_port}")
    assert await engine.wait_until_up(4, timeout=10)
    wire = await AsyncHttpWire.open(engine.port)
    try:
        names = await servers_of(wire, 12)
    finally:
        await wire.close()
    assert names.count("server4") == 3, names


async def test_restart_gives_haproxy_the_new_port(engine: HaproxyEngine) -> None:
    old = engine.supervisor.servers["server1"].http_port
    said = await engine.restart("server1")
    new = engine.supervisor.servers["server1"].http_port
    assert "restarted" in said and new != old
    assert await engine.wait_until_up(3, timeout=10)
    wire = await AsyncHttpWire.open(engine.port)
    try:
        assert "server1" in await servers_of(wire, 6)
    finally:
        await wire.close()


async def test_the_log_has_one_line_per_request_with_the_server(
        engine: HaproxyEngine, tmp_path: Path) -> None:
    wire = await AsyncHttpWire.open(engine.port)
    try:
        names = await servers_of(wire, 30)
    finally:
        await wire.close()
    path = tmp_path / "loadbalancer.log"
    pattern = re.compile(r" 127\.0\.0\.1:\d+ -> (\S+) 200 in ")
    logged: list[str] = []
    deadline = time.monotonic() + 10
    while len(logged) < 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        logged = [m[1] for m in map(pattern.search, path.read_text().splitlines()) if m]
    assert logged == names


async def test_stopping_leaves_no_haproxy_and_no_server(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    haproxy_pid = engine.process.pid
    assert haproxy_pid is not None and alive(haproxy_pid)
    server_pids = [s.pid for s in engine.supervisor.servers.values()]
    assert len(server_pids) == 3 and all(pid and alive(pid) for pid in server_pids)
    await engine.stop()
    assert not alive(haproxy_pid)
    assert not any(alive(pid) for pid in server_pids if pid)
    assert not engine.workdir.exists()
    assert not os.path.exists(engine.api.path)


async def test_every_request_of_a_batch_is_logged(engine: HaproxyEngine) -> None:
    from app.engines.http_client import run_http_batch

    progress = await run_http_batch("127.0.0.1", engine.port, 5000, window=256,
                                    connections=16)
    assert progress.answered == 5000 and progress.errors == 0, progress.summary()
    assert sorted(progress.per_server.values()) == [1666, 1667, 1667]  # per request
    deadline = time.monotonic() + 10
    while engine.reader.requests < 5000 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.reader.requests == 5000
    assert sum(engine.reader.server(n).served for n in engine.names) == 5000
    info = await engine.api.command("show info")
    assert "DroppedLogs: 0" in info


async def test_weights_shape_the_rotation(engine: HaproxyEngine) -> None:
    await engine.set_weight("server1", 3)
    wire = await AsyncHttpWire.open(engine.port)
    try:
        names = await servers_of(wire, 25)
    finally:
        await wire.close()
    counts = {n: names[5:].count(n) for n in ("server1", "server2", "server3")}
    assert counts["server1"] == 12 and counts["server2"] == counts["server3"] == 4, names


async def test_remove_server_deletes_it_from_haproxy(engine: HaproxyEngine) -> None:
    pid = engine.supervisor.servers["server3"].pid
    assert await engine.remove_server("server3") == "server3 removed"
    stat = [r.server for r in await engine.api.show_stat() if r.backend == BACKEND]
    assert stat == ["server1", "server2"]
    assert [r.name for r in engine.rows()] == ["server1", "server2"]
    assert pid is not None and not alive(pid)
    wire = await AsyncHttpWire.open(engine.port)
    try:
        assert set(await servers_of(wire, 6)) == {"server1", "server2"}
    finally:
        await wire.close()


async def test_haproxy_dying_is_reported_and_a_restart_serves_again(
        engine: HaproxyEngine) -> None:
    heard: list[tuple[str, str, str, str]] = []
    engine.listeners.append(lambda *args: heard.append(args))
    await engine.drain("server3")
    old = engine.process.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while engine.haproxy_exit is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.haproxy_exit is not None and "code -9" in engine.haproxy_exit
    assert heard[-1][:3] == ("haproxy", "running", "exited")
    # The servers are still there; the listening socket is still ours.
    assert all(s.alive for s in engine.supervisor.servers.values())
    said = await engine.restart_haproxy()
    assert said.startswith("haproxy restarted") and engine.process.pid != old
    assert engine.states["server3"] == "DRAINING"  # the operator's drain survived
    assert await engine.wait_until_up(2, timeout=10)
    wire = await AsyncHttpWire.open(engine.port)
    try:
        assert set(await servers_of(wire, 6)) == {"server1", "server2"}
    finally:
        await wire.close()


async def test_switching_algorithm_finishes_requests_in_flight(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(server_delay=0.5)
    await engine.set_weight("server2", 2)
    await engine.drain("server3")
    old_pid = engine.process.pid
    wire = await AsyncHttpWire.open(engine.port)
    try:
        wire.post("somma 20 22")  # held 0.5 s by the server, across the switch
        await asyncio.sleep(0.1)
        said = await engine.set_algorithm("leastconn")
        assert said.startswith("algorithm leastconn")
        r = await wire.read()
        assert r.status == 200 and r.json["result"] == 42
    finally:
        await wire.close()
    assert engine.process.pid != old_pid
    assert "balance leastconn" in engine.config_path.read_text()
    # The operator's drain and weight carried over to the new HAProxy.
    stat = {r.server: r for r in await engine.api.show_stat() if r.backend == BACKEND}
    assert stat["server3"].status.startswith("DRAIN") and stat["server2"].weight == 2
    deadline = time.monotonic() + 15
    while alive(old_pid) and time.monotonic() < deadline:  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
    assert not alive(old_pid)  # type: ignore[arg-type]
    wire = await AsyncHttpWire.open(engine.port)
    try:
        assert (await wire.request("somma 1 1")).status == 200
    finally:
        await wire.close()
    with pytest.raises(KeyError, match="unknown algorithm"):
        await engine.set_algorithm("fastest")


async def test_clients_are_haproxys_frontend_sessions(engine: HaproxyEngine) -> None:
    wires = [await AsyncHttpWire.open(engine.port) for _ in range(2)]
    try:
        for wire in wires:
            assert (await wire.request("somma 1 1")).status == 200
        await engine.refresh()
        assert engine.stats().clients == 2
    finally:
        for wire in wires:
            await wire.close()
    deadline = time.monotonic() + 5
    while engine.stats().clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.stats().clients == 0


async def test_a_frozen_server_times_out_and_its_request_is_retried(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(request_timeout=0.5, check_timeout=0.3)
    engine.freeze("server2")
    wire = await AsyncHttpWire.open(engine.port)
    try:
        answers = [await wire.request(f"somma {i} 1", timeout=10) for i in range(6)]
    finally:
        await wire.close()
        engine.thaw("server2")
    assert [a.status for a in answers] == [200] * 6
    assert [a.json["result"] for a in answers] == [i + 1 for i in range(6)]
    assert "server2" not in {a.json["server"] for a in answers}
    deadline = time.monotonic() + 10
    while engine.reader.redispatched == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.reader.redispatched >= 1  # HAProxy's log says it retried


async def test_an_outside_backend_is_balanced_but_not_controlled(
        make_engine: EngineFactory) -> None:
    from tests.httpwire import start_server

    outside = start_server("far")
    try:
        engine = await make_engine(servers=1, backends=(("127.0.0.1", outside.http_port),))
        assert engine.names == ["backend1", "server1"]
        wire = await AsyncHttpWire.open(engine.port)
        try:
            assert set(await servers_of(wire, 4)) == {"far", "server1"}
        finally:
            await wire.close()
        rows = {r.name: r for r in engine.rows()}
        assert not rows["backend1"].managed and rows["server1"].managed
        with pytest.raises(KeyError, match="not started by lbconsole"):
            engine.kill("backend1")
    finally:
        outside.stop()


async def test_no_server_available_is_a_json_error(engine: HaproxyEngine) -> None:
    for name in engine.names:
        await engine.set_state(name, "maint")
    wire = await AsyncHttpWire.open(engine.port)
    try:
        r = await wire.request("somma 1 2")
    finally:
        await wire.close()
    assert r.status == 503 and r.headers["content-type"] == "application/json"
    assert r.json == {"error": "no server available"}

"""The dispatcher on a live Runtime (real servers on free ports): every command becomes a
Reply, settings reach the supervisor with the right keywords, every change is logged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.control.dispatch import Reply, execute
from app.control.grammar import parse_command
from app.runtime import Runtime
from tests.conftest import RuntimeFactory


async def run(runtime: Runtime, line: str, **kw: Any) -> Reply:
    command = parse_command(line)
    assert command is not None
    return await execute(runtime, command, **kw)


def events(runtime: Runtime) -> str:
    """The log's event lines as written (the file itself is written by a thread)."""
    return b"".join(runtime.log.events).decode()


class FakeControl:
    """Stands in for supervisor.control until the server helper's lands; records calls."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    async def __call__(self, name: str, **settings: Any) -> dict:
        if self.fail is not None:
            raise self.fail
        self.calls.append((name, settings))
        return {"name": name, **settings}


@pytest.fixture
async def quiet(make_runtime: RuntimeFactory) -> Runtime:
    """Two servers, no runtime socket (these tests call the dispatcher directly)."""
    return await make_runtime(servers=2, admin_socket=None)


async def test_server_settings_reach_the_supervisor(quiet: Runtime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    control = FakeControl()
    monkeypatch.setattr(quiet.supervisor, "control", control, raising=False)
    for line, message in (("workers 2 4", "server2: workers 4"),
                          ("workers server1 unlimited", "server1: workers unlimited"),
                          ("speed 2 0.5", "server2: speed 0.5"),
                          ("latency 1 20", "server1: latency 20 ms"),
                          ("flaky 2 30%", "server2: flaky 30%"),
                          ("resets 2 10%", "server2: resets 10%"),
                          ("blackhole 2", "server2: blackhole"),
                          ("heal server2", "server2: heal")):
        reply = await run(quiet, line)
        assert reply == Reply(True, message, reply.data), (line, reply)
    assert control.calls == [
        ("server2", {"workers": 4}), ("server1", {"workers": None}),
        ("server2", {"speed": 0.5}), ("server1", {"latency_ms": 20.0}),
        ("server2", {"flaky": 0.3}), ("server2", {"resets": 0.1}),
        ("server2", {"blackhole": True}), ("server2", {"heal": True}),
    ]
    assert "operator: flaky server2 30%" in events(quiet)
    assert "operator: workers server2 4" in events(quiet)


async def test_supervisor_refusals_become_replies(quiet: Runtime,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quiet.supervisor, "control",
                        FakeControl(ValueError("server2 is not running")), raising=False)
    reply = await run(quiet, "speed 2 3")
    assert reply == Reply(False, "speed 2: server2 is not running")
    reply = await run(quiet, "workers 7 2")
    assert reply == Reply(False, "workers 7: no server 7 (there are 2)")


async def test_a_left_out_server_is_the_selected_one_or_refused(quiet: Runtime) -> None:
    reply = await run(quiet, "drain")
    assert not reply.ok and "drain needs a server: drain 2 or drain server2" in reply.message
    reply = await run(quiet, "drain", selected="server2")
    assert reply == Reply(True, "server2 draining: takes nothing new")
    assert quiet.backend("server2").state == "DRAINING"
    reply = await run(quiet, "blackhole")
    assert not reply.ok and "blackhole needs a server" in reply.message


async def test_algorithm_and_weight(quiet: Runtime) -> None:
    assert (await run(quiet, "algo leastconn")).message == "algorithm leastconn"
    assert quiet.balancer.algorithm_name == "leastconn"
    reply = await run(quiet, "algo next")
    assert reply.message == "algorithm p2c" and reply.data == {"algorithm": "p2c"}
    assert (await run(quiet, "algo p2c")).message == "algorithm p2c (unchanged)"
    assert (await run(quiet, "weight 2 0")).message == "server2 weight 0 (takes nothing new)"
    rows = quiet.rows()
    assert [r.weight for r in rows] == [1, 0]
    assert not (await run(quiet, "weight server9 1")).ok
    log = events(quiet)
    assert "operator: algorithm roundrobin -> leastconn" in log
    assert "operator: algorithm leastconn -> p2c" in log
    assert "operator: weight server2 1 -> 0" in log


async def test_show_and_help_and_console_only(quiet: Runtime) -> None:
    servers = await run(quiet, "show servers")
    assert servers.ok and servers.message == "2 servers: server1 UP, server2 UP"
    assert servers.data is not None and servers.data["servers"][1]["name"] == "server2"
    stats = await run(quiet, "show stats")
    assert stats.ok and stats.data is not None and stats.data["servers_up"] == 2
    assert stats.data["algorithm"] == "roundrobin"
    assert (await run(quiet, "help")).ok
    for line in ("exit", "pause", "clear"):
        reply = await run(quiet, line, origin="a scenario")
        assert reply == Reply(False, f"{line} is a console command; it does nothing over "
                                     "a scenario")
    assert (await run(quiet, "bogus")).ok is False


async def test_a_batch_can_be_cancelled(quiet: Runtime) -> None:
    batch = asyncio.ensure_future(run(quiet, "random 50m"))
    for _ in range(200):
        if quiet.batches:
            break
        await asyncio.sleep(0.01)
    assert quiet.batches
    await asyncio.sleep(0.2)
    cancel = await run(quiet, "cancel")
    assert cancel == Reply(True, "cancelling 1 batch")
    reply = await asyncio.wait_for(batch, 10)
    assert reply == Reply(False, "random 50,000,000 cancelled")
    assert not quiet.batches
    done = await run(quiet, "random 100")
    assert done.ok and done.data is not None and done.data["answered"] == 100
    assert 0 < done.data["p50_ms"] <= done.data["p99_ms"] <= done.data["max_ms"]
    assert " p50 " in done.message


async def test_kill_and_restart_through_the_dispatcher(quiet: Runtime) -> None:
    reply = await run(quiet, "kill 1")
    assert reply.ok and reply.message.startswith("server1 killed (SIGKILL to pid")
    reply = await run(quiet, "restart server1")
    assert reply.ok and reply.message.startswith("server1 restarted (pid")
    assert await quiet.wait_until_up(timeout=20)
    reply = await run(quiet, "somma 2 3")
    assert reply.ok and reply.data is not None and reply.data["result"] == 5


async def test_a_bug_behind_the_socket_is_an_answer_not_a_dead_connection(
        quiet: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.control.socket import ControlServer

    def broken(name: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(quiet, "set_algorithm", broken)
    server = ControlServer(quiet, str(tmp_path / "t.sock"))
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "t.sock"))
        writer.write(b"algo p2c\nshow stats\n")
        first = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
        second = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
        writer.close()
    finally:
        await server.close()
    assert first == {"ok": False, "message": "internal error: RuntimeError('boom') (see the log)",
                     "data": None}
    assert second["ok"] and second["data"]["servers_up"] == 2
    assert "runtime API: 'algo p2c' failed: RuntimeError('boom')" in events(quiet)
    assert not (tmp_path / "t.sock").exists()

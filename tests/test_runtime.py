"""Operator actions through the Runtime (what the console's keys call), and the log."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from app.runtime import Runtime
from balancer.log import RequestLog
from tests.conftest import RuntimeFactory
from tests.wire import Wire, wait_state


async def servers_for(runtime: Runtime, count: int) -> Counter[str]:
    wire = await Wire.open(runtime.balancer.port)
    await wire.send(*["somma 1 2"] * count)
    answers = await wire.answers(count)
    await wire.close()
    assert all(a["result"] == 3 for a in answers)
    return Counter(a["server"] for a in answers)


async def test_stop_gently_then_restart(runtime: Runtime) -> None:
    pid = runtime.supervisor.servers["server2"].pid
    message = await runtime.stop_server(2)
    assert message == "server2 stopped"
    assert runtime.balancer.backend("server2").state.value == "STOPPED"
    assert runtime.supervisor.servers["server2"].returncode == 0  # SIGTERM, clean exit
    assert set(await servers_for(runtime, 6)) == {"server1", "server3"}
    message = await runtime.restart(2)
    assert "restarted" in message
    await wait_state(runtime, "server2", "UP")
    assert runtime.supervisor.servers["server2"].pid != pid
    assert (await servers_for(runtime, 6))["server2"] == 2


async def test_drain_takes_nothing_new_and_undrain_brings_it_back(runtime: Runtime) -> None:
    assert runtime.drain("server3") == "server3 draining: takes nothing new"
    assert runtime.balancer.backend("server3").state.value == "DRAINING"
    assert set(await servers_for(runtime, 6)) == {"server1", "server2"}
    assert runtime.drain(3) == "server3 back in the rotation"
    assert (await servers_for(runtime, 6))["server3"] == 2


async def test_add_a_server(runtime: Runtime) -> None:
    message = await runtime.add_server()
    assert message.startswith("server4 added (pid ")
    await wait_state(runtime, "server4", "UP")
    assert await servers_for(runtime, 8) == {f"server{i}": 2 for i in range(1, 5)}
    assert [r.name for r in runtime.rows()] == ["server1", "server2", "server3", "server4"]


async def test_rows_join_balancer_and_process_facts(runtime: Runtime) -> None:
    await servers_for(runtime, 30)
    rows = runtime.rows()
    assert [r.served for r in rows] == [10, 10, 10]
    assert all(r.pid and r.port and r.managed and r.state == "UP" for r in rows)
    assert sum(r.share for r in rows) == 1.0
    assert sum(1 for r in rows if r.is_next) == 1
    assert all(r.mean_ms is not None and r.p99_ms is not None for r in rows)


async def test_unknown_servers_get_clear_errors(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=1)
    for bad in (0, 5, "nope"):
        try:
            runtime.kill(bad)
        except KeyError as exc:
            assert "no server" in str(exc)
        else:
            raise AssertionError(f"kill {bad!r} did not fail")


def test_log_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "lb.log"

    async def main() -> None:
        log = RequestLog(path, max_bytes=20_000, backups=2, flush_interval=0.01)
        log.start()
        for i in range(3000):
            log.event(f"line {i:05d} " + "x" * 40)
            if i % 100 == 0:
                await asyncio.sleep(0.02)
        log.close()

    asyncio.run(main())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["lb.log", "lb.log.1", "lb.log.2"]
    assert all((tmp_path / f).stat().st_size <= 20_000 + 10_000 for f in files)
    assert "line 02999" in path.read_text()
    assert log_total_lines(tmp_path) < 3000  # the oldest were rotated away


def log_total_lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.iterdir())


def test_log_keeps_recent_lines_for_the_console(tmp_path: Path) -> None:
    async def main() -> RequestLog:
        log = RequestLog(tmp_path / "x.log", keep_recent=10)
        log.start()
        for i in range(25):
            log.line(b"c1 ", b'{"id":%d}\n' % i)
        log.flush()
        log.close()
        return log

    log = asyncio.run(main())
    assert log.total == 25
    assert len(log.recent) == 10
    assert log.recent[-1].endswith(b' c1 {"id":24}\n')

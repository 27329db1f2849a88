"""The console's input box routes the lab's commands through the one dispatcher."""

from __future__ import annotations

from pathlib import Path

from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from tests.test_console_live import SIZE, all_up, message, type_line, until


async def test_typed_lab_commands_reach_the_runtime(tmp_path: Path) -> None:
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2, admin_socket=str(tmp_path / "c.sock"))
    source = LiveSource(config)
    app = ConsoleApp(source)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await all_up(pilot, app)
            assert (tmp_path / "c.sock").exists()  # the console offers the socket too
            await type_line(pilot, "algo leastconn")
            await until(pilot, lambda: message(app) == "algorithm leastconn", 10, "algo")
            assert source.runtime.balancer.algorithm_name == "leastconn"
            await type_line(pilot, "weight 2 3")
            await until(pilot, lambda: message(app) == "server2 weight 3", 10, "weight")
            assert [r.weight for r in source.runtime.rows()] == [1, 3, 1]
            await type_line(pilot, "show servers")
            await until(pilot, lambda: message(app).startswith("3 servers: server1 UP"), 10,
                        "show servers")
            await type_line(pilot, "weight 9 1")
            await until(pilot, lambda: "no server 9" in message(app), 10, "refusal")
            await type_line(pilot, "compare roundrobin,random 300 concurrency 8")
            await until(pilot, lambda: message(app).startswith("compare: roundrobin "), 30,
                        "the compare summary")
            assert "random" in message(app) and "p99" in message(app)
            assert source.runtime.balancer.algorithm_name == "leastconn"  # put back
    finally:
        await source.stop()
        source.kill_now()
    assert not (tmp_path / "c.sock").exists()

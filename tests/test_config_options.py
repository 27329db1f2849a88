"""Server settings and fault-handling options of the console and `serve` (and the same
server parsers in `lbconsole compare`): parsed, refused clearly, and reaching the
balancer and the real server processes."""

from __future__ import annotations

import dataclasses

import pytest

from app.cli import build_parser, main
from app.config import runtime_config
from app.runtime import RuntimeConfig
from tests.conftest import RuntimeFactory

LAB = ["--server-workers", "2", "--server-speed", "server2=0.5", "--server-speed",
       "server3=4", "--server-latency", "server3=20ms", "--retries", "3", "--retry-budget",
       "30%", "--eject-after", "0", "--eject-time", "2.5", "--max-ejected", "25"]


def config_of(*argv: str) -> RuntimeConfig:
    return runtime_config(build_parser().parse_args(["serve", *argv]))


def test_the_options_fill_the_runtime_config() -> None:
    config = config_of(*LAB)
    assert config.server_workers == 2
    assert config.server_speeds == {"server2": 0.5, "server3": 4.0}
    assert config.server_delays == {"server3": 0.02}
    balancer = config.balancer_config()
    assert (balancer.retries, balancer.retry_budget, balancer.eject_after, balancer.eject_time,
            balancer.max_ejected) == (3, 0.3, 0, 2.5, 0.25)
    # The console takes them too, and left out they are the documented defaults.
    assert runtime_config(build_parser().parse_args(LAB)) == config
    plain, d = config_of(), RuntimeConfig()
    assert (plain.server_workers, plain.server_speeds, plain.retries, plain.retry_budget,
            plain.eject_after, plain.eject_time, plain.max_ejected) == (
        None, {}, 1, 0.2, 5, 10.0, 0.5) == (
        d.server_workers, d.server_speeds, d.retries, d.retry_budget, d.eject_after,
        d.eject_time, d.max_ejected)
    assert config_of("--server-workers", "unlimited").server_workers is None


@pytest.mark.parametrize(("argv", "says"), [
    (["--server-workers", "0"], "workers is a count from 1 to 100,000 or unlimited, not '0'"),
    (["--server-workers", "many"], "workers is a count from 1 to 100,000 or unlimited"),
    (["--server-speed", "server2"], "expected NAME=VALUE (e.g. server3=0.5), not 'server2'"),
    (["--server-speed", "server2=0"], "speed is a factor above 0 and at most 1000"),
    (["--server-speed", "server2=fast"], "speed is a factor above 0"),
    (["--server-speed", "server9=2"], "there is no server 'server9' that lbconsole starts"),
    (["--server-latency", "=20"], "expected NAME=VALUE (e.g. server3=20)"),
    (["--server-latency", "server1=-5"], "latency is in ms, from 0 to 60000, not '-5'"),
    (["--server-latency", "server1=nan"], "latency is in ms"),
    (["--backend", "far=127.0.0.1:9", "--server-latency", "far=5"],
     "there is no server 'far' that lbconsole starts"),
    (["--retries", "-1"], "--retries: expected a whole number from 0, not '-1'"),
    (["--retries", "1.5"], "expected a whole number from 0"),
    (["--retry-budget", "120%"], "expected a percentage from 0 to 100 (e.g. 20%), not '120%'"),
    (["--retry-budget", "lots"], "expected a percentage from 0 to 100"),
    (["--eject-after", "x"], "--eject-after: expected a whole number from 0"),
    (["--eject-time", "0"], "--eject-time: must be positive"),
    (["--max-ejected", "101%"], "--max-ejected: expected a percentage from 0 to 100"),
])
def test_bad_values_are_usage_errors(argv: list[str], says: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["serve"], []):  # serve, and the console
        with pytest.raises(SystemExit) as stopped:
            main([*command, *argv])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and says in err, err
        assert "usage: lbconsole" in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "says"), [
    (["--server-workers", "0"], "workers is a count from 1 to 100,000 or unlimited"),
    (["--server-speed", "server3"], "expected NAME=VALUE"),
    (["--server-speed", "server3=-1"], "speed is a factor above 0"),
    (["--weight", "server1=300"], "expected NAME=W with W from 0 to 256"),
])
def test_compare_refuses_the_same_values(argv: list[str], says: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["compare", *argv])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and says in err, err


def test_compare_parses_with_the_same_types() -> None:
    args = build_parser().parse_args(["compare", "--server-workers", "4", "--server-speed",
                                      "server3=0.33", "--weight", "server1=3"])
    assert args.server_workers == 4
    assert args.server_speed == [("server3", 0.33)] and args.weight == [("server1", 3)]


async def test_the_settings_reach_the_server_processes(make_runtime: RuntimeFactory) -> None:
    config = config_of(*LAB)
    fixed = {"port", "log_file", "check_interval"}
    runtime = await make_runtime(**{f.name: getattr(config, f.name)
                                    for f in dataclasses.fields(config) if f.name not in fixed})
    reported = {name: await runtime.supervisor.server_stats(name)
                for name in ("server1", "server2", "server3")}
    assert [(s["workers"], s["speed"], s["latency_ms"]) for s in reported.values()] == [
        (2, 1.0, 0.0), (2, 0.5, 0.0), (2, 4.0, 20.0)]
    assert runtime.balancer.core.config.retries == 3
    assert runtime.balancer.core.config.max_ejected == 0.25
    added = await runtime.add_server()
    assert "server4 added" in added
    assert (await runtime.supervisor.server_stats("server4"))["workers"] == 2

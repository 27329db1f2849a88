"""Scenarios run over real processes: the shipped ones (small), repeatability from the
balancer's own log, the exit status and `--json`, `serve --scenario`, and the progress
object the console polls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from app.control.scenario import ScenarioRun, request_lists
from app.control.scenario_cli import load, run_headless
from app.control.scenario_file import parse_scenario
from tests.conftest import RuntimeFactory

SMALL = {"crash-storm": 0.25, "slow-server": 0.25, "flaky-retries": 0.5, "black-hole": 0.5}
"""Each shipped scenario's quick version for `make test` (`make chaos` runs them whole)."""

TINY = """
name = "tiny"
seed = 21
[settings]
servers = 2
check_interval = "0.2s"
concurrency = 16
[[step]]
at = "0s"
do = "random 400 work 0-2"
[[step]]
at = "0.2s"
do = "latency 2 5"
phase = "slower"
[[step]]
at = "0.4s"
do = "random 300"
[[expect]]
check = "lost == 0 and answered == 700"
"""


@pytest.mark.parametrize("name", sorted(SMALL))
async def test_each_shipped_scenario_passes_small(name: str) -> None:
    report = await run_headless(load(name, scale=SMALL[name]))
    print(report.text())
    assert report.passed, report.failures()
    assert report.totals["lost"] == 0
    assert all(step.ok for step in report.steps)


def _answers(log: Path) -> dict[tuple[bytes, int], tuple[str, int, int]]:
    """(connection, request id) -> (op, a, b), from the answers the balancer logged."""
    out: dict[tuple[bytes, int], tuple[str, int, int]] = {}
    for line in log.read_bytes().splitlines():
        start = line.find(b' {"id"')
        if start < 0:
            continue
        connection = line[:start].rsplit(b" ", 1)[1]
        answer = orjson.loads(line[start:])
        out[connection, answer["id"]] = (answer["op"], answer["a"], answer["b"])
    return out


async def test_the_same_seed_sends_the_same_requests(tmp_path: Path) -> None:
    scenario = parse_scenario(TINY, "tiny.toml")
    runs = []
    for number, seed in enumerate((21, 21, 22)):
        log = tmp_path / f"run{number}.log"
        report = await run_headless(scenario.with_seed(seed), log_file=str(log))
        assert report.passed, report.failures()
        runs.append(([load["digest"] for load in report.loads], _answers(log)))
    (digests1, answers1), (digests2, answers2), (digests3, answers3) = runs
    # What the balancer answered (op and operands per request) is the same run to run.
    assert len(answers1) == 700 and answers1 == answers2
    assert digests1 == digests2
    assert answers3 != answers1 and digests3 != digests1
    sent = request_lists(scenario)
    assert sum(len(lines) for lines in sent) == 700


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "scenario", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_a_failing_expect_makes_the_exit_status_1_and_json_has_the_report(
        tmp_path: Path) -> None:
    path = tmp_path / "fails.toml"
    path.write_text(TINY + '[[expect]]\ncheck = "lost > 0 or phase.slower.p99_ms < 0"\n')
    proc = _cli(str(path), "--json")
    assert proc.returncode == 1, proc.stderr
    assert "expect 2 failed: lost > 0 or phase.slower.p99_ms < 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = orjson.loads(lines[0])
    assert set(data) >= {"name", "seed", "passed", "steps", "phases", "totals", "servers",
                         "loads", "expects", "chart", "failures", "duration_s"}
    assert data["passed"] is False and data["seed"] == 21
    assert [e["passed"] for e in data["expects"]] == [True, False]
    assert [s["do"] for s in data["steps"]] == ["random 400 work 0-2", "latency 2 5",
                                                "random 300"]
    assert all(s["ok"] and s["fired_s"] >= s["at_s"] for s in data["steps"])
    assert [p["label"] for p in data["phases"]] == ["1", "slower", "3"]
    assert sum(p["answered"] for p in data["phases"]) == data["totals"]["answered"] == 700
    assert set(data["servers"]) == {"server1", "server2"}
    assert data["servers"]["server2"]["state"] == "UP"
    chart = data["chart"]
    assert len(chart["rate"]) == len(chart["p99_ms"]) == len(chart["errors"]) > 0
    assert [load["count"] for load in data["loads"]] == [400, 300]


def test_a_passing_scenario_exits_0_with_a_text_report(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    proc = _cli(str(path), "--seed", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "scenario tiny" in out and "seed 5" in out and "PASS  lost == 0" in out
    assert "latency 2 5" in out and "req/s" in out and out.rstrip().endswith("PASSED")
    assert "step 2 at" in proc.stderr  # the steps as they fired


def test_serve_runs_a_scenario_live_and_logs_it(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0", "--servers", "2",
         "--log-file", str(log), "--admin-socket", "-", "--check-interval", "0.2",
         "--no-request-log", "--scenario", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip())
            if line.startswith("scenario report: PASSED") or "report: FAILED" in line:
                break
        assert any(s.startswith("scenario report: PASSED") for s in seen), "\n".join(seen)
        assert any("scenario tiny: step 2 at" in s and "latency 2 5" in s for s in seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    text = log.read_text()
    assert "scenario tiny: step 1 at" in text and "scenario report: PASSED" in text


def test_serve_refuses_a_bad_scenario_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("latency 2 5", "latency 2 fast"))
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", "0",
                           "--scenario", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--scenario: " in proc.stderr and "step 2: 'latency 2 fast'" in proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


async def test_progress_can_be_polled_and_a_run_stopped(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=2)
    scenario = parse_scenario(TINY.replace("random 400 work 0-2", "random 100000 work 1-3")
                              .replace('at = "0.4s"', 'at = "30s"'), "long.toml")
    run = ScenarioRun(scenario, runtime)
    task = asyncio.ensure_future(run.run())
    seen = []
    for _ in range(500):
        progress = run.progress()
        seen.append(progress)
        if progress.steps_done == 2 and progress.answered > 100:
            break
        await asyncio.sleep(0.02)
    assert progress.state == "running" and progress.steps_total == 3
    assert progress.next_step == "at 30.00s: random 300" and progress.phase == "slower"
    assert progress.next_in_s is not None and 25 < progress.next_in_s <= 30
    assert seen[0].report is None
    line = progress.text()
    assert line.startswith("scenario tiny: running · ") and "next at 30.00s: random 300" in line
    assert "step 2/3" in line and "phase slower" in line
    run.stop()
    report = await asyncio.wait_for(task, 20)
    assert run.progress().report is report and run.progress().state == "stopped"
    assert report.stopped == "stopped by the operator" and not report.passed
    assert report.totals["lost"] == 0 and report.totals["cancelled"] > 0
    assert [s.fired is not None for s in report.steps] == [True, True, False]
    assert report.expects[0]["detail"] == "not checked: the run was stopped"


async def test_a_cancel_step_cancels_the_load(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=2)
    scenario = parse_scenario("""
[[step]]
at = "0s"
do = "random 100000 work 1-3"
[[step]]
at = "0.5s"
do = "cancel"
[[expect]]
check = "cancelled > 0 and lost == 0 and answered + cancelled == 100000"
""", "cancel.toml")
    report = await asyncio.wait_for(ScenarioRun(scenario, runtime).run(), 30)
    assert report.passed, report.failures()


async def test_within_waits_for_a_check_to_come_true_and_no_longer(
        make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(servers=2, check_interval=0.3, rise=3)
    scenario = parse_scenario("""
[[step]]
at = "0s"
do = "kill 2"
[[step]]
at = "0s"
do = "restart 2"
[[expect]]
check = "server2.state == UP and server2.down == 1 and server2.recovered == 1"
within = "20s"
[[expect]]
check = "server1.state == DOWN"
within = "0.5s"
""", "within.toml")
    began = time.monotonic()
    report = await asyncio.wait_for(ScenarioRun(scenario, runtime).run(), 40)
    waited = time.monotonic() - began
    # Steps at one time run in order: killed, then restarted; right after the restart it
    # still needs three good checks, so only `within` lets the first check pass.
    assert [s.ok for s in report.steps] == [True, True]
    details = [e["detail"] for e in report.expects]
    assert [e["passed"] for e in report.expects] == [True, False], details
    assert report.expects[1]["detail"] == "server1.state = UP"
    assert 0.5 <= waited < 20


async def test_the_console_runs_a_scenario_and_shows_where_it_is(tmp_path: Path) -> None:
    """`lbconsole --scenario NAME`: the message line follows the run, the log gets the
    steps and the report."""
    from app.console import ConsoleApp
    from app.control.scenario_cli import load
    from app.runtime import RuntimeConfig
    from app.source import LiveSource
    from tests.test_console_live import message, until

    # The console keeps its own options (a scenario's [settings] are for headless
    # runs): these are black-hole's.
    config = RuntimeConfig(port=0, log_file=str(tmp_path / "loadbalancer.log"),
                           check_interval=0.2, check_timeout=0.3, request_timeout=0.5,
                           admin_socket=None)
    source = LiveSource(config, scenario=load("black-hole", scale=0.5))
    app = ConsoleApp(source)
    seen: set[str] = set()

    def watch() -> bool:
        seen.add(message(app))
        return "black-hole: passed" in message(app) or "black-hole: failed" in message(app)

    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, watch, 60, "the scenario to end")
            report = source.scenario_run.progress().report  # type: ignore[union-attr]
            assert "scenario black-hole: passed" in message(app), report.failures()
            assert any("scenario black-hole: running" in m for m in seen), seen
            await pilot.press("q")
    finally:
        await source.stop()
        source.kill_now()
    log = (tmp_path / "loadbalancer.log").read_text()
    assert "scenario black-hole: " in log and "scenario report:" in log

"""Scenario files: every mistake is a clear message naming the file and the step or
expect line; shipped scenarios load by name; the same seed makes the same requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.control import grammar as g
from app.control.scenario import request_lists
from app.control.scenario_file import (
    Scenario,
    ScenarioError,
    find_scenario,
    parse_duration,
    parse_scenario,
    shipped_names,
)
from app.control.scenario_report import Recorder

GOOD = """
name = "tiny"
seed = 4
[settings]
servers = 2
eject_time = "1s"
retry_budget = "20%"
[[step]]
at = "0s"
do = "random 100 work 0-2"
phase = "calm"
[[step]]
at = "500ms"
do = "flaky 2 30%"
[[step]]
at = 1
do = "heal 2"
phase = "healed"
[[expect]]
check = "lost == 0 and phase.calm.errors == 0 and phase.2.answered >= 0"
[[expect]]
check = "server2.state == UP"
within = "5s"
"""


def test_a_good_file() -> None:
    s = parse_scenario(GOOD, "tiny.toml")
    assert (s.name, s.seed, [st.at for st in s.steps]) == ("tiny", 4, [0.0, 0.5, 1.0])
    assert s.settings == {"servers": 2, "eject_time": 1.0, "retry_budget": 0.2}
    assert s.steps[0].command == g.RunBatch(100, g.Work("uniform", 0, 2))
    assert [(p.number, p.label, p.start) for p in s.phases()] == [
        (1, "calm", 0.0), (2, "2", 0.5), (3, "healed", 1.0)]
    assert s.expects[1].within == 5.0


def test_steps_run_in_time_order_and_a_late_first_step_makes_a_start_phase() -> None:
    text = GOOD.replace('at = "0s"', 'at = "2s"')
    s = parse_scenario(text, "x.toml")
    assert [st.number for st in s.steps] == [2, 3, 1]
    assert s.phases()[0].label == "start"


@pytest.mark.parametrize(("change", "message"), [
    (("seed = 4", "sed = 4"), "x.toml: unknown key 'sed'"),
    (("seed = 4", "seed = -1"), "x.toml: seed is a whole number"),
    (('at = "500ms"', 'at = "soon"'), "x.toml: step 2: at is a time"),
    (('at = "500ms"', 'at = "-1s"'), "x.toml: step 2: at is a time"),
    (('at = "500ms"', 'at = "5000s"'), "x.toml: step 2: at is a time"),
    (('do = "flaky 2 30%"', 'do = "flaky 2 300%"'), "x.toml: step 2: 'flaky 2 300%': flaky "
                                                     "takes a percentage"),
    (('do = "flaky 2 30%"', 'do = "flaky 7 30%"'), "x.toml: step 2: 'flaky 7 30%': there is "
                                                    "no server 7 (the scenario runs 2)"),
    (('do = "flaky 2 30%"', 'do = "kill"'), "x.toml: step 2: 'kill' needs a server"),
    (('do = "flaky 2 30%"', 'do = "exit"'), "x.toml: step 2: 'exit' is about the console"),
    (('do = "flaky 2 30%"', 'do = "frobnicate"'), "x.toml: step 2: 'frobnicate': not "
                                                   "understood"),
    (('do = "flaky 2 30%"', 'do = ""'), "x.toml: step 2: do is a command"),
    (('do = "flaky 2 30%"', 'dp = "flaky 2 30%"'), "x.toml: step 2: unknown key 'dp'"),
    (('at = 1\n', ''), "x.toml: step 3: needs both at and do"),
    (('phase = "healed"', 'phase = "two words"'), "x.toml: step 3: phase is a word"),
    (('phase = "calm"', 'concurrency = 0'), "x.toml: step 1: concurrency is from 1"),
    (('at = 1\ndo = "heal 2"', 'at = 1\ndo = "heal 2"\nconcurrency = 4'),
     "x.toml: step 3: concurrency is for load steps"),
    (("servers = 2", "servers = 0"), "x.toml: settings: servers is a whole number from 1"),
    (("servers = 2", "servers = 2\nspeed = 3"), "x.toml: settings: unknown setting 'speed'"),
    (('eject_time = "1s"', 'eject_time = "never"'), "x.toml: settings: eject_time is a "
                                                    "duration"),
    (('retry_budget = "20%"', 'retry_budget = 2'), "x.toml: settings: retry_budget is a share"),
    (("servers = 2", 'servers = 2\nalgorithm = "fastest"'), "x.toml: settings: algorithm is "
                                                           "one of"),
    (("lost == 0 and", "lost = 0 and"), "x.toml: expect 1: "),
    (("lost == 0 and", "lsot == 0 and"), "x.toml: expect 1: unknown name 'lsot'"),
    (("phase.calm.errors", "phase.storm.errors"), "x.toml: expect 1: 'phase.storm.errors': "
                                                  "phases are read as phase.LABEL.VALUE"),
    (("server2.state == UP", "server5.state == UP"), "x.toml: expect 2: 'server5.state': the "
                                                     "scenario runs 2 servers"),
    (("server2.state == UP", "server2.mood == UP"), "x.toml: expect 2: unknown name "
                                                    "'server2.mood'"),
    (('within = "5s"', 'within = "a while"'), "x.toml: expect 2: within is a duration"),
    (('within = "5s"', 'when = "5s"'), "x.toml: expect 2: unknown key 'when'"),
    (("[[expect]]\ncheck = \"server2", "[[expect]]\ncheque = \"server2"),
     "x.toml: expect 2: unknown key 'cheque'"),
    (('check = "server2.state == UP"', ""), "x.toml: expect 2: needs check"),
    (("name = ", "name = = "), "x.toml: not valid TOML"),
])
def test_mistakes_are_clear_messages(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ScenarioError) as info:
        parse_scenario(GOOD.replace(old, new, 1), "x.toml")
    assert message in str(info.value)


def test_a_file_without_steps() -> None:
    with pytest.raises(ScenarioError, match=r"x\.toml: no steps"):
        parse_scenario('name = "empty"\n[[expect]]\ncheck = "lost == 0"', "x.toml")


def test_durations() -> None:
    assert [parse_duration(v) for v in ("2s", "500ms", "1.5m", 3, 0.25, " 2 s ")] == [
        2.0, 0.5, 90.0, 3.0, 0.25, 2.0]
    assert [parse_duration(v) for v in ("2h", "", True, None, "1e3s", -1)] == [None] * 6


def test_the_shipped_scenarios_load_by_name() -> None:
    names = shipped_names()
    assert {"crash-storm", "slow-server", "flaky-retries", "black-hole"} <= set(names)
    for name in names:
        s = find_scenario(name)
        assert s.name == name and s.expects and s.steps


def test_unknown_names_and_files_are_messages(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"shipped: .*crash-storm"):
        find_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match=r"nothing\.toml: cannot read it"):
        find_scenario(str(tmp_path / "nothing.toml"))


def test_scaling_shortens_times_and_loads() -> None:
    s = parse_scenario(GOOD, "x.toml").scaled(0.5)
    assert [st.at for st in s.steps] == [0.0, 0.25, 0.5]
    assert s.steps[0].command == g.RunBatch(50, g.Work("uniform", 0, 2))
    assert s.steps[0].do == "random 50 work 0-2"
    with pytest.raises(ScenarioError, match="--scale"):
        s.scaled(0)


def test_the_same_seed_makes_the_same_requests() -> None:
    s = find_scenario("flaky-retries").scaled(0.05)
    first, again = request_lists(s), request_lists(find_scenario("flaky-retries").scaled(0.05))
    assert first == again and len(first[0]) == 2000
    other = request_lists(s.with_seed(s.seed + 1))
    assert other != first and len(other[0]) == len(first[0])


def test_answers_belong_to_the_phase_they_were_sent_in() -> None:
    s = parse_scenario(GOOD, "x.toml")
    rec = Recorder(100.0)
    # Sent at 0.4 s, answered at 0.6 s (phase 1 by sending); sent 0.7 answered 0.8 (phase 2).
    rec.observe(100.6, 200.0, {"id": 1, "result": 2})
    rec.observe(100.8, 100.0, {"id": 2, "error": "server fault (injected)", "fault": "server",
                               "attempts": 2})
    rec.observe(101.5, 10.0, {"id": 3, "result": 1, "attempts": 2})
    rows = rec.phase_rows(s.phases(), 2.0)
    assert [r["answered"] for r in rows] == [1, 1, 1]
    assert [(r["errors"], r["server_faults"], r["retried"]) for r in rows] == [
        (0, 0, 0), (1, 1, 1), (0, 0, 1)]
    assert rows[0]["p99_ms"] == 200.0 and rows[1]["max_ms"] == 100.0
    # Throughput counts arrivals: phase 1 [0, 0.5) got none, phase 2 [0.5, 1) got two.
    assert [r["rate"] for r in rows] == [0.0, 4.0, 1.0]


def test_wrong_results_are_counted() -> None:
    rec = Recorder(0.0)
    rec.observe(1.0, 1.0, {"id": 1, "op": "somma", "a": 3, "b": 4, "result": 7})
    rec.observe(1.0, 1.0, {"id": 2, "op": "divisione", "a": 1, "b": 4, "result": 0.25})
    rec.observe(1.0, 1.0, {"id": 3, "op": "somma", "a": 3, "b": 4, "result": 8})
    rec.observe(1.0, 1.0, {"id": 4, "result": 8})
    rec.observe(1.0, 1.0, {"id": 5, "error": "division by zero"})
    assert rec.wrong == 2 and len(rec) == 5


def test_a_bad_file_on_the_command_line_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('do = "flaky 2 30%"', 'do = "flaky two"'))
    proc = subprocess.run([sys.executable, "-m", "app.cli", "scenario", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"lbconsole scenario: {bad}: step 2: 'flaky two'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "app.cli", "scenario", "crash-storm",
                           "--scale", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--scale is from 0.01 to 10" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "app.cli", "scenario", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "shipped:" in proc.stderr and "Traceback" not in proc.stderr


def test_scenarios_are_plain_values() -> None:
    assert isinstance(parse_scenario(GOOD, "x.toml"), Scenario)

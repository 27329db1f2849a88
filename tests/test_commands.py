"""The one command grammar: parsing, errors as values, help and suggestions (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.commands import (
    HELP_COMMANDS,
    MAX_BATCH,
    SPECS,
    VOCABULARY,
    AddServer,
    CancelBatch,
    ClearPanels,
    Compare,
    Invalid,
    Quit,
    RunBatch,
    SendRequest,
    ServerCommand,
    ServerSetting,
    SetAlgorithm,
    SetWeight,
    Show,
    ShowHelp,
    TogglePause,
    Work,
    help_text,
    parse_command,
    parse_count,
    suggest,
)
from balancer.algorithms import ALGORITHMS


@pytest.mark.parametrize("line", [
    "somma 3 4", "SOMMA 3 4", "sottrazione 9 2", "moltiplicazione 6 7", "divisione 10 4",
    "3 * 4", "10 / 4", "3*4", "2.5 + 1", "-3 - -4", "somma", "divisione", "add 3 4", "mul 2 3",
    '{"op": "somma", "a": 3, "b": 4}', '{"id": 7, "op": "divisione", "a": 1, "b": 2}',
    '{"text": "somma 1 2"}', "ping",
])
def test_requests_are_sent_as_typed(line: str) -> None:
    assert parse_command(f"  {line} ") == SendRequest(line)


@pytest.mark.parametrize(("line", "expected"), [
    ("random 1000", RunBatch(1000)),
    ("random 1_000_000", RunBatch(1_000_000)),
    ("random 1,000", RunBatch(1000)),
    ("random 10k", RunBatch(10_000)),
    ("RANDOM 2M", RunBatch(2_000_000)),
    ("cancel", CancelBatch()),
    ("kill 2", ServerCommand("kill", "2")),
    ("kill server3", ServerCommand("kill", "server3")),
    ("kill", ServerCommand("kill", None)),
    ("stop 1", ServerCommand("stop", "1")),
    ("restart 2", ServerCommand("restart", "2")),
    ("drain 2", ServerCommand("drain", "2")),
    ("freeze 3", ServerCommand("freeze", "3")),
    ("thaw 3", ServerCommand("thaw", "3")),
    ("add", AddServer()),
    ("add server", AddServer()),
    ("exit", Quit()),
    ("quit", Quit()),
    ("help", ShowHelp()),
    ("?", ShowHelp()),
    ("pause", TogglePause()),
    ("clear", ClearPanels()),
])
def test_commands(line: str, expected: object) -> None:
    assert parse_command(line) == expected


def test_empty_line_is_nothing() -> None:
    assert parse_command("") is None
    assert parse_command("   ") is None


@pytest.mark.parametrize(("line", "says"), [
    ("random", "usage: random N"),
    ("random 0", "from 1 to"),
    ("random -5", "from 1 to"),
    ("random lots", "not 'lots'"),
    (f"random {MAX_BATCH + 1}", "from 1 to"),
    ("random 1 2", "usage"),
    ("kill 0", "numbered from 1"),
    ("kill 1 2", "one server"),
    ("exit now", "takes no arguments"),
    ("hello", "not understood: 'hello'"),
    ("frobnicate 3 4", "not understood"),
    ("somma 3", "takes two operands or none"),
    ("somma 3 x", "bad operand 'x'"),
    ("somma 1 2 3", "too many operands"),
    ("{not json", "malformed JSON"),
    ('{"op": "somma", "a": 1}', "two operands or none"),
])
def test_clear_messages_for_what_is_not_understood(line: str, says: str) -> None:
    result = parse_command(line)
    assert isinstance(result, Invalid)
    assert says in result.message


def test_parse_count() -> None:
    assert parse_count("12") == 12
    assert parse_count("3k") == 3000
    assert parse_count("1.5k") is None
    assert parse_count("") is None


def test_suggest_prefers_history_then_vocabulary() -> None:
    assert suggest("ra") == "random 1000"
    assert suggest("ki") == "kill "
    assert suggest("so") == "somma"
    assert suggest("ra", history=["random 5000"]) == "random 5000"
    assert suggest("Ki") == "Kill "
    assert suggest("") is None
    assert suggest("zzz") is None
    assert suggest("somma") is None


# ---------------------------------------------------------------- lab and fault commands

ALL = tuple(ALGORITHMS)


@pytest.mark.parametrize(("line", "expected"), [
    ("random 1000 work 0-20", RunBatch(1000, Work("uniform", 0, 20))),
    ("random 10k work exp:5", RunBatch(10_000, Work("exp", 5))),
    ("random 5 WORK 2.5-2.5", RunBatch(5, Work("uniform", 2.5, 2.5))),
    ("algo leastconn", SetAlgorithm("leastconn")),
    ("ALGO P2C", SetAlgorithm("p2c")),
    ("algo next", SetAlgorithm("next")),
    ("weight 2 3", SetWeight("2", 3)),
    ("weight server1 0", SetWeight("server1", 0)),
    ("weight 1 256", SetWeight("1", 256)),
    ("workers 2 4", ServerSetting("workers", "2", 4)),
    ("workers server2 unlimited", ServerSetting("workers", "server2", None)),
    ("speed 3 0.5", ServerSetting("speed", "3", 0.5)),
    ("latency 1 20", ServerSetting("latency", "1", 20.0)),
    ("latency 1 20ms", ServerSetting("latency", "1", 20.0)),
    ("flaky 2 30%", ServerSetting("flaky", "2", 30.0)),
    ("flaky 2 0.5", ServerSetting("flaky", "2", 0.5)),
    ("resets 2 10%", ServerSetting("resets", "2", 10.0)),
    ("blackhole 2", ServerSetting("blackhole", "2", True)),
    ("blackhole", ServerSetting("blackhole", None, True)),
    ("heal server3", ServerSetting("heal", "server3", True)),
    ("show servers", Show("servers")),
    ("SHOW Stats", Show("stats")),
    ("compare 20000", Compare(ALL, 20_000)),
    ("compare roundrobin,leastconn,p2c 20k work 0-20 concurrency 64",
     Compare(("roundrobin", "leastconn", "p2c"), 20_000, Work("uniform", 0, 20), 64)),
    ("compare weighted random 100 concurrency 8",
     Compare(("weighted", "random"), 100, None, 8)),
    ("compare 100 work exp:3", Compare(ALL, 100, Work("exp", 3))),
])
def test_lab_and_fault_commands(line: str, expected: object) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(("line", "says"), [
    ("random 10 work", "usage: random N [work"),
    ("random 10 load 0-20", "usage: random N [work"),
    ("random 10 work 20-0", "work takes A-B"),
    ("random 10 work 0-70000", "work takes A-B"),
    ("random 10 work exp:0", "work takes A-B"),
    ("random 10 work exp:nan", "work takes A-B"),
    ("random 10 work -", "work takes A-B"),
    ("algo", "usage: algo NAME"),
    ("algo fastest", "unknown algorithm 'fastest' (use roundrobin, weighted, leastconn, p2c, "
                     "random)"),
    ("weight 2", "usage: weight N W"),
    ("weight 2 257", "from 0 to 256"),
    ("weight 2 -1", "from 0 to 256"),
    ("weight 2 1.5", "from 0 to 256"),
    ("weight 0 1", "numbered from 1"),
    ("workers 2", "usage: workers N K"),
    ("workers 2 0", "from 1 to"),
    ("workers 2 many", "or unlimited"),
    ("speed 3 0", "above 0"),
    ("speed 3 inf", "above 0"),
    ("speed 3 -1", "above 0"),
    ("latency 1 -5", "from 0 to"),
    ("flaky 2 101%", "percentage from 0 to 100"),
    ("flaky 2 lots", "percentage"),
    ("resets 2", "usage: resets N P%"),
    ("blackhole 1 2", "one server"),
    ("heal 0", "numbered from 1"),
    ("show", "usage: show servers | show stats"),
    ("show everything", "usage: show servers"),
    ("compare", "usage: compare"),
    ("compare leastconn", "usage: compare"),
    ("compare fastest 100", "unknown algorithm 'fastest'"),
    ("compare 100 work", "usage: compare"),
    ("compare 100 concurrency 0", "concurrency is from 1"),
    ("compare 100 speed 2", "usage: compare"),
    ("compare 0", "count from 1"),
])
def test_clear_messages_for_lab_commands(line: str, says: str) -> None:
    result = parse_command(line)
    assert isinstance(result, Invalid), result
    assert says in result.message


def test_one_table_gives_help_and_vocabulary() -> None:
    usages = [usage for usage, _ in HELP_COMMANDS]
    for word in ("random", "algo", "weight", "workers", "speed", "latency", "flaky", "resets",
                 "blackhole", "heal", "show", "compare", "kill", "drain", "add", "exit"):
        assert any(u.startswith(word) or f", {word}" in u for u in usages), word
        assert any(v.startswith(word) for v in VOCABULARY), word
    assert len(HELP_COMMANDS) == len(SPECS)
    # The help screen renders these as Rich markup, where [..] would vanish.
    assert not any("[" in usage + meaning for usage, meaning in HELP_COMMANDS)
    assert "algo NAME" in help_text()
    assert "pause, clear" not in help_text() and "exit, quit" not in help_text()
    assert "pause, clear" in help_text(console=True)
    # Every word the table names parses as something other than "not understood".
    for spec in SPECS:
        for word in spec.words:
            result = parse_command(word)
            assert not (isinstance(result, Invalid) and "not understood" in result.message), word


def test_suggestions_for_the_new_words() -> None:
    assert suggest("al") == "algo roundrobin"
    assert suggest("algo l") == "algo leastconn"
    assert suggest("sh") == "show servers"
    assert suggest("show st") == "show stats"
    assert suggest("bl") == "blackhole "
    assert suggest("fl") == "flaky "


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_parser_never_raises_on_any_text(line: str) -> None:
    result = parse_command(line)
    assert result is None or not isinstance(result, BaseException)
    if isinstance(result, Invalid):
        assert result.message


WORDS = st.sampled_from([w for spec in SPECS for w in spec.words] + ["work", "concurrency"])
ARGS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "256", "257", "1e999", "nan", "inf", "30%", "%",
                     "0-20", "20-0", "exp:5", "exp:", "unlimited", "server2", "10k", "1m",
                     "leastconn,p2c", ",", "work", "concurrency", "１２", "0.5", "-"]),
    st.text(max_size=12).filter(lambda t: t.strip() and " " not in t),
)


@settings(max_examples=600, deadline=None)
@given(WORDS, st.lists(ARGS, max_size=6))
def test_parser_never_raises_on_command_shaped_lines(head: str, args: list[str]) -> None:
    result = parse_command(" ".join([head, *args]))
    assert result is not None
    if isinstance(result, Invalid):
        assert result.message


TARGETS = st.one_of(st.integers(1, 99).map(str), st.sampled_from(["server1", "server12",
                                                                   "backend2"]))


@settings(max_examples=300, deadline=None)
@given(TARGETS, st.integers(0, 256), st.integers(1, 100_000),
       st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 2)),
       st.floats(0.01, 1000, allow_nan=False).map(lambda f: round(f, 3)))
def test_every_valid_setting_parses_to_its_value(
        target: str, weight: int, workers: int, percent: float, speed: float) -> None:
    assert parse_command(f"weight {target} {weight}") == SetWeight(target, weight)
    assert parse_command(f"workers {target} {workers}") == ServerSetting("workers", target,
                                                                          workers)
    assert parse_command(f"flaky {target} {percent:g}%") == ServerSetting("flaky", target,
                                                                          float(f"{percent:g}"))
    assert parse_command(f"resets {target} {percent:g}") == ServerSetting(
        "resets", target, float(f"{percent:g}"))
    if speed > 0:
        assert parse_command(f"speed {target} {speed!r}") == ServerSetting("speed", target,
                                                                           speed)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, MAX_BATCH), st.floats(0, 60_000, allow_nan=False),
       st.floats(0, 60_000, allow_nan=False))
def test_every_valid_batch_parses(count: int, a: float, b: float) -> None:
    low, high = sorted((round(a, 2), round(b, 2)))
    assert parse_command(f"random {count} work {low!r}-{high!r}") == RunBatch(
        count, Work("uniform", low, high))


def test_partition_says_how_to_reproduce_one_here() -> None:
    from app.control.grammar import Invalid, parse_command

    for line in ("partition 2", "unpartition server2"):
        command = parse_command(line)
        assert isinstance(command, Invalid) and "blackhole N" in command.message

"""The console's input parsing and suggestions (pure)."""

from __future__ import annotations

import pytest

from app.commands import (
    MAX_BATCH,
    AddServer,
    CancelBatch,
    ClearPanels,
    Invalid,
    Quit,
    RunBatch,
    SendRequest,
    ServerCommand,
    ShowHelp,
    TogglePause,
    parse_command,
    parse_count,
    suggest,
)


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

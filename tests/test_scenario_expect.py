"""The expect-line language: parsing never raises, evaluation is right, and nothing is eval'd."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.control.expect import Check, parse_check

VALUES = {"lost": 0, "errors": 3, "p99_ms": 12.5, "server2.state": "UP",
          "server2.ejections": 2, "phase.lc.p99_ms": 40.0, "phase.rr.p99_ms": 100.0,
          "phase.2.answered": 10, "missing": None}


def check(text: str) -> Check:
    parsed = parse_check(text)
    assert isinstance(parsed, Check), parsed
    return parsed


def passes(text: str, values: dict | None = None) -> bool:
    return check(text).evaluate(VALUES if values is None else values).passed


@pytest.mark.parametrize(("text", "expected"), [
    ("lost == 0", True),
    ("lost != 0", False),
    ("errors > 2 and errors < 4", True),
    ("errors >= 3 and errors <= 3", True),
    ("errors > 3", False),
    ("lost == 0 and errors == 0", False),
    ("lost == 1 and errors == 3", False),
    ("server2.state == UP", True),
    ("server2.state == 'UP'", True),
    ('server2.state != "EJECTED"', True),
    ("server2.ejections >= 1", True),
    ("phase.lc.p99_ms < phase.rr.p99_ms", True),
    ("phase.lc.p99_ms < 0.3 * phase.rr.p99_ms", False),
    ("phase.2.answered == 10", True),
    ("1 + 2 * 3 == 7", True),
    ("(1 + 2) * 3 == 9", True),
    ("10 - 2 - 3 == 5", True),
    ("8 / 2 / 2 == 2", True),
    ("-2 * 3 == -6", True),
    ("--2 == 2", True),
    ("1e3 == 1000 and .5 == 0.5", True),
    ("1 == 2 or 1 == 1 and 2 == 2", True),
    ("1 == 1 and 1 == 2 or 3 == 3", True),
    ("1 == 2 or 3 == 4", False),
    ("lost == 0 AND errors == 3", True),
])
def test_evaluation(text: str, expected: bool) -> None:
    assert passes(text) is expected


@pytest.mark.parametrize(("text", "reason"), [
    ("nothing_here == 0", "no value"),
    ("missing == 0", "no value"),
    ("server2.state > 1", "cannot compare"),
    ("server2.state < DOWN", "only with == and !="),
    ("lost / 0 == 1", "division by zero"),
    ("server2.state + 1 == 2", "arithmetic needs numbers"),
    ("1e300 * 1e300 > 0", "not a finite number"),
])
def test_what_cannot_be_decided_fails_with_a_reason(text: str, reason: str) -> None:
    outcome = check(text).evaluate(VALUES)
    assert not outcome.passed
    assert reason in outcome.detail


def test_the_detail_shows_the_values_read() -> None:
    outcome = check("lost == 0 and server2.ejections >= 5").evaluate(VALUES)
    assert not outcome.passed
    assert outcome.detail == "lost = 0, server2.ejections = 2"


def test_or_survives_an_unknown_branch() -> None:
    assert passes("missing == 1 or lost == 0")
    assert not passes("missing == 1 and lost == 0")


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("lost", "expected a comparison"),
    ("lost ==", "found the end"),
    ("lost = 0", "unexpected '= 0'"),
    ("lost == 0 and", "found the end"),
    ("(lost == 0", "not closed"),
    ("(1 + 2 == 3", "not closed"),
    ("lost == 0 0", "after a complete check"),
    ("__import__('os') == 1", "expected a comparison"),
    ("lost == 1e999", "out of range"),
    ("lost == 0; rm", "unexpected ';"),
    ("x" * 600, "longer than"),
    ("-" * 100 + "1 == 1", "too deeply nested"),
    ("and == 1", "needs a comparison before it"),
])
def test_parse_errors_are_messages(text: str, message: str) -> None:
    parsed = parse_check(text)
    assert isinstance(parsed, str), parsed
    assert message in parsed


def test_names_lists_what_a_check_reads() -> None:
    assert check("lost == 0 and -(server2.ejections) < 2 * phase.lc.p99_ms or UP == "
                 "server1.state").names() == {"lost", "server2.ejections", "phase.lc.p99_ms",
                                              "server1.state"}


def test_not_a_string_is_a_message() -> None:
    assert "is a string" in str(parse_check(42))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_to_a_check_or_a_message(text: str) -> None:
    parsed = parse_check(text)
    assert isinstance(parsed, Check | str)
    if isinstance(parsed, Check):
        outcome = parsed.evaluate(VALUES)
        assert isinstance(outcome.passed, bool)


TOKENS = st.sampled_from(["lost", "errors", "server2.state", "UP", "'UP'", "1", "0.5", "1e3",
                          "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "(", ")",
                          "and", "or", "missing", "p99_ms"])


@settings(max_examples=200, deadline=None)
@given(st.lists(TOKENS, max_size=14), st.dictionaries(
    st.sampled_from(["lost", "errors", "server2.state", "p99_ms", "missing"]),
    st.one_of(st.none(), st.floats(allow_nan=True), st.integers(), st.text(max_size=5),
              st.booleans())))
def test_token_soup_never_raises_whatever_the_values(tokens: list[str], values: dict) -> None:
    parsed = parse_check(" ".join(tokens))
    if isinstance(parsed, Check):
        assert isinstance(parsed.evaluate(values).passed, bool)


# Arithmetic trees with their values computed here, in the same order of operations.
def _leaf() -> st.SearchStrategy[tuple[str, float]]:
    return st.integers(-1000, 1000).map(lambda n: (f"({n})" if n < 0 else str(n), float(n)))


def _node(children: st.SearchStrategy[tuple[str, float]]) -> st.SearchStrategy:
    def combine(parts: tuple[tuple[str, float], str, tuple[str, float]]) -> tuple[str, float]:
        (lt, lv), op, (rt, rv) = parts
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]
        return f"({lt} {op} {rt})", value

    return st.tuples(children, st.sampled_from("+-*"), children).map(combine)


ARITH = st.recursive(_leaf(), _node, max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(ARITH, ARITH, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
def test_evaluation_matches_the_arithmetic(left: tuple[str, float], right: tuple[str, float],
                                           op: str) -> None:
    (lt, lv), (rt, rv) = left, right
    expected = {"==": lv == rv, "!=": lv != rv, "<": lv < rv, "<=": lv <= rv,
                ">": lv > rv, ">=": lv >= rv}[op]
    assert check(f"{lt} {op} {rt}").evaluate({}).passed is expected
    # The same through names.
    assert check(f"a {op} b").evaluate({"a": lv, "b": rv}).passed is expected

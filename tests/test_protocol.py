"""Unit tests of the wire protocol: parsing both forms, arithmetic, encoding."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from balancer.protocol import (
    MAX_LINE,
    Ping,
    ProtocolError,
    Request,
    check_answer,
    compute,
    describe,
    draw_operands,
    dumps,
    parse_line,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"somma 3 4", Request("somma", 3, 4, 1)),
        (b"SOMMA 3 4", Request("somma", 3, 4, 1)),
        (b"sottrazione 10 -2", Request("sottrazione", 10, -2, 1)),
        (b"moltiplicazione 2.5 4", Request("moltiplicazione", 2.5, 4, 1)),
        (b"divisione 10 4", Request("divisione", 10, 4, 1)),
        (b"add 1 2", Request("somma", 1, 2, 1)),
        (b"sub 1 2", Request("sottrazione", 1, 2, 1)),
        (b"mul 1 2", Request("moltiplicazione", 1, 2, 1)),
        (b"div 1 2", Request("divisione", 1, 2, 1)),
        (b"+ 1 2", Request("somma", 1, 2, 1)),
        (b"/ 1 2", Request("divisione", 1, 2, 1)),
        (b"3 * 4", Request("moltiplicazione", 3, 4, 1)),
        (b"3*4", Request("moltiplicazione", 3, 4, 1)),
        (b"10 / 4", Request("divisione", 10, 4, 1)),
        (b"-3 - -4", Request("sottrazione", -3, -4, 1)),
        (b"1e3 + .5", Request("somma", 1000.0, 0.5, 1)),
        (b"  somma\t1\t2  ", Request("somma", 1, 2, 1)),
        (b"somma", Request("somma", None, None, 1)),
        (b"divisione", Request("divisione", None, None, 1)),
        (b"ping", Ping(1)),
        (b'{"id": 7, "op": "somma", "a": 3, "b": 4}', Request("somma", 3, 4, 7)),
        (b'{"id": "x", "op": "div", "a": "10", "b": 4}', Request("divisione", 10, 4, "x")),
        (b'{"op": "mul", "a": 1.5, "b": 2}', Request("moltiplicazione", 1.5, 2, 1)),
        (b'{"op": "somma"}', Request("somma", None, None, 1)),
        (b'{"id": 3, "text": "3 * 4"}', Request("moltiplicazione", 3, 4, 3)),
        (b'{"id": 5, "op": "ping"}', Ping(5)),
    ],
)
def test_parse_accepts_both_forms(line: bytes, expected: object) -> None:
    assert parse_line(line, 1) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"foo 1 2", "unknown operation 'foo'"),
        (b"somma x 2", "bad operand 'x': not a number"),
        (b"somma 1", "takes two operands or none, got one"),
        (b"somma 1 2 3", "too many operands"),
        (b"somma nan 1", "not a number"),
        (b"somma inf 1", "not a number"),
        (b"somma 1e400 1", "operand out of range"),
        ("somma ٣ ٤".encode(), "not a number"),
        (b"somma " + b"9" * 50 + b" 1", "operand too long"),
        (b"\xff\xfe 1 2", "invalid UTF-8"),
        (b'{"id": 1, "op": "somma", "a": 1', "malformed JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"id": [1], "op": "somma"}', "id must be an integer of at most 40 digits or a string"),
        (b'{"op": "somma", "a": true, "b": 1}', "must be a number"),
        (b'{"op": "somma", "a": 1}', "takes two operands or none"),
        (b'{"op": "somma", "a": 1, "b": 2, "c": 3}', "unexpected field 'c'"),
        (b'{"op": "somma", "a": NaN, "b": 1}', "malformed JSON"),
        (b'{"a": 1, "b": 2}', 'missing "op"'),
        (b"x" * (MAX_LINE + 1), "line too long"),
        (b"   ", "empty request"),
    ],
)
def test_parse_rejects_bad_input_with_a_clear_message(line: bytes, message: str) -> None:
    parsed = parse_line(line, 9)
    assert isinstance(parsed, ProtocolError)
    assert message in parsed.message
    assert parsed.id in (9, 1)


def test_deep_json_is_an_error_not_a_crash() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    assert isinstance(parse_line(deep, 1), ProtocolError)


@pytest.mark.parametrize(
    ("op", "a", "b", "result"),
    [
        ("somma", 3, 4, 7),
        ("sottrazione", 3, 4, -1),
        ("moltiplicazione", 6, 7, 42),
        ("divisione", 10, 4, 2.5),
        ("divisione", 10, 5, 2),
        ("divisione", -9, 3, -3),
        ("somma", 0.1, 0.2, 0.1 + 0.2),
    ],
)
def test_compute(op: str, a: float, b: float, result: float) -> None:
    assert compute(op, a, b) == result


def test_division_by_zero_and_overflow_are_errors() -> None:
    assert compute("divisione", 1, 0) == ProtocolError("division by zero")
    assert compute("divisione", 1.5, 0.0) == ProtocolError("division by zero")
    assert compute("moltiplicazione", 1e300, 1e300) == ProtocolError("result out of range")


def test_big_integers_encode_without_losing_digits() -> None:
    big = 10**39
    line = dumps({"id": 1, "result": big * big})
    assert orjson.loads(line.replace(str(big * big).encode(), b"0")) == {"id": 1, "result": 0}
    assert str(big * big).encode() in line


def test_drawn_operands_are_in_the_original_range() -> None:
    rng = random.Random(1)
    draws = [draw_operands(rng) for _ in range(2000)]
    values = {v for pair in draws for v in pair}
    assert min(values) == 1 and max(values) == 50


def test_check_answer_and_describe() -> None:
    good = {"id": 3, "op": "somma", "a": 3, "b": 4, "result": 7, "server": "server2"}
    assert check_answer(good)
    assert not check_answer({**good, "result": 8})
    assert describe(good) == "#3 somma 3 4 = 7  server2"
    assert describe({"id": 4, "error": "division by zero"}) == "#4 error: division by zero"


def test_big_json_integers_decode_to_the_real_number() -> None:
    """The JSON form keeps integers wider than 64 bits exact, as the text form does."""
    parsed = parse_line(b'{"op":"somma","a":10000000000000000000000,"b":1}', 1)
    assert isinstance(parsed, Request)
    assert parsed.a == 10**22 and isinstance(parsed.a, int)
    text = parse_line(b"somma 10000000000000000000000 1", 1)
    assert isinstance(text, Request) and text.a == parsed.a
    assert json.loads(parsed.wire()) == {"op": "somma", "a": 10**22, "b": 1}

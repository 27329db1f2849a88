"""Fuzzing the request parser and the wire with hypothesis."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from balancer.protocol import (
    MAX_LINE,
    Ping,
    ProtocolError,
    Request,
    loads_exact,
    parse_line,
    parse_object,
    valid_id,
)
from tests.test_cli import serve

TOKENS = [b"somma", b"sottrazione", b"moltiplicazione", b"divisione", b"add", b"div", b"*",
          b"/", b"+", b"-", b"1", b"0", b"-7", b"3.5", b"1e308", b"1e999", b"nan", b"inf",
          b"Infinity", "٣".encode(), "١٢".encode(), b"9" * 45, b"x", b"{", b"}", b'"op"',
          b":", b",", b"\t", b" ", b"\xff", b"\x00", b"[", b"]", b"ping", b"null"]

lines = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(TOKENS), max_size=8).map(b" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "op", "a", "b", "text", "c"]), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(lines)
def test_parser_never_raises(line: bytes) -> None:
    parsed = parse_line(line, 1)
    assert isinstance(parsed, Request | Ping | ProtocolError)
    if isinstance(parsed, ProtocolError):
        assert parsed.message


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_objects_never_raise(value: object) -> None:
    parsed = parse_object(value, 1)
    assert isinstance(parsed, Request | Ping | ProtocolError)
    try:
        raw = orjson.dumps(value)
    except TypeError:
        return
    assert isinstance(parse_line(raw, 1), Request | Ping | ProtocolError)


@pytest.mark.parametrize(
    "line",
    [b"[" * 100_000, b'{"a":' * 50_000, b"somma " + b"1" * 10_000 + b" 2",
     b'{"op":"somma","a":1e400,"b":1}', b'{"op":"somma","a":NaN,"b":1}',
     b'{"op":"somma","a":Infinity,"b":1}', "somma ٣ ٤".encode(),
     b'{"op":"somma","a":' + b"9" * 5000 + b',"b":1}'],
)
def test_nasty_lines_are_errors(line: bytes) -> None:
    assert isinstance(parse_line(line, 1), ProtocolError)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with serve(tmp) as (_, served_port):
        yield served_port


LONG_LINES = [
    b'{"op":"somma",' + b" " * 65_000 + b'"a":1e5,"b":1}',  # under the limit
    b"somma 1 2" + b" " * (MAX_LINE - 9),  # exactly at it
    b"x" * (MAX_LINE + 1),  # past it: the connection's last answer
    b"somma " + b"1" * 70_000,
]


def expected_ids(batch: list[bytes]) -> list[str]:
    """The id each answer must carry (JSON-encoded), in any order: the client's own
    valid id, else the request's number on the connection (blank lines have none)."""
    ids = []
    seq = 0
    for line in batch:
        if len(line) > MAX_LINE:
            ids.append(json.dumps(seq + 1))
            break
        stripped = line.strip()
        if not stripped:
            continue
        seq += 1
        assume(stripped.lower() not in (b"exit", b"quit"))
        obj = loads_exact(stripped)
        if isinstance(obj, dict):
            assume(str(obj.get("op")).lower() not in ("exit", "quit"))
            rid = obj.get("id")
            if rid is not None and valid_id(rid):
                ids.append(json.dumps(rid))
                continue
        ids.append(json.dumps(seq))
    return ids


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(lines.filter(lambda b: b"\n" not in b)
                      | st.sampled_from(LONG_LINES), min_size=1, max_size=30),
       cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_wire_answers_every_line_once(port: int, batch: list[bytes], cuts: list[int]) -> None:
    want = expected_ids(batch)
    payload = b"".join(line + b"\n" for line in batch)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        at = 0
        for cut in cuts:  # partial lines split across packets
            if at >= len(payload):
                break
            sock.sendall(payload[at:at + cut])
            at += cut
        sock.sendall(payload[at:])
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answers = [json.loads(line) for line in data.splitlines()]
    # Exactly one answer per request, each with its own id.
    assert Counter(json.dumps(a["id"]) for a in answers) == Counter(want), (batch, answers)
    for answer in answers:
        assert "id" in answer
        assert ("result" in answer) or ("error" in answer) or ("pong" in answer), answer

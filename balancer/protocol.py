"""The wire protocol: request parsing, arithmetic and answer encoding.

One module shared by the balancer, the calculation servers and the clients, so
the grammar of a request and the shape of an answer are defined exactly once.
Parsing works on bytes and returns either a `Request` or a `ProtocolError`;
nothing in here raises on bad input.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass

import orjson

MAX_LINE = 64 * 1024
"""Longest request line accepted, in bytes (without the newline)."""

MAX_OPERAND_CHARS = 40
"""Longest operand accepted, in characters: keeps big-int arithmetic cheap."""

MAX_ID_DIGITS = 40
"""Longest integer id accepted, in digits."""

MAX_ID_CHARS = 256
"""Longest string id accepted, in characters."""

MAX_WORK_MS = 60_000
"""Most simulated work a request may ask of a server, in milliseconds."""

ID_LIMITS = (f"id must be an integer of at most {MAX_ID_DIGITS} digits or a string of at "
             f"most {MAX_ID_CHARS} characters")

RANDOM_LOW, RANDOM_HIGH = 1, 50
"""Range of the operands a server draws when a request carries none."""

OPERATIONS: tuple[str, ...] = ("somma", "sottrazione", "moltiplicazione", "divisione")

ALIASES: dict[str, str] = {
    "somma": "somma",
    "add": "somma",
    "sum": "somma",
    "+": "somma",
    "sottrazione": "sottrazione",
    "sub": "sottrazione",
    "-": "sottrazione",
    "moltiplicazione": "moltiplicazione",
    "mul": "moltiplicazione",
    "*": "moltiplicazione",
    "x": "moltiplicazione",
    "divisione": "divisione",
    "div": "divisione",
    "/": "divisione",
}
_ALIASES_B: dict[bytes, str] = {k.encode(): v for k, v in ALIASES.items()}

SYMBOLS: dict[str, str] = {
    "somma": "+",
    "sottrazione": "-",
    "moltiplicazione": "*",
    "divisione": "/",
}

EXIT_WORDS = frozenset({b"exit", b"quit"})
PING_WORD = b"ping"

Number = int | float

_NUMBER = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INFIX = re.compile(
    rb"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([-+*/x])\s*"
    rb"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*"
)
_KNOWN = ", ".join(OPERATIONS)


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed arithmetic request; `a`/`b` are None when the server must draw them."""

    op: str
    a: Number | None = None
    b: Number | None = None
    id: int | str | None = None
    work_ms: Number | None = None
    """Simulated work the server spends on it before answering (the lab)."""

    def wire(self) -> bytes:
        """The request as the balancer forwards it: compact JSON, no id, exact numbers."""
        obj: dict[str, object] = {"op": self.op}
        if self.a is not None:
            obj["a"] = self.a
            obj["b"] = self.b
        if self.work_ms is not None:
            obj["work_ms"] = self.work_ms
        return dumps(obj)


@dataclass(frozen=True, slots=True)
class Ping:
    """A health-check request."""

    id: int | str | None = None


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A request that cannot be served, with the message the client will read."""

    message: str
    id: int | str | None = None


Parsed = Request | Ping | ProtocolError


# ---------------------------------------------------------------- numbers


def parse_number(token: bytes) -> Number | ProtocolError:
    """Parse one ASCII operand: an integer or a finite decimal."""
    if len(token) > MAX_OPERAND_CHARS:
        return ProtocolError(f"operand too long (more than {MAX_OPERAND_CHARS} characters)")
    if token.isdigit():
        return int(token)
    if _NUMBER.fullmatch(token) is None:
        shown = token[:20].decode("utf-8", "replace")
        return ProtocolError(f"bad operand {shown!r}: not a number")
    if b"." in token or b"e" in token or b"E" in token:
        value = float(token)
        if not math.isfinite(value):
            return ProtocolError("operand out of range")
        return value
    return int(token)


def _json_number(value: object, name: str) -> Number | ProtocolError:
    if isinstance(value, bool) or value is None:
        return ProtocolError(f"operand {name!r} must be a number")
    if isinstance(value, int):
        if len(str(abs(value))) > MAX_OPERAND_CHARS:
            return ProtocolError("operand out of range")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ProtocolError("operand out of range")
    if isinstance(value, str):
        try:
            token = value.strip().encode("ascii")
        except UnicodeEncodeError:
            return ProtocolError(f"operand {name!r} must be a number")
        return parse_number(token)
    return ProtocolError(f"operand {name!r} must be a number")


# ---------------------------------------------------------------- text form


def parse_text(line: bytes, request_id: int | str | None = None) -> Parsed:
    """Parse the text form: `OP`, `OP A B`, `A OP B` or `AOPB` (e.g. `3*4`)."""
    parts = line.split()
    n = len(parts)
    if n == 0:
        return ProtocolError("empty request", request_id)
    op = _ALIASES_B.get(parts[0].lower())
    if n == 1:
        if op is not None:
            return Request(op, None, None, request_id)
        if parts[0].lower() == PING_WORD:
            return Ping(request_id)
        match = _INFIX.fullmatch(line)
        if match is not None:
            return _operands(ALIASES[match[2].decode()], match[1], match[3], request_id)
        return _unknown(parts[0], request_id)
    if n == 3:
        if op is not None:
            return _operands(op, parts[1], parts[2], request_id)
        infix = _ALIASES_B.get(parts[1].lower())
        if infix is not None:
            return _operands(infix, parts[0], parts[2], request_id)
        if _NUMBER.fullmatch(parts[0]):
            return _unknown(parts[1], request_id)
        return _unknown(parts[0], request_id)
    if op is None:
        match = _INFIX.fullmatch(line)
        if match is not None:
            return _operands(ALIASES[match[2].decode()], match[1], match[3], request_id)
        return _unknown(parts[0], request_id)
    if n == 2:
        return ProtocolError(f"{op} takes two operands or none, got one", request_id)
    return ProtocolError(f"too many operands: {op} takes two, got {n - 1}", request_id)


def _operands(op: str, ta: bytes, tb: bytes, request_id: int | str | None) -> Parsed:
    a = parse_number(ta)
    if isinstance(a, ProtocolError):
        return ProtocolError(a.message, request_id)
    b = parse_number(tb)
    if isinstance(b, ProtocolError):
        return ProtocolError(b.message, request_id)
    return Request(op, a, b, request_id)


def _unknown(token: bytes, request_id: int | str | None) -> ProtocolError:
    shown = token[:30].decode("utf-8", "replace")
    return ProtocolError(f"unknown operation {shown!r} (use {_KNOWN})", request_id)


# ---------------------------------------------------------------- JSON form


def id_error(value: object) -> str | None:
    """None for a valid id (an integer of at most 40 digits or a string of at most 256
    characters), else the message that says why not."""
    if isinstance(value, bool):
        return ID_LIMITS
    if isinstance(value, int):
        return None if len(str(abs(value))) <= MAX_ID_DIGITS else ID_LIMITS
    if isinstance(value, str):
        return None if len(value) <= MAX_ID_CHARS else ID_LIMITS
    return ID_LIMITS


def valid_id(value: object) -> bool:
    return id_error(value) is None


_LONG_DIGITS = re.compile(rb"\d{16}")


def loads_exact(text: bytes) -> object:
    """Decode JSON; integers too wide for 64 bits stay exact integers (orjson would
    turn them into floats). Returns a ProtocolError for anything malformed."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return ProtocolError(f"malformed JSON: {_short(exc)}")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        return ProtocolError(f"malformed JSON: {_short(exc)}")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def parse_object(obj: object, request_id: int | str | None = None) -> Parsed:
    """Parse a decoded JSON request: `{"id", "op", "a", "b"}` or `{"id", "text"}`."""
    if not isinstance(obj, dict):
        return ProtocolError("a JSON request must be an object", request_id)
    if "id" in obj and obj["id"] is not None:
        problem = id_error(obj["id"])
        if problem is not None:
            return ProtocolError(problem, request_id)
        request_id = obj["id"]
    work_ms = None
    if "work_ms" in obj:
        work_ms = obj["work_ms"]
        if isinstance(work_ms, bool) or not isinstance(work_ms, int | float) \
                or not 0 <= work_ms <= MAX_WORK_MS:
            return ProtocolError(
                f"work_ms must be a number of milliseconds from 0 to {MAX_WORK_MS}", request_id)
    text = obj.get("text")
    if text is not None:
        if not isinstance(text, str):
            return ProtocolError("text must be a string", request_id)
        parsed = parse_text(text.encode("utf-8", "surrogatepass"), request_id)
        if work_ms is not None and isinstance(parsed, Request):
            return Request(parsed.op, parsed.a, parsed.b, parsed.id, work_ms)
        return parsed
    op_name = obj.get("op")
    if not isinstance(op_name, str):
        return ProtocolError('missing "op" (or "text")', request_id)
    if op_name.lower() == "ping":
        return Ping(request_id)
    op = ALIASES.get(op_name.lower())
    if op is None:
        return _unknown(op_name.encode("utf-8", "replace"), request_id)
    has_a, has_b = "a" in obj, "b" in obj
    extra = [k for k in obj if k not in ("id", "op", "a", "b", "work_ms")]
    if extra:
        return ProtocolError(f"unexpected field {str(extra[0])[:30]!r}", request_id)
    if not has_a and not has_b:
        return Request(op, None, None, request_id, work_ms)
    if has_a != has_b:
        return ProtocolError(f"{op} takes two operands or none, got one", request_id)
    a = _json_number(obj["a"], "a")
    if isinstance(a, ProtocolError):
        return ProtocolError(a.message, request_id)
    b = _json_number(obj["b"], "b")
    if isinstance(b, ProtocolError):
        return ProtocolError(b.message, request_id)
    return Request(op, a, b, request_id, work_ms)


def parse_line(line: bytes, seq: int | str | None = None) -> Parsed:
    """Parse one request line in either form; `seq` is the id used when it has none."""
    stripped = line.strip()
    if not stripped:
        return ProtocolError("empty request", seq)
    if len(stripped) > MAX_LINE:
        return ProtocolError(f"line too long (limit {MAX_LINE} bytes)", seq)
    if stripped[:1] in (b"{", b"["):
        obj = loads_exact(stripped)
        if isinstance(obj, ProtocolError):
            return ProtocolError(obj.message, seq)
        return parse_object(obj, seq)
    if not stripped.isascii():
        try:
            stripped.decode("utf-8")
        except UnicodeDecodeError:
            return ProtocolError("invalid UTF-8", seq)
    return parse_text(stripped, seq)


def _short(exc: Exception) -> str:
    text = str(exc).split(":", 1)[0]
    return text[:80]


# ---------------------------------------------------------------- arithmetic


def compute(op: str, a: Number, b: Number) -> Number | ProtocolError:
    """Do the arithmetic; division by zero and overflow are errors, not exceptions."""
    try:
        if op == "somma":
            result = a + b
        elif op == "sottrazione":
            result = a - b
        elif op == "moltiplicazione":
            result = a * b
        elif op == "divisione":
            if b == 0:
                return ProtocolError("division by zero")
            if isinstance(a, int) and isinstance(b, int) and a % b == 0:
                result = a // b
            else:
                result = a / b
        else:
            return ProtocolError(f"unknown operation {op!r}")
    except OverflowError:
        return ProtocolError("result out of range")
    if isinstance(result, float) and not math.isfinite(result):
        return ProtocolError("result out of range")
    return result


def draw_operands(rng: random.Random) -> tuple[int, int]:
    """Two random integers in 1..50, as the original servers drew them."""
    return rng.randint(RANDOM_LOW, RANDOM_HIGH), rng.randint(RANDOM_LOW, RANDOM_HIGH)


# ---------------------------------------------------------------- encoding


def dumps(obj: dict) -> bytes:
    """Compact JSON; integers wider than 64 bits fall back to the standard library."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()


def answer_line(request_id: object, op: str, a: Number, b: Number, result: Number) -> bytes:
    """The JSON answer to a request, id first (the balancer rewrites it in place)."""
    return dumps({"id": request_id, "op": op, "a": a, "b": b, "result": result}) + b"\n"


def error_line(request_id: object, message: str) -> bytes:
    """A JSON error answer, id first."""
    return dumps({"id": request_id, "error": message}) + b"\n"


def json_id(request_id: object) -> bytes:
    """The JSON encoding of an id, as it appears after `"id":`."""
    try:
        return orjson.dumps(request_id)
    except TypeError:
        return json.dumps(request_id).encode()


def check_answer(answer: dict) -> bool:
    """True when an answer's result is what its op and operands give."""
    if "result" not in answer:
        return False
    expected = compute(answer["op"], answer["a"], answer["b"])
    if isinstance(expected, ProtocolError):
        return False
    got = answer["result"]
    if isinstance(expected, float) or isinstance(got, float):
        return math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)
    return got == expected


def describe(answer: dict) -> str:
    """A one-line human reading of an answer: `#7 somma 3 4 = 7  server2`."""
    rid = answer.get("id")
    where = answer.get("server", "")
    if "error" in answer:
        return f"#{rid} error: {answer['error']}  {where}".rstrip()
    if "pong" in answer:
        return f"#{rid} pong from {answer['pong']}"
    if "goodbye" in answer:
        return f"#{rid} goodbye"
    op = answer.get("op", "?")
    a, b, result = (_num(answer.get(k)) for k in ("a", "b", "result"))
    return f"#{rid} {op} {a} {b} = {result}  {where}".rstrip()


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)

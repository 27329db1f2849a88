"""The small language of a scenario's `expect` lines: `lost == 0 and server2.ejections >= 1`.

A scenario file is data someone else may have written, so its checks are
parsed here by a hand-written recursive-descent parser and evaluated over a
table of measured values; nothing is ever handed to `eval`. `parse_check`
returns a `Check` or a message, and never raises; `Check.evaluate` returns an
`Outcome` (passed or not, and the values it saw), and never raises either: a
missing value, a comparison of a word with a number or a division by zero is
a failed check with a reason.

Grammar (lowest precedence first):

    check  := conj ('or' conj)*
    conj   := comp ('and' comp)*
    comp   := sum ('==' | '!=' | '<' | '<=' | '>' | '>=') sum
    sum    := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := '-' unary | atom
    atom   := NUMBER | STRING | STATE | NAME | '(' sum ')'

NAME is dotted (`lost`, `server2.state`, `phase.leastconn.p99_ms`); STATE is a
server state written bare (`UP`, `EJECTED`); STRING is quoted ("UP" or 'UP').
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_LENGTH = 500
MAX_DEPTH = 32
STATES = ("STARTING", "UP", "DOWN", "DRAINING", "STOPPED", "EJECTED")
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")

Value = float | str | None

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<string>"[^"\\]{0,64}"|'[^'\\]{0,64}')
    | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\))
    )""", re.VERBOSE)


class CheckError(Exception):
    """A check that cannot be parsed; the message says where and why."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Name:
    path: str


@dataclass(frozen=True)
class Arith:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Both:
    parts: tuple[Cond, ...]


@dataclass(frozen=True)
class Either:
    parts: tuple[Cond, ...]


Node = Num | Text | Name | Arith | Neg
Cond = Cmp | Both | Either


@dataclass(frozen=True)
class Outcome:
    """One check's result: `detail` shows the values it was decided on."""

    passed: bool
    detail: str


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].lstrip()
            raise CheckError(f"unexpected {rest[:12]!r} at character {len(text) - len(rest) + 1}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def word(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "name" and value.lower() == word:
            self.pos += 1
            return True
        return False

    def check(self) -> Cond:
        parts = [self.conj()]
        while self.word("or"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Either(tuple(parts))

    def conj(self) -> Cond:
        parts = [self.comp()]
        while self.word("and"):
            parts.append(self.comp())
        return parts[0] if len(parts) == 1 else Both(tuple(parts))

    def comp(self) -> Cond:
        left = self.sum()
        kind, value = self.peek()
        if kind != "op" or value not in COMPARISONS:
            shown = "the end" if kind == "end" else repr(value)
            raise CheckError(f"expected a comparison (== != < <= > >=) but found {shown}")
        self.take()
        return Cmp(value, left, self.sum())

    def sum(self) -> Node:
        node = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            node = Arith(self.take()[1], node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            node = Arith(self.take()[1], node, self.unary())
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CheckError("too deeply nested")
        try:
            if self.peek() == ("op", "-"):
                self.take()
                return Neg(self.unary())
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            number = float(value)
            if not math.isfinite(number):
                raise CheckError(f"number out of range: {value[:20]}")
            return Num(number)
        if kind == "string":
            return Text(value[1:-1])
        if kind == "name":
            if value.lower() in ("and", "or"):
                raise CheckError(f"{value!r} needs a comparison before it")
            return Text(value) if value in STATES else Name(value)
        if (kind, value) == ("op", "("):
            node = self.sum()
            if self.take() != ("op", ")"):
                raise CheckError("a '(' is not closed")
            return node
        shown = "the end" if kind == "end" else repr(value)
        raise CheckError(f"expected a name, a number or a state but found {shown}")


@dataclass(frozen=True)
class Check:
    """A parsed expect line."""

    text: str
    tree: Cond

    def names(self) -> set[str]:
        """Every dotted name the check reads."""
        found: set[str] = set()

        def walk(node: Node | Cond) -> None:
            match node:
                case Name(path):
                    found.add(path)
                case Arith(_, left, right) | Cmp(_, left, right):
                    walk(left)
                    walk(right)
                case Neg(operand):
                    walk(operand)
                case Both(parts) | Either(parts):
                    for part in parts:
                        walk(part)

        walk(self.tree)
        return found

    def evaluate(self, values: Mapping[str, Value]) -> Outcome:
        """Decide the check on `values`; never raises."""
        seen: dict[str, Value] = {}
        try:
            passed = _decide(self.tree, values, seen)
            reason = ""
        except _Undecided as exc:
            passed, reason = False, str(exc)
        shown = ", ".join(f"{name} = {_show(value)}" for name, value in seen.items())
        detail = "; ".join(part for part in (shown, reason) if part)
        return Outcome(passed, detail)


def parse_check(text: object) -> Check | str:
    """A `Check`, or a message saying what is wrong with `text`."""
    if not isinstance(text, str):
        return f"a check is a string such as \"lost == 0\", not {type(text).__name__}"
    if not text.strip():
        return "the check is empty"
    if len(text) > MAX_LENGTH:
        return f"the check is longer than {MAX_LENGTH} characters"
    try:
        parser = _Parser(_tokens(text))
        tree = parser.check()
        kind, value = parser.peek()
        if kind != "end":
            raise CheckError(f"unexpected {value!r} after a complete check")
    except CheckError as exc:
        return str(exc)
    return Check(text.strip(), tree)


class _Undecided(Exception):
    pass


def _show(value: Value) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, str):
        return value
    if not math.isfinite(value) or value != int(value) or abs(value) >= 1e15:
        return f"{value:g}"
    return f"{int(value)}"


def _value(node: Node, values: Mapping[str, Value], seen: dict[str, Value]) -> Value:
    match node:
        case Num(value) | Text(value):
            return value
        case Name(path):
            value = values.get(path)
            if isinstance(value, bool | int):
                value = float(value)
            seen[path] = value
            if value is None:
                raise _Undecided(f"{path} has no value in this run")
            return value
        case Neg(operand):
            inner = _value(operand, values, seen)
            if isinstance(inner, str):
                raise _Undecided(f"cannot negate {inner!r}")
            return -inner if inner is not None else None
        case Arith(op, left, right):
            a, b = _value(left, values, seen), _value(right, values, seen)
            if not isinstance(a, float) or not isinstance(b, float):
                raise _Undecided(f"arithmetic needs numbers, not {_show(a)} {op} {_show(b)}")
            return _ARITH[op](a, b)
    raise _Undecided("not a value")


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise _Undecided("division by zero")
    return a / b


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": _divide,
}
_CMP: dict[str, Callable[[object, object], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _decide(cond: Cond, values: Mapping[str, Value], seen: dict[str, Value]) -> bool:
    match cond:
        case Both(parts):
            results = [_decide(part, values, seen) for part in parts]
            return all(results)
        case Either(parts):
            results = []
            for part in parts:
                try:
                    results.append(_decide(part, values, seen))
                except _Undecided:
                    results.append(False)
            return any(results)
        case Cmp(op, left, right):
            a, b = _value(left, values, seen), _value(right, values, seen)
            if isinstance(a, str) != isinstance(b, str):
                raise _Undecided(f"cannot compare {_show(a)} with {_show(b)}")
            if isinstance(a, str) and op not in ("==", "!="):
                raise _Undecided(f"words compare only with == and !=, not {op}")
            if isinstance(a, float) and isinstance(b, float) and not (
                    math.isfinite(a) and math.isfinite(b)):
                raise _Undecided("a value is not a finite number")
            return _CMP[op](a, b)
    raise _Undecided("not a check")

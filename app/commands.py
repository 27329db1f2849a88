"""What the operator types in the console's input box, parsed into commands.

Pure functions, no Textual: `parse_command` turns one line into a command or
an `Invalid` with a message worth showing; `suggest` completes a partial line
for the input's suggester. Requests (`somma 3 4`, `3 * 4`, JSON) are checked
with the wire protocol's own parser, so the console refuses exactly what the
balancer would refuse, and says why before sending anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from balancer.protocol import OPERATIONS, ProtocolError, parse_line

MAX_BATCH = 100_000_000

ServerAction = Literal["kill", "stop", "restart", "drain", "freeze", "thaw"]
SERVER_ACTIONS: tuple[ServerAction, ...] = ("kill", "stop", "restart", "drain", "freeze", "thaw")


@dataclass(frozen=True)
class SendRequest:
    """An arithmetic request (or `ping`), sent as typed through the console's client."""

    line: str


@dataclass(frozen=True)
class RunBatch:
    count: int


@dataclass(frozen=True)
class CancelBatch:
    pass


@dataclass(frozen=True)
class ServerCommand:
    action: ServerAction
    target: str | None
    """A 1-based row number or a server name; None means the selected server."""


@dataclass(frozen=True)
class AddServer:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class ShowHelp:
    pass


@dataclass(frozen=True)
class TogglePause:
    pass


@dataclass(frozen=True)
class ClearPanels:
    pass


@dataclass(frozen=True)
class Invalid:
    message: str


Command = (SendRequest | RunBatch | CancelBatch | ServerCommand | AddServer | Quit | ShowHelp
           | TogglePause | ClearPanels | Invalid)

_SIMPLE: dict[str, Command] = {
    "exit": Quit(), "quit": Quit(), "q": Quit(),
    "help": ShowHelp(), "?": ShowHelp(),
    "cancel": CancelBatch(),
    "pause": TogglePause(), "resume": TogglePause(),
    "clear": ClearPanels(),
}

HINT = "type help for the commands"


def parse_count(text: str) -> int | None:
    """`1000`, `1_000`, `1,000`, `10k`, `1m` as a positive integer; None if it is none."""
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if text[-1:] in ("k", "m"):
        scale = 1_000 if text[-1] == "k" else 1_000_000
        text = text[:-1]
    if not text.isdigit():
        return None
    return int(text) * scale


def _server_command(action: ServerAction, args: list[str]) -> Command:
    if not args:
        return ServerCommand(action, None)
    if len(args) > 1:
        return Invalid(f"{action} takes one server: a row number (1, 2, …) or a name")
    target = args[0]
    if target.isdigit() and int(target) < 1:
        return Invalid(f"servers are numbered from 1: {action} 1, {action} 2, …")
    return ServerCommand(action, target)


def parse_command(text: str) -> Command | None:
    """One line of input; None for an empty line."""
    line = text.strip()
    if not line:
        return None
    words = line.split()
    head = words[0].lower()
    args = words[1:]
    if head in _SIMPLE:
        if args:
            return Invalid(f"{head} takes no arguments")
        return _SIMPLE[head]
    if head == "random":
        if len(args) != 1:
            return Invalid(f"usage: random N   (e.g. random 1000; at most {MAX_BATCH:,})")
        count = parse_count(args[0])
        if count is None or not 0 < count <= MAX_BATCH:
            return Invalid(f"random needs a count from 1 to {MAX_BATCH:,}, not {args[0]!r}")
        return RunBatch(count)
    if head in SERVER_ACTIONS:
        return _server_command(head, args)  # type: ignore[arg-type]
    if head == "add" and (not args or (len(args) == 1 and args[0].lower() == "server")):
        # `add` alone adds a server; `add 3 4` is still a sum (the protocol's alias).
        return AddServer()
    return _request(line)


def _request(line: str) -> Command:
    parsed = parse_line(line.encode("utf-8", "surrogatepass"))
    if isinstance(parsed, ProtocolError):
        message = parsed.message
        if message.startswith("unknown operation"):
            return Invalid(f"not understood: {line[:40]!r} ({HINT})")
        return Invalid(f"{message} ({HINT})")
    return SendRequest(line)


# ---------------------------------------------------------------- suggestions

VOCABULARY: tuple[str, ...] = (
    *OPERATIONS,
    "random 1000", "random 100000", "random 1000000",
    "kill ", "stop ", "restart ", "drain ", "freeze ", "thaw ", "add",
    "cancel", "ping", "pause", "clear", "help", "exit", "quit",
)


def suggest(text: str, history: Iterable[str] = ()) -> str | None:
    """A completion of `text`: the latest matching history entry first, then the vocabulary."""
    if not text.strip():
        return None
    lowered = text.lower()
    for entry in history:
        if entry.lower().startswith(lowered) and len(entry) > len(text):
            return text + entry[len(text):]
    for word in VOCABULARY:
        if word.startswith(lowered) and len(word) > len(text):
            return text + word[len(text):]
    return None


HELP_COMMANDS: tuple[tuple[str, str], ...] = (
    ("somma 3 4, 3 * 4", "a request (somma sottrazione moltiplicazione divisione, or + - * /)"),
    ("somma", "no operands: the server draws two in 1..50"),
    ('{"op": "somma", "a": 3, "b": 4}', "a JSON request"),
    ("random N", "N random requests pipelined (10k and 1m work), progress then a summary"),
    ("cancel", "stop the running batch"),
    ("kill N, stop N", "SIGKILL server N (a crash) / stop it gently (drain, then SIGTERM)"),
    ("restart N, drain N", "start server N again / toggle draining (takes nothing new)"),
    ("freeze N, thaw N", "SIGSTOP / SIGCONT server N (a hung process)"),
    ("add", "spawn one more server"),
    ("ping", "ask the balancer how many servers are UP"),
    ("pause, clear", "pause the scrolling panels / clear them"),
    ("exit, quit", "stop every server and leave"),
)
"""(command, meaning) pairs for the help screen; N is a row number or a name, or the
selected server when left out."""

"""The one command language: every operator command, parsed from one line.

The console's input box and palette, the runtime socket (`lbconsole ctl`) and
scenario files all speak it. `parse_command` turns a line into one of the
frozen dataclasses below, or into `Invalid` with a message worth showing: it
never raises. Requests (`somma 3 4`, `3 * 4`, JSON) are checked with the wire
protocol's own parser, so the grammar refuses exactly what the balancer would.

One table, `SPECS`, lists every command once: its words, its usage, what it
does and its parser. The help screen (`HELP_COMMANDS`), the completion
vocabulary (`VOCABULARY`, `suggest`) and the dispatcher's "console only"
refusals are all read from it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.control.model import (  # noqa: F401  (re-exported: the grammar's vocabulary)
    CONSOLE_ONLY,
    DEFAULT_CONCURRENCY,
    HINT,
    MAX_BATCH,
    MAX_CONCURRENCY,
    MAX_SPEED,
    MAX_WORK_MS,
    MAX_WORKERS,
    SERVER_ACTIONS,
    AddServer,
    CancelBatch,
    ClearPanels,
    Command,
    Compare,
    Invalid,
    Quit,
    RunBatch,
    SendRequest,
    ServerAction,
    ServerCommand,
    ServerSetting,
    SetAlgorithm,
    Setting,
    SetWeight,
    Show,
    ShowHelp,
    TogglePause,
    Work,
)
from balancer.algorithms import ALGORITHMS, MAX_WEIGHT
from balancer.protocol import OPERATIONS, ProtocolError, parse_line

# ---------------------------------------------------------------- small parsers


def parse_count(text: str) -> int | None:
    """`1000`, `1_000`, `1,000`, `10k`, `1m` as a non-negative integer; None if it is none."""
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if text[-1:] in ("k", "m"):
        scale = 1_000 if text[-1] == "k" else 1_000_000
        text = text[:-1]
    if not text.isascii() or not text.isdecimal() or len(text) > 12:
        return None
    return int(text) * scale


def parse_number(text: str) -> float | None:
    """A finite decimal number, or None."""
    if not text.isascii() or len(text) > 24:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_work(text: str) -> Work | str:
    """`A-B` (uniform ms) or `exp:M` (exponential, mean M ms); a message if neither."""
    usage = f"work takes A-B (uniform, ms) or exp:M (mean M ms), at most {MAX_WORK_MS:g} ms"
    lowered = text.lower()
    if lowered.startswith("exp:"):
        mean = parse_number(lowered[4:])
        if mean is None or not 0 < mean <= MAX_WORK_MS:
            return f"{usage}, not {text!r}"
        return Work("exp", mean)
    low_text, sep, high_text = lowered.partition("-")
    low, high = parse_number(low_text), parse_number(high_text)
    if not sep or low is None or high is None or not 0 <= low <= high <= MAX_WORK_MS:
        return f"{usage}, not {text!r}"
    return Work("uniform", low, high)


def parse_target(word: str, what: str) -> str | Invalid:
    if word.isdecimal() and int(word) < 1:
        return Invalid(f"servers are numbered from 1: {what} 1, {what} 2, …")
    return word


# ---------------------------------------------------------------- command parsers

Parser = Callable[[str, list[str]], Command]


def _no_args(command: Command) -> Parser:
    def parse(head: str, args: list[str]) -> Command:
        return Invalid(f"{head} takes no arguments") if args else command

    return parse


def _random(head: str, args: list[str]) -> Command:
    usage = (f"usage: random N [work A-B | work exp:M]   (e.g. random 1000 work 0-20; "
             f"at most {MAX_BATCH:,})")
    if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "work"):
        return Invalid(usage)
    count = parse_count(args[0])
    if count is None or not 0 < count <= MAX_BATCH:
        return Invalid(f"random needs a count from 1 to {MAX_BATCH:,}, not {args[0]!r}")
    if len(args) == 1:
        return RunBatch(count)
    work = parse_work(args[2])
    return Invalid(work) if isinstance(work, str) else RunBatch(count, work)


def _server(head: str, args: list[str]) -> Command:
    if not args:
        return ServerCommand(head, None)  # type: ignore[arg-type]
    if len(args) > 1:
        return Invalid(f"{head} takes one server: a row number (1, 2, …) or a name")
    target = parse_target(args[0], head)
    return target if isinstance(target, Invalid) else ServerCommand(head, target)  # type: ignore[arg-type]


def _fault(head: str, args: list[str]) -> Command:
    if len(args) > 1:
        return Invalid(f"{head} takes one server: a row number (1, 2, …) or a name")
    target = parse_target(args[0], head) if args else None
    if isinstance(target, Invalid):
        return target
    return ServerSetting(head, target, True)  # type: ignore[arg-type]


def _algo(head: str, args: list[str]) -> Command:
    names = ", ".join(ALGORITHMS)
    if len(args) != 1:
        return Invalid(f"usage: algo NAME   ({names}, or next)")
    name = args[0].lower()
    if name != "next" and name not in ALGORITHMS:
        return Invalid(f"unknown algorithm {args[0][:30]!r} (use {names})")
    return SetAlgorithm(name)


def _weight(head: str, args: list[str]) -> Command:
    if len(args) != 2:
        return Invalid(f"usage: weight N W   (W from 0 to {MAX_WEIGHT}; 0 takes N out)")
    target = parse_target(args[0], head)
    if isinstance(target, Invalid):
        return target
    weight = parse_count(args[1]) if args[1].isdecimal() else None
    if weight is None or weight > MAX_WEIGHT:
        return Invalid(f"a weight is a whole number from 0 to {MAX_WEIGHT}, not {args[1]!r}")
    return SetWeight(target, weight)


_VALUE_USAGE: dict[str, str] = {
    "workers": "workers N K   (K requests in work at once, or unlimited)",
    "speed": f"speed N F   (F > 0, at most {MAX_SPEED:g}; below 1 is slower)",
    "latency": f"latency N MS   (extra ms per answer, 0 to {MAX_WORK_MS:g})",
    "flaky": "flaky N P%   (P% of answers are server faults, 0-100)",
    "resets": "resets N P%   (P% of requests close the connection, 0-100)",
}


def parse_percent(text: str) -> float | None:
    """`30%` or `30` as a number from 0 to 100; None if it is none."""
    number = parse_number(text.strip().removesuffix("%"))
    return number if number is not None and 0 <= number <= 100 else None


def parse_setting_value(head: str, text: str) -> float | int | str | None:
    """A server setting's value (workers: a count, or None for unlimited), or a message.
    Also what `--server-workers`, `--server-speed` and `--server-latency` take."""
    lowered = text.lower()
    if head == "workers":
        if lowered in ("unlimited", "none", "-"):
            return None
        count = parse_count(lowered) if lowered.isdecimal() else None
        if count is None or not 1 <= count <= MAX_WORKERS:
            return f"workers is a count from 1 to {MAX_WORKERS:,} or unlimited, not {text!r}"
        return count
    if head in ("flaky", "resets"):
        number = parse_percent(lowered)
        if number is None:
            return f"{head} takes a percentage from 0 to 100 (e.g. 30%), not {text!r}"
        return number
    number = parse_number(lowered.removesuffix("ms") if head == "latency" else lowered)
    if head == "speed" and (number is None or not 0 < number <= MAX_SPEED):
        return f"speed is a factor above 0 and at most {MAX_SPEED:g} (0.5 is half speed), " \
               f"not {text!r}"
    if head == "latency" and (number is None or not 0 <= number <= MAX_WORK_MS):
        return f"latency is in ms, from 0 to {MAX_WORK_MS:g}, not {text!r}"
    return number


def _setting(head: str, args: list[str]) -> Command:
    if len(args) != 2:
        return Invalid(f"usage: {_VALUE_USAGE[head]}")
    target = parse_target(args[0], head)
    if isinstance(target, Invalid):
        return target
    value = parse_setting_value(head, args[1])
    if isinstance(value, str):
        return Invalid(value)
    return ServerSetting(head, target, value)  # type: ignore[arg-type]


def _show(head: str, args: list[str]) -> Command:
    if len(args) != 1 or args[0].lower() not in ("servers", "stats"):
        return Invalid("usage: show servers | show stats")
    return Show(args[0].lower())  # type: ignore[arg-type]


def _compare(head: str, args: list[str]) -> Command:
    usage = ("usage: compare [ALGOS] N [work SPEC] [concurrency C]   "
             "(e.g. compare roundrobin,leastconn 20k work 0-20 concurrency 64)")
    algorithms: list[str] = []
    rest = list(args)
    while rest and parse_count(rest[0]) is None:
        for name in rest.pop(0).lower().split(","):
            if name and name not in ALGORITHMS:
                return Invalid(f"unknown algorithm {name[:30]!r} (use {', '.join(ALGORITHMS)})")
            if name and name not in algorithms:
                algorithms.append(name)
    if not rest:
        return Invalid(usage)
    count = parse_count(rest.pop(0))
    if count is None or not 0 < count <= MAX_BATCH:
        return Invalid(f"compare needs a count from 1 to {MAX_BATCH:,}")
    work: Work | None = None
    concurrency = DEFAULT_CONCURRENCY
    while rest:
        if len(rest) < 2:
            return Invalid(usage)
        key, text = rest.pop(0).lower(), rest.pop(0)
        if key == "work":
            parsed = parse_work(text)
            if isinstance(parsed, str):
                return Invalid(parsed)
            work = parsed
        elif key == "concurrency":
            c = parse_count(text)
            if c is None or not 1 <= c <= MAX_CONCURRENCY:
                return Invalid(f"concurrency is from 1 to {MAX_CONCURRENCY}, not {text!r}")
            concurrency = c
        else:
            return Invalid(usage)
    return Compare(tuple(algorithms) or tuple(ALGORITHMS), count, work, concurrency)


def _screen(head: str, args: list[str]) -> Command:
    if args:
        return Invalid(f"{head} takes no arguments")
    return ClearPanels() if head == "clear" else TogglePause()


def _add(head: str, args: list[str]) -> Command | None:
    # `add` alone adds a server; `add 3 4` is still a sum (the protocol's alias).
    if not args or (len(args) == 1 and args[0].lower() == "server"):
        return AddServer()
    return None


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Spec:
    """One row of the command table."""

    words: tuple[str, ...]
    usage: str
    meaning: str
    parse: Parser | None = None
    """None for the rows that only document requests (parsed by the protocol)."""
    examples: tuple[str, ...] = ()
    """What completion offers for this row, in order."""


SPECS: tuple[Spec, ...] = (
    Spec((), "somma 3 4, 3 * 4",
         "a request (somma sottrazione moltiplicazione divisione, or + - * /)",
         examples=OPERATIONS),
    Spec((), "somma", "no operands: the server draws two in 1..50"),
    Spec((), '{"op": "somma", "a": 3, "b": 4}', "a JSON request"),
    Spec(("random",), "random N, … work A-B",
         "N random requests pipelined (10k, 1m); work A-B or exp:M ms each; a summary",
         _random, ("random 1000", "random 100000", "random 1000000", "random 1000 work 0-20")),
    Spec(("cancel",), "cancel", "stop the running batch", _no_args(CancelBatch()), ("cancel",)),
    Spec(("kill", "stop"), "kill N, stop N",
         "SIGKILL server N (a crash) / stop it gently (drain, then SIGTERM)",
         _server, ("kill ", "stop ")),
    Spec(("restart", "drain"), "restart N, drain N",
         "start server N again / toggle draining (takes nothing new)",
         _server, ("restart ", "drain ")),
    Spec(("freeze", "thaw"), "freeze N, thaw N", "SIGSTOP / SIGCONT server N (a hung process)",
         _server, ("freeze ", "thaw ")),
    Spec(("add",), "add", "spawn one more server", _add, ("add",)),  # type: ignore[arg-type]
    Spec(("algo",), "algo NAME", f"the balancing algorithm: {', '.join(ALGORITHMS)}, or next",
         _algo, tuple(f"algo {name}" for name in ALGORITHMS)),
    Spec(("weight",), "weight N W", f"server N's weight, 0 to {MAX_WEIGHT} (0: takes nothing)",
         _weight, ("weight ",)),
    Spec(("workers",), "workers N K", "server N works on K requests at once (or unlimited)",
         _setting, ("workers ",)),
    Spec(("speed", "latency"), "speed N F, latency N MS",
         "server N works at F × speed / adds MS ms to every answer", _setting,
         ("speed ", "latency ")),
    Spec(("flaky", "resets"), "flaky N P%, resets N P%",
         "P% of server N's answers are faults / P% of requests reset its connection",
         _setting, ("flaky ", "resets ")),
    Spec(("blackhole", "heal"), "blackhole N, heal N",
         "server N stops answering anything (a partition) / clear all its faults",
         _fault, ("blackhole ", "heal ")),
    Spec(("show",), "show servers, show stats", "the servers / the counters (as JSON on ctl)",
         _show, ("show servers", "show stats")),
    Spec(("compare",), "compare ALGOS N work A-B",
         "one seeded batch under each algorithm (default all), side by side", _compare,
         ("compare 10000 work 0-20",)),
    Spec(("ping",), "ping", "ask the balancer how many servers are UP", examples=("ping",)),
    Spec(("pause", "resume", "clear"), "pause, clear", "pause the scrolling panels / clear them",
         _screen, ("pause", "clear")),
    Spec(("help", "?"), "help", "this list", _no_args(ShowHelp()), ("help",)),
    Spec(("exit", "quit", "q"), "exit, quit", "stop every server and leave",
         _no_args(Quit()), ("exit", "quit")),
)

_PARSERS: dict[str, Parser] = {
    word: spec.parse for spec in SPECS if spec.parse is not None for word in spec.words
}


PARTITION_HINT = (
    "partition works on hosts of the netns lab (make netlab; by hand: sudo .venv/bin/python "
    "-m tests.netlab.demo); for a server here, blackhole N makes it silent the same way and "
    "heal N ends it")


def parse_command(text: str) -> Command | None:
    """One line of input as a command, or Invalid saying why not; None for an empty line."""
    line = text.strip()
    if not line:
        return None
    words = line.split()
    head = words[0].lower()
    if head in ("partition", "unpartition"):
        return Invalid(PARTITION_HINT)
    parse = _PARSERS.get(head)
    if parse is not None:
        command = parse(head, words[1:])
        if command is not None:
            return command
    return _request(line)


def _request(line: str) -> Command:
    parsed = parse_line(line.encode("utf-8", "surrogatepass"))
    if isinstance(parsed, ProtocolError):
        message = parsed.message
        if message.startswith("unknown operation"):
            return Invalid(f"not understood: {line[:40]!r} ({HINT})")
        return Invalid(f"{message} ({HINT})")
    return SendRequest(line)


# ---------------------------------------------------------------- help and completion

VOCABULARY: tuple[str, ...] = tuple(word for spec in SPECS for word in spec.examples)

HELP_COMMANDS: tuple[tuple[str, str], ...] = tuple((s.usage, s.meaning) for s in SPECS)
"""(command, meaning) pairs for the help screen; N is a row number or a name, or the
selected server when left out."""


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


def console_only(spec: Spec) -> bool:
    """True for the rows about the console's own screen (pause, clear, exit)."""
    return bool(spec.words) and isinstance(parse_command(spec.words[0]), CONSOLE_ONLY)


def help_text(console: bool = False) -> str:
    """The command table as plain text (`help` on the runtime socket, `ctl --help`);
    the console's own commands only with `console`."""
    rows = [(s.usage, s.meaning) for s in SPECS if console or not console_only(s)]
    width = max(len(usage) for usage, _ in rows)
    return "\n".join(f"{usage:<{width}}  {meaning}" for usage, meaning in rows)

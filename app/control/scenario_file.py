"""Scenario files: TOML with timed steps in the one command language, and expect lines.

    name = "flaky-retries"
    description = "one server answers 30% of requests with faults"
    seed = 7
    [settings]                 # the headless run's balancer (see SETTINGS)
    eject_time = "1s"
    [[step]]
    at = "0s"
    do = "random 20000 work 0-5"
    phase = "calm"             # optional: names the phase this step begins
    [[step]]
    at = "2s"
    do = "flaky 2 30%"
    [[expect]]
    check = "lost == 0 and server2.ejections >= 1"
    within = "10s"             # optional: keep checking up to this long after the run

`load_scenario` reads and checks a file completely before anything runs: every
`do` line is parsed with `app.control.grammar`, every check with
`app.control.expect`, every name a check reads must exist. A bad file raises
`ScenarioError` whose message names the file and the step or expect line; it
never gives a traceback. Shipped scenarios live in `app/control/scenarios/`
and are found by name (`find_scenario("crash-storm")`).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from app.control import grammar as g
from app.control.expect import Check, parse_check
from balancer.algorithms import ALGORITHMS, MAX_WEIGHT

MAX_AT = 3600.0
MAX_STEPS = 1000
MAX_SERVERS = 32
DEFAULT_TIMEOUT = 120.0
SHIPPED = "scenarios"
"""The package folder (inside app/control) holding the shipped scenarios."""

TOTAL_NAMES = ("sent", "answered", "lost", "cancelled", "duplicates", "wrong", "errors",
               "server_faults", "retried", "retries", "redispatched", "late", "p50_ms",
               "p95_ms", "p99_ms", "max_ms", "rate", "elapsed_s", "steps_failed")
SERVER_NAMES = ("state", "served", "errors", "faults", "retries", "ejections", "redispatched",
                "down", "ejected", "recovered", "detect_s", "share")
PHASE_NAMES = ("answered", "errors", "server_faults", "retried", "rate", "p50_ms",
               "p95_ms", "p99_ms", "max_ms", "duration_s")


class ScenarioError(Exception):
    """A scenario file that cannot run; the message says which file and where."""


@dataclass(frozen=True)
class Step:
    number: int
    """1-based, its place in the file."""
    at: float
    """Seconds after the start."""
    do: str
    command: g.Command
    phase: str | None = None
    concurrency: int = g.DEFAULT_CONCURRENCY
    """Requests kept in flight, for a load step (`random …`)."""

    @property
    def is_load(self) -> bool:
        return isinstance(self.command, g.RunBatch)


@dataclass(frozen=True)
class Expect:
    number: int
    check: Check
    within: float = 0.0
    """Seconds after the run during which the check may still come true."""


@dataclass(frozen=True)
class Phase:
    """The time between one step time and the next: `label` is its `phase` or its number."""

    number: int
    label: str
    start: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    steps: tuple[Step, ...]
    expects: tuple[Expect, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    """RuntimeConfig fields for the headless run (already checked)."""
    concurrency: int = g.DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    """How long the run waits, after its last step, for its loads to finish."""
    duration: float = 0.0
    """The run lasts at least this long (s), loads or not."""
    source: str = ""
    scale: float = 1.0

    @property
    def length(self) -> float:
        return max([self.duration, *(s.at for s in self.steps)], default=0.0)

    def phases(self) -> list[Phase]:
        """One phase per distinct step time; a phase 0 (`start`) before a late first step."""
        times = sorted({s.at for s in self.steps})
        out: list[Phase] = []
        if not times or times[0] > 0:
            out.append(Phase(0, "start", 0.0))
        for number, at in enumerate(times, start=1):
            label = next((s.phase for s in self.steps if s.at == at and s.phase), str(number))
            out.append(Phase(number, label, at))
        return out

    def with_seed(self, seed: int) -> Scenario:
        return dataclasses.replace(self, seed=seed)

    def scaled(self, factor: float) -> Scenario:
        """Step times, the duration and load sizes times `factor` (a quick version)."""
        if factor == 1.0:
            return self
        if not 0.01 <= factor <= 10:
            raise ScenarioError(f"{self.source}: --scale is from 0.01 to 10, not {factor:g}")
        steps = []
        for s in self.steps:
            command, do = s.command, s.do
            if isinstance(command, g.RunBatch):
                command = g.RunBatch(max(1, round(command.count * factor)), command.work)
                do = f"random {command.count}" + (
                    f" work {command.work.text()}" if command.work else "")
            steps.append(dataclasses.replace(s, at=round(s.at * factor, 3), do=do,
                                             command=command))
        return dataclasses.replace(self, steps=tuple(steps), duration=self.duration * factor,
                                   scale=self.scale * factor)


# ---------------------------------------------------------------- values


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m)?\s*", re.IGNORECASE)


def parse_duration(value: object) -> float | None:
    """`"2s"`, `"500ms"`, `"1.5m"`, `3`, `0.5` as seconds; None when it is none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        unit = (match.group(2) or "s").lower()
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    else:
        return None
    return seconds if 0 <= seconds <= MAX_AT else None


def _fraction(value: object) -> float | None:
    """0.2 or "20%" as 0.2."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = g.parse_number(value.strip()[:-1])
        return None if number is None else number / 100
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class _Bad(ValueError):
    """A setting's value is not what it should be; the message says what it should be."""


def _int(low: int, high: int) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _Bad(f"a whole number from {low} to {high}")
        return value

    return convert


def _seconds(value: object) -> object:
    seconds = parse_duration(value)
    if not seconds:
        raise _Bad("a duration above 0 such as \"2s\" or \"500ms\"")
    return seconds


def _share(value: object) -> object:
    share = _fraction(value)
    if share is None or not 0 <= share <= 1:
        raise _Bad("a share such as 0.2 or \"20%\"")
    return share


def _algorithm(value: object) -> object:
    if not isinstance(value, str) or value not in ALGORITHMS:
        raise _Bad(f"one of {', '.join(ALGORITHMS)}")
    return value


def _weights(value: object) -> object:
    if not isinstance(value, dict) or not all(
            isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= MAX_WEIGHT
            for w in value.values()):
        raise _Bad(f"a table of server = weight (0 to {MAX_WEIGHT})")
    return dict(value)


SETTINGS: dict[str, Callable[[object], object]] = {
    "servers": _int(1, MAX_SERVERS), "algorithm": _algorithm, "weights": _weights,
    "request_timeout": _seconds, "queue_timeout": _seconds, "check_interval": _seconds,
    "check_timeout": _seconds, "rise": _int(1, 100), "fall": _int(1, 100),
    "retries": _int(0, 10), "retry_budget": _share, "eject_after": _int(0, 10_000),
    "eject_time": _seconds, "max_ejected": _share,
}
"""The `[settings]` a scenario may give its headless run: RuntimeConfig fields."""
RUN_SETTINGS = ("concurrency", "timeout", "duration")
"""`[settings]` about the run itself, honoured by headless and live runs alike."""


# ---------------------------------------------------------------- loading


def _where(source: str, what: str) -> Callable[[str], ScenarioError]:
    return lambda message: ScenarioError(f"{source}: {what}: {message}")


def _step(source: str, number: int, raw: object, default_concurrency: int) -> Step:
    err = _where(source, f"step {number}")
    if not isinstance(raw, dict):
        raise err("a step is a table with at = \"…\" and do = \"…\"")
    unknown = sorted(set(raw) - {"at", "do", "phase", "concurrency"})
    if unknown:
        raise err(f"unknown key {unknown[0]!r} (a step has at, do, phase, concurrency)")
    if "at" not in raw or "do" not in raw:
        raise err(f"needs both at and do (has {', '.join(sorted(raw)) or 'nothing'})")
    at = parse_duration(raw["at"])
    if at is None:
        raise err(f"at is a time from 0 to {MAX_AT:g}s such as \"2s\" or \"500ms\", "
                  f"not {raw['at']!r}")
    do = raw["do"]
    if not isinstance(do, str) or not do.strip():
        raise err("do is a command, such as \"flaky 2 30%\"")
    command = g.parse_command(do)
    if isinstance(command, g.Invalid):
        raise err(f"{do.strip()!r}: {command.message}")
    if isinstance(command, (*g.CONSOLE_ONLY, g.ShowHelp)):
        raise err(f"{do.strip()!r} is about the console's screen; a scenario cannot run it")
    if isinstance(command, g.ServerCommand | g.ServerSetting) and command.target is None:
        raise err(f"{do.strip()!r} needs a server (a number or a name)")
    phase = raw.get("phase")
    if phase is not None and (not isinstance(phase, str)
                              or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", phase)):
        raise err(f"phase is a word (letters, digits, _), not {phase!r}")
    concurrency = raw.get("concurrency", default_concurrency)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not (
            1 <= concurrency <= g.MAX_CONCURRENCY):
        raise err(f"concurrency is from 1 to {g.MAX_CONCURRENCY}, not {concurrency!r}")
    if "concurrency" in raw and not isinstance(command, g.RunBatch):
        raise err("concurrency is for load steps (random N …) only")
    return Step(number, at, do.strip(), command, phase, concurrency)


def _expect(source: str, number: int, raw: object) -> Expect:
    err = _where(source, f"expect {number}")
    if not isinstance(raw, dict):
        raise err("an expect is a table with check = \"…\"")
    unknown = sorted(set(raw) - {"check", "within"})
    if unknown:
        raise err(f"unknown key {unknown[0]!r} (an expect has check and within)")
    if "check" not in raw:
        raise err("needs check = \"…\", such as check = \"lost == 0\"")
    check = parse_check(raw["check"])
    if isinstance(check, str):
        raise err(f"{str(raw['check'])[:60]!r}: {check}")
    within = parse_duration(raw.get("within", 0))
    if within is None:
        raise err(f"within is a duration such as \"10s\", not {raw.get('within')!r}")
    return Expect(number, check, within)


def _check_names(source: str, scenario: Scenario, servers: int | None) -> None:
    labels = {p.label for p in scenario.phases()} | {str(p.number) for p in scenario.phases()}
    for expect in scenario.expects:
        for name in sorted(expect.check.names()):
            problem = name_problem(name, labels, servers)
            if problem:
                raise ScenarioError(f"{source}: expect {expect.number}: {problem}")


def name_problem(name: str, labels: set[str], servers: int | None) -> str | None:
    """Why `name` cannot be read after a run, or None when it can."""
    parts = name.split(".")
    if len(parts) == 1:
        if name in TOTAL_NAMES:
            return None
        return f"unknown name {name!r} (known: {', '.join(TOTAL_NAMES)}, serverN.…, phase.…)"
    if parts[0] == "phase":
        if len(parts) != 3 or parts[1] not in labels or parts[2] not in PHASE_NAMES:
            return (f"{name!r}: phases are read as phase.LABEL.VALUE with LABEL one of "
                    f"{', '.join(sorted(labels))} and VALUE one of {', '.join(PHASE_NAMES)}")
        return None
    if len(parts) == 2 and parts[1] in SERVER_NAMES:
        match = re.fullmatch(r"server(\d+)", parts[0])
        if match and servers is not None and not 1 <= int(match.group(1)) <= servers:
            return f"{name!r}: the scenario runs {servers} servers"
        return None
    return (f"unknown name {name!r} (a server's values: {', '.join(SERVER_NAMES)}, "
            f"e.g. server2.ejections)")


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """A checked Scenario from TOML text; ScenarioError naming `source` otherwise."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    known = {"name", "description", "seed", "settings", "step", "expect"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScenarioError(f"{source}: unknown key {unknown[0]!r} "
                            f"(a scenario has {', '.join(sorted(known))})")
    name = raw.get("name", Path(source).stem)
    description = raw.get("description", "")
    seed = raw.get("seed", 1)
    if not isinstance(name, str) or not isinstance(description, str):
        raise ScenarioError(f"{source}: name and description are strings")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ScenarioError(f"{source}: seed is a whole number from 0, not {seed!r}")
    settings_raw = raw.get("settings", {})
    if not isinstance(settings_raw, dict):
        raise ScenarioError(f"{source}: [settings] is a table")
    settings: dict[str, Any] = {}
    run: dict[str, Any] = {"concurrency": g.DEFAULT_CONCURRENCY, "timeout": DEFAULT_TIMEOUT,
                           "duration": 0.0}
    for key, value in settings_raw.items():
        if key == "concurrency":
            check = _int(1, g.MAX_CONCURRENCY)
        elif key in ("timeout", "duration"):
            check = _seconds
        elif key in SETTINGS:
            check = SETTINGS[key]
        else:
            raise ScenarioError(f"{source}: settings: unknown setting {key!r} (known: "
                                f"{', '.join([*SETTINGS, *RUN_SETTINGS])})")
        try:
            checked = check(value)
        except _Bad as exc:
            raise ScenarioError(f"{source}: settings: {key} is {exc}, not {value!r}") from None
        (run if key in RUN_SETTINGS else settings)[key] = checked
    steps_raw = raw.get("step", [])
    expects_raw = raw.get("expect", [])
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ScenarioError(f"{source}: no steps: add [[step]] tables with at and do")
    if not isinstance(expects_raw, list):
        raise ScenarioError(f"{source}: expect is written [[expect]], one table per check")
    if len(steps_raw) > MAX_STEPS:
        raise ScenarioError(f"{source}: more than {MAX_STEPS} steps")
    steps = [_step(source, i, s, run["concurrency"]) for i, s in enumerate(steps_raw, start=1)]
    steps.sort(key=lambda s: s.at)  # stable: steps at the same time keep the file's order
    expects = tuple(_expect(source, i, e) for i, e in enumerate(expects_raw, start=1))
    scenario = Scenario(name, description, seed, tuple(steps), expects, settings,
                        run["concurrency"], run["timeout"], run["duration"], source)
    servers = settings.get("servers", 3)
    for step in steps:
        target = getattr(step.command, "target", None)
        if isinstance(target, str) and target.isdigit() and int(target) > servers:
            raise ScenarioError(f"{source}: step {step.number}: {step.do!r}: there is no "
                                f"server {target} (the scenario runs {servers})")
    _check_names(source, scenario, servers)
    return scenario


def shipped_names() -> list[str]:
    """The scenarios that come with lbconsole, by name."""
    folder = resources.files("app.control").joinpath(SHIPPED)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_scenario(spec: str) -> Scenario:
    """A scenario from a file path, or a shipped one by name."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists() or "/" in spec:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ScenarioError(f"{spec}: cannot read it: {reason}") from None
        return parse_scenario(text, spec)
    names = shipped_names()
    if spec not in names:
        raise ScenarioError(f"no scenario file or shipped scenario named {spec!r} "
                            f"(shipped: {', '.join(names)})")
    text = resources.files("app.control").joinpath(SHIPPED, f"{spec}.toml").read_text("utf-8")
    return parse_scenario(text, f"{spec} (shipped)")

"""`lbconsole scenario FILE|NAME`: a scenario run headless, on a balancer of its own.

It starts a Runtime on port 0 with the scenario's `[settings]` (its log in a
temporary folder unless `--log-file`), waits for the servers, runs the steps
(each shown on stderr as it fires), prints the report (text, or one JSON
object with `--json`) and stops everything it started. Exit status: 0 when
every step ran and every expect line passed, 1 otherwise, 2 for a file that
cannot run (the message names the file and the step or expect line).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from app.control.scenario import ScenarioRun
from app.control.scenario_file import Scenario, ScenarioError, find_scenario, shipped_names
from app.control.scenario_report import ScenarioReport

if TYPE_CHECKING:
    from app.runtime import RuntimeConfig

UP_TIMEOUT = 30.0


def add_scenario_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", metavar="FILE|NAME",
                        help="a scenario file (TOML) or a shipped scenario's name: "
                             + ", ".join(shipped_names()))
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="the seed for its loads (default: the file's); the same seed "
                             "sends the same requests")
    parser.add_argument("--scale", type=float, default=1.0, metavar="F",
                        help="step times and load sizes times F (0.25: a quick version)")
    parser.add_argument("--log-file", default=None, metavar="PATH",
                        help="keep the balancer's log here, one line per request "
                             "(default: events only, in a temporary folder)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="do not show the steps on stderr as they fire")


def scenario_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Scenario | None:
    """`--scenario` (serve, the console), read and checked; a bad one is argparse's usage
    error, so nothing starts."""
    spec = vars(args).get("scenario")
    if not spec:
        return None
    try:
        return find_scenario(spec)
    except ScenarioError as exc:
        parser.error(f"--scenario: {exc}")


def load(spec: str, seed: int | None = None, scale: float = 1.0) -> Scenario:
    """The scenario to run, with its seed and scale; ScenarioError otherwise."""
    scenario = find_scenario(spec)
    if seed is not None:
        if not 0 <= seed < 2**63:
            raise ScenarioError(f"--seed is a whole number from 0, not {seed}")
        scenario = scenario.with_seed(seed)
    return scenario.scaled(scale)


def runtime_config(scenario: Scenario, log_file: str, log_requests: bool) -> RuntimeConfig:
    """The headless run's RuntimeConfig: port 0, no admin socket, its settings."""
    from app.runtime import RuntimeConfig

    return RuntimeConfig(port=0, log_file=log_file, log_requests=log_requests,
                         admin_socket=None, **scenario.settings)


async def run_headless(scenario: Scenario, log_file: str | None = None,
                       on_event: Callable[[str], None] | None = None) -> ScenarioReport:
    """Start a balancer and servers for `scenario`, run it, stop them; the report.

    Raises RuntimeError when the servers do not come up."""
    from app.runtime import Runtime

    with contextlib.ExitStack() as stack:
        if log_file is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="lbscenario-"))
            path, requests = str(Path(folder) / "loadbalancer.log"), False
        else:
            path, requests = log_file, True
        runtime = Runtime(runtime_config(scenario, path, requests))
        try:
            await runtime.start()
            if not await runtime.wait_until_up(timeout=UP_TIMEOUT):
                states = ", ".join(f"{r.name} {r.state}" for r in runtime.rows())
                raise RuntimeError(f"the servers did not come up in {UP_TIMEOUT:g}s ({states})")
            return await ScenarioRun(scenario, runtime, on_event=on_event).run()
        finally:
            await runtime.stop(grace=1.0)
    raise AssertionError("unreachable")  # pragma: no cover


async def _main(args: argparse.Namespace) -> int:
    try:
        scenario = load(args.scenario, args.seed, args.scale)
    except ScenarioError as exc:
        print(f"lbconsole scenario: {exc}", file=sys.stderr)
        return 2

    def show(text: str) -> None:
        if not args.quiet:
            print(f"[{scenario.name}] {text}", file=sys.stderr, flush=True)

    try:
        report = await run_headless(scenario, args.log_file, show)
    except (RuntimeError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"lbconsole scenario: {text}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.as_dict(), option=orjson.OPT_NON_STR_KEYS)
                                + b"\n")
        sys.stdout.flush()
    else:
        print(report.text())
    if not report.passed:
        for line in report.failures():
            print(f"lbconsole scenario: {line}", file=sys.stderr)
    return 0 if report.passed else 1


def scenario_main(args: argparse.Namespace) -> int:
    from balancer import eventloop

    return eventloop.run(_main(args))

"""`lbconsole serve`: the balancer, its servers and the log, without a screen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

from app.runtime import Runtime, RuntimeConfig
from balancer import eventloop

if TYPE_CHECKING:
    from app.control.scenario_file import Scenario


def say(text: str) -> None:
    """A line on stdout. If nobody reads stdout any more (`serve | head -1`, a closed
    pipe), the balancer goes on without it: everything is in the log file too."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        # Point stdout at /dev/null so neither this nor the exit flush fails again.
        with contextlib.suppress(OSError, ValueError), open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())


async def run_scenario(runtime: Runtime, scenario: Scenario) -> None:
    """`serve --scenario`: once the servers are UP, run it live; each step and the report
    on stdout and in the log."""
    from app.control.scenario import ScenarioRun

    if not await runtime.wait_until_up(timeout=30.0):
        say(f"scenario {scenario.name}: not started, the servers are not all UP")
        return
    if scenario.settings:
        say(f"scenario {scenario.name}: its [settings] ({', '.join(scenario.settings)}) are "
            "for headless runs; serve keeps its own options")
    report = await ScenarioRun(scenario, runtime,
                               on_event=lambda text: say(f"scenario {scenario.name}: {text}")
                               ).run()
    for line in report.text().splitlines():
        say(f"scenario report: {line}")
        runtime.log.event(f"scenario report: {line}")


async def serve(config: RuntimeConfig, stats_interval: float = 0.0,
                scenario: Scenario | None = None) -> int:
    eventloop.raise_fd_limit()
    runtime = Runtime(config)
    scenario_task: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            port = await runtime.balancer.start()
        except OSError as exc:
            print(f"lbconsole serve: cannot listen on {config.host}:{config.port}: "
                  f"{exc.strerror or exc} (--port 0 picks a free port)", file=sys.stderr,
                  flush=True)
            runtime.log.close()
            return 1
        try:
            admin = await runtime.start_control()
        except OSError as exc:
            print(f"lbconsole serve: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return 1
        # The first stdout line is the contract with scripts: the real port.
        say(f"listening on {config.host}:{port}")
        if admin is not None:
            say(f"admin socket {admin}")
        runtime.balancer.listeners.append(
            lambda b, old, new, why: say(f"{b.name} {old} -> {new}: {why}"))
        await runtime.start_servers()
        if scenario is not None:
            scenario_task = asyncio.ensure_future(run_scenario(runtime, scenario))
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), stats_interval or None)
            except TimeoutError:
                s = runtime.stats()
                say(f"{s.servers_up}/{len(s.backends)} UP, {s.answered} answered, "
                    f"{s.errors} errors, {s.rate:,.0f} req/s, {s.clients} clients")
        say("shutting down: answering requests in flight, stopping servers")
    finally:
        if scenario_task is not None and not scenario_task.done():
            scenario_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scenario_task
        await runtime.stop()
    return 0


def serve_main(config: RuntimeConfig, stats_interval: float = 0.0,
               scenario: Scenario | None = None) -> int:
    return eventloop.run(serve(config, stats_interval, scenario))

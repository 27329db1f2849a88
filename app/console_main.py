"""Running the console for real: a LiveSource, signals, and the summary printed afterwards.

Kept apart from `app.console` (the App itself), which tests and the benchmark
drive with sources of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from app.console import ConsoleApp
from app.history import history_path
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.summary import SessionSummary, summary_table
from balancer import eventloop

if TYPE_CHECKING:
    from app.control.scenario_file import Scenario


def _listening(address: str) -> None:
    # Textual captures sys.stdout while the app runs; scripts read the real one.
    out = sys.__stdout__
    if out is not None:
        out.write(f"listening on {address}\n")
        out.flush()


async def _run(app: ConsoleApp, source: LiveSource, headless: bool) -> SessionSummary | None:
    loop = asyncio.get_running_loop()
    quit_signals = (signal.SIGTERM, signal.SIGINT) if headless else (signal.SIGTERM,)
    for sig in quit_signals:
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(app.action_quit()))
    try:
        return await app.run_async(headless=headless)
    finally:
        for sig in quit_signals:
            loop.remove_signal_handler(sig)
        await source.stop()


def console_main(config: RuntimeConfig, headless: bool = False, engine: str = "builtin",
                 scenario: Scenario | None = None) -> int:
    if engine == "haproxy":  # a real HAProxy in the data path (app/engines)
        from app.engines.source import HaproxySource

        source = HaproxySource(config, on_listening=_listening if headless else None)
    else:
        source = LiveSource(config, on_listening=_listening if headless else None,
                            scenario=scenario)
    app = ConsoleApp(source, freeze_gc=True, history=history_path())
    try:
        summary = eventloop.run(_run(app, source, headless))
    finally:
        source.kill_now()
    if app.failure:
        print(app.failure, file=sys.stderr)
    # In a browser (`lbconsole web`) stdout is the page's terminal stream, gone by now.
    if summary is not None and not os.environ.get("TEXTUAL_DRIVER", "").startswith("app.web"):
        with contextlib.suppress(OSError):
            Console().print(summary_table(summary))
    return app.return_code or 0

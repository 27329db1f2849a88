"""What the operator's commands do: requests, batches and server actions, as outcomes to show.

The App decides *what* was asked (keys, the input box); this module does it
against the console's source and turns every result or failure into one line
of text, so nothing the operator does can raise into the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from app.commands import ServerCommand
from app.formatting import ms
from app.source import ConsoleSource
from balancer.client import BatchProgress, ClientError
from balancer.protocol import describe


@dataclass(frozen=True)
class Outcome:
    text: str
    error: bool = False


class Operator:
    """Runs one batch at a time and any number of single requests and server actions."""

    def __init__(self, source: ConsoleSource) -> None:
        self.source = source
        self.progress: BatchProgress | None = None
        self.task: asyncio.Task[BatchProgress] | None = None
        self.reported = True
        """Whether the current batch's summary has been shown."""

    # ------------------------------------------------------------ requests

    async def request(self, line: str) -> Outcome:
        started = time.monotonic()
        try:
            answer = await self.source.request(line)
        except (ClientError, OSError) as exc:
            return Outcome(f"{line}: {exc}", error=True)
        except TimeoutError:
            return Outcome(f"{line}: no answer within 30 s", error=True)
        elapsed = (time.monotonic() - started) * 1000
        return Outcome(f"{describe(answer)}  {ms(elapsed)} ms", error="error" in answer)

    # ------------------------------------------------------------ batches

    @property
    def batch_running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start_batch(self, count: int) -> Outcome:
        if self.batch_running and self.progress is not None:
            return Outcome(f"a batch is already running ({self.progress.answered:,}/"
                           f"{self.progress.total:,}); wait, or type cancel", error=True)
        progress = BatchProgress(count)
        self.progress = progress
        self.reported = False
        self.task = asyncio.ensure_future(self.source.batch(count, progress))
        return Outcome(f"random {count:,}: sending…")

    def cancel_batch(self) -> Outcome:
        if not self.batch_running or self.task is None:
            return Outcome("no batch is running", error=True)
        self.task.cancel()
        return Outcome("cancelling the batch…")

    def finished_batch(self) -> Outcome | None:
        """The summary of a batch that ended since the last call, once."""
        progress, task = self.progress, self.task
        if self.reported or progress is None or task is None or not task.done():
            return None
        self.reported = True
        if task.cancelled():
            if progress.finished is None:
                progress.finished = time.monotonic()
            return Outcome(f"random {progress.total:,} cancelled: {progress.summary()}",
                           error=True)
        exc = task.exception()
        if exc is not None:
            return Outcome(f"random {progress.total:,} failed: {exc}", error=True)
        bad = progress.errors > 0 or progress.failure is not None or progress.bad > 0
        return Outcome(f"random {progress.total:,}: {progress.summary()}", error=bad)

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    # ------------------------------------------------------------ servers

    async def server(self, command: ServerCommand, selected: str | None) -> Outcome:
        target = command.target if command.target is not None else selected
        if target is None:
            return Outcome(f"{command.action}: select a server first (1-9)", error=True)
        try:
            name = self.source.resolve(target)
            text = await self.source.act(command.action, name)
            return Outcome(text, error="failed" in text)
        except (KeyError, ProcessLookupError, ValueError) as exc:
            return Outcome(f"{command.action} {target}: {exc.args[0] if exc.args else exc}",
                           error=True)
        except OSError as exc:
            return Outcome(f"{command.action} {target}: {exc.strerror or exc}", error=True)

    async def add_server(self) -> Outcome:
        try:
            text = await self.source.add_server()
            return Outcome(text, error="failed" in text)
        except (KeyError, ValueError, OSError) as exc:
            return Outcome(f"add: {exc}", error=True)

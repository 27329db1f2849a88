"""What the supervisor knows of each server process, and the events it reports.

Kept apart from the supervisor's actions so the records and events others
display (app.runtime, the console) read in one sitting.
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from backends.settings import ServerSettings


class ServerNotRunning(KeyError):
    """The named server exists but has no live process that could take an order."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "server not running"


class ProcessState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FROZEN = "frozen"
    EXITED = "exited"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class ManagedServer:
    """One server process and what we know of it."""

    name: str
    port_wanted: int = 0
    delay: float = 0.0
    process: asyncio.subprocess.Process | None = None
    pid: int | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    http_port: int | None = None
    """The server's HTTP/1.1 port, when the supervisor was made with `http=True`."""
    state: ProcessState = ProcessState.STARTING
    returncode: int | None = None
    reason: str = ""
    restarts: int = 0
    stopping: bool = False
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    watcher: asyncio.Task[None] | None = None
    settings: ServerSettings = field(default_factory=ServerSettings)
    """What the server was told to be; re-applied when it restarts."""
    seed: int | None = None
    orders: int = 0
    replies: dict[int, asyncio.Future[dict]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.state in (ProcessState.STARTING, ProcessState.RUNNING, ProcessState.FROZEN)


@dataclass(frozen=True)
class ServerReady:
    name: str
    pid: int
    host: str
    port: int


@dataclass(frozen=True)
class ServerExited:
    name: str
    pid: int
    returncode: int | None
    reason: str
    expected: bool
    """True when we asked for it (stop, restart, shutdown)."""


@dataclass(frozen=True)
class ServerFailed:
    name: str
    reason: str


SupervisorEvent = ServerReady | ServerExited | ServerFailed


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"

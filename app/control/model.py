"""The operator's commands as values: one frozen dataclass per command.

`app.control.grammar` parses a line into one of these; `app.control.dispatch`
carries them out. Kept apart from the parser so a reader finds every command
and its fields on one page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_BATCH = 100_000_000
MAX_WORK_MS = 60_000.0
MAX_WORKERS = 100_000
MAX_SPEED = 1_000.0
MAX_CONCURRENCY = 4096
DEFAULT_CONCURRENCY = 64
HINT = "type help for the commands"

ServerAction = Literal["kill", "stop", "restart", "drain", "freeze", "thaw"]
SERVER_ACTIONS: tuple[ServerAction, ...] = ("kill", "stop", "restart", "drain", "freeze", "thaw")
Setting = Literal["workers", "speed", "latency", "flaky", "resets", "blackhole", "heal"]


@dataclass(frozen=True)
class Work:
    """The simulated work a batch's requests carry: uniform `low`-`high` ms, or
    exponential with mean `low` ms (capped at MAX_WORK_MS)."""

    kind: Literal["uniform", "exp"]
    low: float
    high: float = 0.0

    def text(self) -> str:
        return f"exp:{self.low:g}" if self.kind == "exp" else f"{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class SendRequest:
    """An arithmetic request (or `ping`), sent as typed through a client."""

    line: str


@dataclass(frozen=True)
class RunBatch:
    count: int
    work: Work | None = None


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
class SetAlgorithm:
    name: str
    """One of balancer.algorithms.ALGORITHMS, or `next` for the one after the current."""


@dataclass(frozen=True)
class SetWeight:
    target: str
    weight: int


@dataclass(frozen=True)
class ServerSetting:
    """A setting or fault of one spawned server, applied by its supervisor.

    `value`: workers an int or None (unlimited); speed a factor; latency ms;
    flaky and resets a percentage 0-100; blackhole and heal True.
    """

    setting: Setting
    target: str | None
    value: float | int | bool | None


@dataclass(frozen=True)
class Show:
    what: Literal["servers", "stats"]


@dataclass(frozen=True)
class Compare:
    algorithms: tuple[str, ...]
    count: int
    work: Work | None = None
    concurrency: int = DEFAULT_CONCURRENCY


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


Command = (SendRequest | RunBatch | CancelBatch | ServerCommand | AddServer | SetAlgorithm
           | SetWeight | ServerSetting | Show | Compare | Quit | ShowHelp | TogglePause
           | ClearPanels | Invalid)

CONSOLE_ONLY: tuple[type, ...] = (Quit, TogglePause, ClearPanels)
"""Commands about the screen; elsewhere (the socket, scenarios) they are refused."""

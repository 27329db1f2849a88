"""The help screen (`?`): keys and commands."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from app.commands import HELP_COMMANDS

KEYS: tuple[tuple[str, str], ...] = (
    ("1 … 9, ↑ ↓, click", "select a server"),
    ("k", "kill the selected server (SIGKILL: a crash)"),
    ("s", "stop it gently (drain, then SIGTERM)"),
    ("r", "restart it"),
    ("d", "drain it / put it back (takes nothing new, finishes what it has)"),
    ("a", "add a server"),
    ("c", "next balancing algorithm (algo next; the status line shows it)"),
    ("p", "pause / resume the scrolling panels"),
    ("l", "log panel: events only (connections, states, actions) / every line"),
    ("g", "latency view: p50 and p99 per server over the last minute / the panels"),
    ("ctrl+s", "save an SVG screenshot of the screen into the working folder"),
    ("/ or :", "type in the input box;  Esc leaves it"),
    ("↑ ↓  →", "in the input: history (kept between runs); accept the suggestion"),
    ("ctrl+r", "search the history for what is typed; again: older matches"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit: stop every server, print a summary"),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold #ffd75f", no_wrap=True)
    table.add_column()
    table.add_row(Text("Keys", style="bold underline"), "")
    for key, meaning in KEYS:
        table.add_row(key, meaning)
    table.add_row("", "")
    table.add_row(Text("Commands", style="bold underline"), "N: a row number or a name; "
                  "left out: the selected server")
    for command, meaning in HELP_COMMANDS:
        table.add_row(command, meaning)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and commands; any of Esc, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "close"),
        Binding("question_mark", "dismiss", "close", show=False),
        Binding("q", "dismiss", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "lbconsole help"
            box.border_subtitle = "Esc to close"
            yield Static(help_table(), id="help-text")

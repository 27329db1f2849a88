"""The input box: requests and commands, with history on ↑/↓ and completion suggestions."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from app.commands import suggest

HISTORY_SIZE = 200


class CommandSuggester(Suggester):
    """Completes from the input's history (latest first), then from the known commands."""

    def __init__(self, history: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.history = history

    async def get_suggestion(self, value: str) -> str | None:
        return suggest(value, reversed(self.history))


class CommandInput(Input):
    """Enter sends the line; ↑/↓ walk the history; → accepts a suggestion; Esc leaves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "previous", show=False),
        Binding("down", "history(1)", "next", show=False),
        Binding("escape", "leave", "leave input", show=True),
    ]

    class Left(Message):
        """The operator pressed Esc: focus goes back to the servers."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        self.history: list[str] = []
        self._position = 0
        self._draft = ""
        super().__init__(
            placeholder="somma 3 4 · 3 * 4 · random 1000 · kill 2 · restart 2 · add · help",
            suggester=CommandSuggester(self.history), id=id, classes=classes,
        )

    def remember(self, line: str) -> None:
        """Add a submitted line to the history (no consecutive duplicates)."""
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_SIZE]
        self._position = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._position == len(self.history):
            self._draft = self.value
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = (self.history[self._position] if self._position < len(self.history)
                      else self._draft)
        self.cursor_position = len(self.value)

    def action_leave(self) -> None:
        self.post_message(self.Left())

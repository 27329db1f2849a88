"""The input box: requests and commands, with history (↑/↓, ctrl+r) and suggestions.

The history is an `app.history.History`: kept between runs when the console
gives it a file, in memory only otherwise (tests).
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input

from app.commands import suggest
from app.history import History


class CommandSuggester(Suggester):
    """Completes from the input's history (latest first), then from the known commands."""

    def __init__(self, history: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.history = history

    async def get_suggestion(self, value: str) -> str | None:
        return suggest(value, reversed(self.history))


class CommandInput(Input):
    """Enter sends the line; ↑/↓ walk the history; ctrl+r searches it; → accepts a
    suggestion; Esc leaves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "previous", show=False),
        Binding("down", "history(1)", "next", show=False),
        Binding("ctrl+r", "search_history", "search history", show=False),
        Binding("escape", "leave", "leave input", show=True),
    ]

    class Left(Message):
        """The operator pressed Esc: focus goes back to the servers."""

    class Searched(Message):
        """ctrl+r looked for `text` in the history; `found` is the entry, or None."""

        def __init__(self, text: str, found: str | None) -> None:
            super().__init__()
            self.text = text
            self.found = found

    def __init__(self, *, history: History | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        self.store = history if history is not None else History()
        self._position = len(self.store.entries)
        self._draft = ""
        self._search: str | None = None
        """What ctrl+r looks for, while the box shows its latest hit."""
        self._hit = ""
        super().__init__(
            placeholder="somma 3 4 · 3 * 4 · random 1000 · kill 2 · restart 2 · add · help",
            suggester=CommandSuggester(self.store.entries), id=id, classes=classes,
        )

    @property
    def history(self) -> list[str]:
        return self.store.entries

    def remember(self, line: str) -> None:
        """Add a submitted line to the history (no consecutive duplicates)."""
        self.store.add(line)
        self._position = len(self.history)
        self._draft = ""
        self._search = None

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._position == len(self.history):
            self._draft = self.value
        self._position = max(0, min(len(self.history), self._position + step))
        self.value = (self.history[self._position] if self._position < len(self.history)
                      else self._draft)
        self.cursor_position = len(self.value)

    def action_search_history(self) -> None:
        """Reverse search: the newest entry containing what is typed; again: older ones."""
        if self._search is None or self.value != self._hit:
            self._search, start = self.value, len(self.history)
        else:
            start = self._position
        index = self.store.search(self._search, start)
        if index is None:
            self.post_message(self.Searched(self._search, None))
            return
        self._position = index
        self.value = self._hit = self.history[index]
        self.cursor_position = len(self.value)
        self.post_message(self.Searched(self._search, self.value))

    def action_leave(self) -> None:
        self.post_message(self.Left())

"""The input box's history, kept between runs in the user's XDG state folder.

One line per entry, newest last, in `$XDG_STATE_HOME/lbconsole/history`
(`~/.local/state/lbconsole/history` when the variable is unset or not an
absolute path, as the XDG spec says). Bounded: only the last `HISTORY_SIZE`
entries are read, and the file is rewritten to that many when it has grown to
twice as long, so appending stays one small write. A file that cannot be read
or written costs the history, never the console.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

HISTORY_SIZE = 500


def history_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the history lives for this user."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and Path(state).is_absolute() else (
        Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return base / "lbconsole" / "history"


class History:
    """Entries in memory (oldest first) and, if `path` is given, on disk."""

    def __init__(self, path: Path | None = None, size: int = HISTORY_SIZE) -> None:
        self.path = path
        self.size = size
        self.entries: list[str] = []
        self._lines_on_disk = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
            self._lines_on_disk = len(lines)
            for line in lines[-self.size:]:
                self._remember(line)

    def _remember(self, line: str) -> bool:
        if not line or (self.entries and self.entries[-1] == line):
            return False
        self.entries.append(line)
        del self.entries[:-self.size]
        return True

    def add(self, line: str) -> None:
        """Remember a submitted line (not twice in a row) and append it to the file."""
        line = line.replace("\n", " ").strip()
        if not self._remember(line) or self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._lines_on_disk >= 2 * self.size:
                self._rewrite()
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line + "\n")
            self._lines_on_disk += 1

    def _rewrite(self) -> None:
        assert self.path is not None
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(entry + "\n" for entry in self.entries))
        os.replace(temporary, self.path)
        self._lines_on_disk = len(self.entries)

    def search(self, text: str, before: int) -> int | None:
        """The index of the newest entry before `before` that contains `text`."""
        for index in range(min(before, len(self.entries)) - 1, -1, -1):
            if text in self.entries[index]:
                return index
        return None

"""`loadbalancer.log`: timestamped lines, buffered in memory and written by a thread.

On the hot path nothing is formatted per line: a client's answers are logged
when they are written to it, as one piece (`stamp + tag` joined between them,
a C-level join), and rare lines are one piece each. A timer hands each batch,
joined, to a writer thread that appends it to the file and rotates the file by
size. The console reads the latest lines, whole, from `recent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path


class RequestLog:
    """The balancer's log: `event()` for rare lines, `lines()` for a client's answers."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = "loadbalancer.log",
        *,
        max_bytes: int = 20 * 1024 * 1024,
        backups: int = 3,
        keep_recent: int = 1000,
        flush_interval: float = 0.05,
        log_requests: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_interval = flush_interval
        self.log_requests = log_requests
        self.pieces: list[bytes] = []
        """Pending text: each piece is one or more whole lines, stamped, each ending in a
        newline."""
        self.recent: deque[bytes] = deque(maxlen=keep_recent)
        self.total = 0
        """Lines flushed so far; the console uses it to see what is new in `recent`."""
        self.events: deque[bytes] = deque(maxlen=keep_recent)
        """The latest event lines alone (no per-request lines), for the console."""
        self.events_total = 0
        self.write_errors = 0
        self._stamp_second = -1
        self._stamp_prefix = b""
        self._stamp_ms = -1
        self._stamp = b""
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------ writing

    def stamp(self) -> bytes:
        """`2026-11-27 19:30:41.123 `: formatted once per millisecond at most."""
        ms = int(time.time() * 1000)
        if ms != self._stamp_ms:
            self._stamp_ms = ms
            second = ms // 1000
            if second != self._stamp_second:
                self._stamp_second = second
                self._stamp_prefix = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(second)).encode()
            self._stamp = b"%b.%03d " % (self._stamp_prefix, ms % 1000)
        return self._stamp

    def event(self, text: str) -> None:
        """Log one line of text (state changes, connections, operator actions)."""
        line = self.stamp() + text.encode("utf-8", "replace") + b"\n"
        self.pieces.append(line)
        self.events.append(line)
        self.events_total += 1

    def line(self, tag: bytes, body: bytes) -> None:
        """Log one ready-made line (`body` ends in a newline)."""
        self.pieces.append(self.stamp() + tag + body)

    def lines(self, tag: bytes, bodies: list[bytes]) -> None:
        """Log ready-made lines (each ends in a newline) under one tag, in one join."""
        prefix = self.stamp() + tag
        self.pieces.append(prefix + prefix.join(bodies))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the file and start the flush timer on the running loop."""
        self._loop = asyncio.get_running_loop()
        if self.path is not None and self._thread is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._writer, name="lbconsole-log", daemon=True)
            self._thread.start()
        self._schedule()

    def _schedule(self) -> None:
        if self._loop is not None and not self._closed:
            self._timer = self._loop.call_later(self.flush_interval, self._tick)

    def _tick(self) -> None:
        self.flush()
        self._schedule()

    def flush(self) -> None:
        """Hand pending lines to the writer thread and to `recent`."""
        pieces = self.pieces
        if not pieces:
            return
        text = b"".join(pieces)
        pieces.clear()
        self.total += text.count(b"\n")
        keep = self.recent.maxlen or 1000
        tail = text.rsplit(b"\n", keep + 1)  # the last element is the b"" after the end
        self.recent.extend(line + b"\n" for line in tail[-keep - 1 : -1])
        if self._thread is not None:
            # Joined here, the writer thread only calls write(), which releases the
            # GIL, so it never stalls the event loop.
            self._queue.put(text)

    def close(self) -> None:
        """Flush everything and wait for the writer thread to finish."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    # ------------------------------------------------------------ writer thread

    def _writer(self) -> None:
        assert self.path is not None
        handle = self._open()
        size = handle.tell() if handle else 0
        while True:
            chunk = self._queue.get()
            if chunk is None:
                break
            if handle is None:
                handle = self._open()
                if handle is None:
                    continue
            # The batch is written in one call when it fits; otherwise cut after the
            # last line that fits, the file rotated, and the rest goes on. A file
            # never exceeds its limit, unless one line alone is longer. (Cutting
            # every batch into small pieces measured 50% more GIL hand-offs.)
            while chunk:
                fits = len(chunk) if size + len(chunk) <= self.max_bytes \
                    else chunk.rfind(b"\n", 0, self.max_bytes - size) + 1
                if fits <= 0:
                    if size:
                        handle = self._rotated(handle)
                        size = 0
                        if handle is None:
                            break
                        continue
                    fits = chunk.find(b"\n") + 1 or len(chunk)  # one line past the limit
                piece, chunk = chunk[:fits], chunk[fits:]
                try:
                    view = memoryview(piece)
                    while view:  # an unbuffered write may be partial
                        view = view[handle.write(view) or 0 :]
                    size += len(piece)
                except OSError:
                    self.write_errors += 1
                if chunk:
                    handle = self._rotated(handle)
                    size = 0
                    if handle is None:
                        break
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def _rotated(self, handle):  # type: ignore[no-untyped-def]
        handle.close()
        self._rotate()
        return self._open()

    def _open(self):  # type: ignore[no-untyped-def]
        assert self.path is not None
        try:
            return open(self.path, "ab", buffering=0)
        except OSError:
            self.write_errors += 1
            return None

    def _rotate(self) -> None:
        assert self.path is not None
        if self.backups <= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                with contextlib.suppress(OSError):
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        with contextlib.suppress(OSError):
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))

"""Simulated work with a capacity: K workers and a first-come, first-served queue.

A request that carries `work_ms` occupies one worker for work_ms / speed, on
an event-loop timer (never a sleep: the server keeps reading and answering
everything else meanwhile). With every worker busy, requests wait here in
arrival order, as they would in a real server's accept queue or thread pool.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class WorkQueue:
    """Workers, speed and the waiting line; `busy` and `queued` are what a ping reports."""

    __slots__ = ("busy", "finished", "speed", "started", "waiting", "workers")

    def __init__(self, workers: int | None = None, speed: float = 1.0) -> None:
        self.workers = workers
        """At most this many jobs in work at once; None: unlimited."""
        self.speed = speed
        """Applied when a job starts work, so a live change reaches queued jobs too."""
        self.busy = 0
        self.waiting: deque[tuple[float, Callable[[], None]]] = deque()
        self.started = 0
        self.finished = 0

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def submit(self, work_ms: float, done: Callable[[], None]) -> None:
        """Run `done` once `work_ms` of work (scaled by speed) has been done by a free worker."""
        workers = self.workers
        if workers is None or self.busy < workers:
            self._start(work_ms, done)
        else:
            self.waiting.append((work_ms, done))

    def set_workers(self, workers: int | None) -> None:
        """Change the capacity: more workers take from the queue at once; fewer let work finish."""
        self.workers = workers
        self._fill()

    def _start(self, work_ms: float, done: Callable[[], None]) -> None:
        self.busy += 1
        self.started += 1
        asyncio.get_running_loop().call_later(work_ms / 1000.0 / self.speed, self._finish, done)

    def _finish(self, done: Callable[[], None]) -> None:
        self.busy -= 1
        self.finished += 1
        try:
            done()
        finally:
            self._fill()

    def _fill(self) -> None:
        waiting = self.waiting
        while waiting and (self.workers is None or self.busy < self.workers):
            work_ms, done = waiting.popleft()
            self._start(work_ms, done)

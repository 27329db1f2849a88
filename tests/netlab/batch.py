"""A paced, pipelined batch over the balancer's wire protocol, with an id per request.

Request N is `{"id":N,"op":"somma","a":N,"b":1}`, so every answer can be checked
on its own (result N+1) and matched to exactly one request. The batch is
bounded both ways: at least `minimum` requests, more only while `go_on()`
holds (the partition scenario is still running), never more than `limit`
requests or `time_limit` seconds, and at most `window` in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson


@dataclass
class Batch:
    """What was sent and what came back."""

    sent: int = 0
    answers: dict[int, list[dict]] = field(default_factory=dict)
    unmatched: list[bytes] = field(default_factory=list)
    """Answer lines without a usable integer id."""
    seconds: float = 0.0
    closed_early: bool = False

    def lost(self) -> list[int]:
        return [i for i in range(1, self.sent + 1) if i not in self.answers]

    def duplicated(self) -> list[int]:
        return [i for i, a in self.answers.items() if len(a) > 1]

    def wrong(self) -> list[dict]:
        """Answers that are errors, carry the wrong result, or answer no request sent."""
        return [a for i, many in self.answers.items() for a in many
                if not 1 <= i <= self.sent or a.get("result") != i + 1]

    def by_server(self) -> Counter[str]:
        return Counter(str(a[0].get("server")) for a in self.answers.values())

    def problems(self) -> str:
        """Empty when every request got exactly one correct answer."""
        out = []
        if lost := self.lost():
            out.append(f"{len(lost)} lost (first ids {lost[:10]})")
        if dup := self.duplicated():
            out.append(f"{len(dup)} answered more than once (first ids {dup[:10]})")
        if wrong := self.wrong():
            out.append(f"{len(wrong)} wrong answers (first {wrong[:3]})")
        if self.unmatched:
            out.append(f"{len(self.unmatched)} lines without an id ({self.unmatched[:3]})")
        if self.closed_early:
            out.append("the balancer closed the connection")
        return "; ".join(out)


async def run_batch(port: int, go_on: Callable[[], bool], *, minimum: int = 30_000,
                    rate: float = 3_000, window: int = 3_000, limit: int = 150_000,
                    time_limit: float = 40.0,
                    drain: float = 15.0, host: str = "127.0.0.1") -> Batch:
    """Send the batch at about `rate` requests/s; wait up to `drain` s for the last answers."""
    batch = Batch()
    reader, writer = await asyncio.open_connection(host, port, limit=2**20)
    room = asyncio.Event()
    room.set()
    start = time.monotonic()

    async def read() -> None:
        while True:
            line = await reader.readline()
            if not line:
                batch.closed_early = batch.sent > sum(map(len, batch.answers.values()))
                return
            try:
                answer = orjson.loads(line)
                sid = answer["id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                batch.unmatched.append(line)
                continue
            if not isinstance(sid, int):
                batch.unmatched.append(line)
                continue
            batch.answers.setdefault(sid, []).append(answer)
            if batch.sent - len(batch.answers) < window:
                room.set()

    reading = asyncio.create_task(read())
    chunk = 50
    try:
        while batch.sent < limit and time.monotonic() - start < time_limit:
            if batch.sent >= minimum and not go_on():
                break
            if batch.sent - len(batch.answers) >= window:
                room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.wait(), 0.5)
                continue
            ahead = batch.sent - rate * (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead / rate)
            first = batch.sent + 1
            writer.write(b"".join(b'{"id":%d,"op":"somma","a":%d,"b":1}\n' % (i, i)
                                  for i in range(first, first + chunk)))
            batch.sent += chunk
            await writer.drain()
            if reading.done():
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_all_answered(batch), drain)
    finally:
        batch.seconds = time.monotonic() - start
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await writer.wait_closed()
    return batch


async def _all_answered(batch: Batch) -> None:
    while len(batch.answers) < batch.sent and not batch.closed_early:
        await asyncio.sleep(0.05)

"""An asyncio client of the balancer: single requests, and fast pipelined random batches.

`Client` sends request lines exactly as a user types them and matches answers
by id (the id the request carried, or its line number on the connection, as
the balancer assigns). `run_batch` sends `random N` over its own connection,
keeping a window of requests in flight and counting answers per chunk read
with byte scans, so the client costs little next to the balancer it drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from balancer.protocol import OPERATIONS, check_answer

_SERVER = re.compile(rb'"server":"([^"]*)"')


class ClientError(Exception):
    """The balancer could not be reached, or went away."""


class _Lines(asyncio.Protocol):
    """A line splitter that hands complete lines (or whole chunks) to a callback."""

    def __init__(self, on_chunk: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        self.on_chunk = on_chunk
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data if self.buffer else data
        cut = data.rfind(b"\n") + 1
        self.buffer = data[cut:]
        if cut:
            self.on_chunk(data[:cut])

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost()


async def _open(host: str, port: int, on_chunk: Callable[[bytes], None],
                on_lost: Callable[[], None], timeout: float) -> _Lines:
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Lines(on_chunk, on_lost), host, port), timeout)
    except ConnectionRefusedError:
        raise ClientError(f"cannot connect to {host}:{port}: connection refused "
                          "(is lbconsole running there?)") from None
    except TimeoutError:
        raise ClientError(f"cannot connect to {host}:{port}: timed out") from None
    except OSError as exc:
        raise ClientError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    return protocol


class Client:
    """One connection to the balancer; requests may be pipelined."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.seq = 0
        self.waiting: dict[object, asyncio.Future[dict]] = {}
        self.unmatched: deque[dict] = deque(maxlen=100)
        self.goodbye: asyncio.Future[dict] | None = None
        self._conn: _Lines | None = None

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = 5001,
                      timeout: float = 5.0) -> Client:
        client = cls(host, port)
        client._conn = await _open(host, port, client._on_chunk, client._on_lost, timeout)
        return client

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.transport is not None

    def send(self, line: str | bytes) -> asyncio.Future[dict]:
        """Send one request line; the future resolves with its answer (a dict)."""
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.strip()
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        if not raw:
            future.set_exception(ValueError("empty request"))
            return future
        if b"\n" in raw:
            future.set_exception(ValueError("one request per line"))
            return future
        if not self.connected:
            future.set_exception(ClientError("not connected to the balancer"))
            return future
        self.seq += 1
        key: object = self.seq
        if raw[:1] == b"{":
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                rid = orjson.loads(raw).get("id")
                if rid is not None:
                    key = rid
        if key in self.waiting:
            future.set_exception(ValueError(f"id {key!r} is already in flight"))
            return future
        if raw.lower() in (b"exit", b"quit"):
            self.goodbye = future
        self.waiting[key] = future
        assert self._conn is not None and self._conn.transport is not None
        self._conn.transport.write(raw + b"\n")
        return future

    async def request(self, line: str | bytes, timeout: float = 30.0) -> dict:
        """Send one request and wait for its answer."""
        return await asyncio.wait_for(self.send(line), timeout)

    async def exit(self, timeout: float = 30.0) -> dict | None:
        """Say `exit`: every request in flight is answered first, then goodbye."""
        if not self.connected:
            return None
        answer = await self.request("exit", timeout)
        if self._conn is not None:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._conn.closed), timeout)
        return answer

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._conn.closed), 2.0)

    def _on_chunk(self, chunk: bytes) -> None:
        for line in chunk.splitlines():
            try:
                answer = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(answer, dict):
                continue
            future = self.waiting.pop(answer.get("id"), None)
            if future is None and "goodbye" in answer and self.goodbye is not None:
                future = self.goodbye
            if future is None:
                self.unmatched.append(answer)
            elif not future.done():
                future.set_result(answer)

    def _on_lost(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ClientError("the balancer closed the connection"))


# ---------------------------------------------------------------- random batches


@dataclass
class BatchProgress:
    """Live counters of a running batch; the console reads them on its timer."""

    total: int
    sent: int = 0
    answered: int = 0
    errors: int = 0
    checked: int = 0
    bad: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    per_server: Counter[str] = field(default_factory=Counter)
    last_lines: deque[bytes] = field(default_factory=lambda: deque(maxlen=32))
    failure: str | None = None

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.answered / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if rate <= 0:
            return None
        return (self.total - self.answered) / rate

    def summary(self) -> str:
        """`1000 answers, 0 errors, server1 334 / server2 333 / server3 333, 0.12 s`."""
        servers = " / ".join(f"{name} {count}" for name, count in sorted(self.per_server.items()))
        text = (f"{self.answered} answers, {self.errors} errors"
                f"{', ' + servers if servers else ''}, {self.elapsed:.2f} s"
                f" ({self.rate:,.0f} req/s)")
        if self.bad:
            text += f", {self.bad} WRONG RESULTS"
        if self.failure:
            text += f" - stopped: {self.failure}"
        return text


def random_lines(count: int, rng: random.Random) -> list[bytes]:
    """Request lines with a random operation and no operands (the server draws them)."""
    ops = [op.encode() + b"\n" for op in OPERATIONS]
    return rng.choices(ops, k=count)


async def run_batch(
    host: str,
    port: int,
    total: int,
    *,
    window: int = 1024,
    seed: int | None = None,
    check_all: bool = False,
    progress: BatchProgress | None = None,
    on_chunk: Callable[[bytes], None] | None = None,
    stall_timeout: float = 60.0,
) -> BatchProgress:
    """Send `total` random requests pipelined, at most `window` in flight.

    Every answer is counted; errors and per-server counts come from byte scans of
    each chunk. The last answer of each chunk is parsed and its arithmetic checked
    (all of them with `check_all`).
    """
    progress = progress or BatchProgress(total)
    progress.total = total
    progress.started = time.monotonic()
    rng = random.Random(seed)
    pool = random_lines(min(max(total, 1), 8192), rng)
    pool_len = len(pool)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    patterns: list[tuple[bytes, str]] = []
    """(`"server":"server1"`, `server1`) for each server seen so far."""
    per_server = progress.per_server
    conn: _Lines | None = None

    def send(count: int) -> None:
        if conn is None or conn.transport is None or count <= 0:
            return
        start = progress.sent % pool_len
        end = start + count
        if end <= pool_len:
            data = b"".join(pool[start:end])
        else:
            data = b"".join(pool[start:]) + b"".join(pool[: end - pool_len])
        progress.sent += count
        conn.transport.write(data)

    def on_answers(chunk: bytes) -> None:
        count = chunk.count(b"\n")
        progress.answered += count
        if b'"error"' in chunk:
            progress.errors += chunk.count(b'"error"')
        named = chunk.count(b'"server":"')
        counted = 0
        for pattern, name in patterns:
            hits = chunk.count(pattern)
            if hits:
                per_server[name] += hits
                counted += hits
        if counted != named:
            for raw, hits in Counter(_SERVER.findall(chunk)).items():
                if all(raw != p[0][10:-1] for p in patterns):
                    patterns.append((b'"server":"' + raw + b'"', raw.decode()))
                    per_server[raw.decode()] += hits
        # Only the tail of the chunk is split: the last few lines are shown and
        # the last one is checked (every line with check_all).
        tail = len(chunk) - 1
        for _ in range(8):
            tail = chunk.rfind(b"\n", 0, tail)
            if tail < 0:
                break
        last = chunk[tail + 1 :].splitlines()
        for line in chunk.splitlines() if check_all else last[-1:]:
            _check(line, progress)
        progress.last_lines.extend(last)
        if on_chunk is not None:
            on_chunk(chunk)
        if progress.answered >= total:
            if not done.done():
                done.set_result(None)
            return
        send(min(count, total - progress.sent))

    def on_lost() -> None:
        if not done.done():
            done.set_exception(ClientError("the balancer closed the connection"))

    conn = await _open(host, port, on_answers, on_lost, 5.0)
    try:
        send(min(window, total))
        last = -1
        while not done.done():
            if progress.answered == last:
                raise ClientError(f"no answer for {stall_timeout:g}s")
            last = progress.answered
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), stall_timeout)
        done.result()
    except ClientError as exc:
        progress.failure = str(exc)
    finally:
        progress.finished = time.monotonic()
        if not done.done():
            done.cancel()  # cancelled mid-batch: nobody will wait on it any more
        if conn.transport is not None:
            conn.transport.close()
    return progress


def _check(line: bytes, progress: BatchProgress) -> None:
    try:
        answer = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if not isinstance(answer, dict) or "result" not in answer:
        return
    progress.checked += 1
    if not check_answer(answer):
        progress.bad += 1

"""An asyncio client of the balancer: single requests, and fast pipelined random batches.

`Client` sends request lines exactly as a user types them and matches answers
by id (the id the request carried, or its line number on the connection, as
the balancer assigns). `run_batch` sends `random N` over its own connection,
keeping a window of requests in flight and counting answers per chunk read
with byte scans, so the client costs little next to the balancer it drives.
Its latency percentiles come from timing every answer of a small batch, and a
spread sample of each chunk's answers in a big one (parsing every answer's id
would cost more than the rest of the client's work per answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from balancer.protocol import OPERATIONS, check_answer

_SERVER = re.compile(rb'"server":"([^"]*)"')
_ANSWER_ID = re.compile(rb'\{"id":(\d+)')
"""The start of an answer to a request without an id: its line number on the connection."""

POOL_SIZE = 8192
"""Distinct request lines of a batch; bigger batches send them again, in a cycle."""
TIME_ALL_UP_TO = 10_000
"""Batches up to this size time every answer; bigger ones one answer in SAMPLE_EVERY
of each chunk (at least one per chunk), each standing for the answers around it."""
SAMPLE_EVERY = 16


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
    latencies: Counter[float] = field(default_factory=Counter)
    """Answer latency in ms (about three significant digits) -> how many answers it stands
    for (a sampled answer stands for its neighbours in the chunk)."""
    max_ms: float | None = None
    """The longest latency timed."""

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

    def add_latency(self, ms: float, weight: float = 1.0) -> None:
        key = round(ms, 2) if ms < 10 else round(ms, 1) if ms < 100 else float(round(ms))
        self.latencies[key] += weight
        if self.max_ms is None or ms > self.max_ms:
            self.max_ms = ms

    def percentiles(self) -> dict[str, float | None]:
        """p50, p95, p99 (nearest rank over the timed answers' weights) and max, in ms."""
        out: dict[str, float | None] = dict.fromkeys(("p50_ms", "p95_ms", "p99_ms"))
        out["max_ms"] = self.max_ms
        total = sum(self.latencies.values())
        if not total:
            return out
        wanted = [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)]
        seen = 0.0
        for value in sorted(self.latencies):
            seen += self.latencies[value]
            while wanted and seen >= wanted[0][1] * total * (1 - 1e-9):
                out[wanted.pop(0)[0]] = min(value, self.max_ms or value)  # a key is rounded
            if not wanted:
                break
        return out

    def summary(self) -> str:
        """`1000 answers, 0 errors, 0.12 s (8,333 req/s), p50 1.20 p95 3.10 p99 4.70 max
        5.02 ms, server1 334 / server2 333 / server3 333`: two lines at 80 columns for
        three servers; the per-server counts (also in the Servers table) come last."""
        text = (f"{self.answered} answers, {self.errors} errors, {self.elapsed:.2f} s"
                f" ({self.rate:,.0f} req/s)")
        p = self.percentiles()
        if p["p50_ms"] is not None:
            text += ", " + " ".join(f"{key[:-3]} {_ms(p[key])}" for key in p) + " ms"
        if self.per_server:
            text += ", " + " / ".join(f"{name} {count}"
                                      for name, count in sorted(self.per_server.items()))
        if self.bad:
            text += f", {self.bad} WRONG RESULTS"
        if self.failure:
            text += f" - stopped: {self.failure}"
        return text


def _ms(value: float | None) -> str:
    """About three significant digits, as the console shows latencies."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


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
    lines: Sequence[bytes] | None = None,
) -> BatchProgress:
    """Send `total` random requests pipelined, at most `window` in flight.

    Every answer is counted; errors and per-server counts come from byte scans of
    each chunk. The last answer of each chunk is parsed and its arithmetic checked
    (all of them with `check_all`). `lines` replaces the random operations: request
    lines (each ending in a newline, without an id: answers are matched by line
    number), sent in a cycle; a JSON line may carry `work_ms`.
    """
    progress = progress or BatchProgress(total)
    progress.total = total
    progress.started = time.monotonic()
    rng = random.Random(seed)
    pool = list(lines) if lines else random_lines(min(max(total, 1), POOL_SIZE), rng)
    pool_len = len(pool)
    starts: list[int] = []
    """The line number of the first request of each write…"""
    sent_at: list[float] = []
    """…and when it was written."""
    time_all = total <= TIME_ALL_UP_TO
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
        else:  # round the pool's end, more than once when the window is bigger than the pool
            laps, tail = divmod(end, pool_len)
            data = (b"".join(pool[start:]) + b"".join(pool) * (laps - 1)
                    + b"".join(pool[:tail]))
        starts.append(progress.sent + 1)
        sent_at.append(time.perf_counter())
        progress.sent += count
        conn.transport.write(data)

    def time_answers(chunk: bytes, count: int) -> None:
        now = time.perf_counter()
        if time_all:
            ids, weight = _ANSWER_ID.findall(chunk), 1.0
        else:
            picks = max(1, count // SAMPLE_EVERY)
            step = len(chunk) // picks
            found = (_ANSWER_ID.search(chunk, k * step) for k in range(picks))
            ids = [match[1] for match in found if match is not None]
            weight = count / len(ids) if ids else 0.0
        for raw in ids:
            write = bisect_right(starts, int(raw)) - 1
            if write >= 0:
                progress.add_latency((now - sent_at[write]) * 1000, weight)

    def on_answers(chunk: bytes) -> None:
        count = chunk.count(b"\n")
        time_answers(chunk, count)
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

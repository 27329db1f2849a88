"""HTTP/1.1 keep-alive clients for `--engine haproxy`: `lbconsole client --http` and the console.

HAProxy balances each request only in mode http, so the same requests go as
`POST /` bodies over keep-alive connections, pipelined; answers come back in
request order, one body each. `HttpClient` has `balancer.client.Client`'s
interface (answers matched by order, ids as the caller knows them);
`run_http_batch` is `run_batch` over several connections (HAProxy answers a
connection's pipelined requests one at a time, so depth buys little and
connections buy concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable

import orjson

from balancer.client import BatchProgress, ClientError, random_lines
from balancer.protocol import check_answer

_SERVER = re.compile(rb'"server":"([^"]*)"')


def http_request(line: bytes, host: bytes = b"lbconsole") -> bytes:
    """One request line as an HTTP/1.1 POST."""
    return b"POST / HTTP/1.1\r\nHost: %b\r\nContent-Length: %d\r\n\r\n%b" % (
        host, len(line), line)


class _HttpAnswers(asyncio.Protocol):
    """Splits a keep-alive response stream into bodies, handed over per chunk read."""

    def __init__(self, on_bodies: Callable[[list[bytes]], None],
                 on_lost: Callable[[], None]) -> None:
        self.on_bodies = on_bodies
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.failure: str | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.buffer + data if self.buffer else data
        bodies = []
        start = 0
        while True:
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                break
            head = data[start:end].lower()
            at = head.find(b"content-length:")
            if at < 0:
                self.failure = "an HTTP answer without Content-Length"
                if self.transport is not None:
                    self.transport.close()
                break
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop > 0 else len(head)])
            if len(data) < end + 4 + length:
                break
            body = data[end + 4 : end + 4 + length]
            bodies.append(body if body.endswith(b"\n") else body + b"\n")
            start = end + 4 + length
        self.buffer = data[start:]
        if bodies:
            self.on_bodies(bodies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost()


async def _open_http(host: str, port: int, on_bodies: Callable[[list[bytes]], None],
                     on_lost: Callable[[], None], timeout: float) -> _HttpAnswers:
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _HttpAnswers(on_bodies, on_lost), host, port),
            timeout)
    except ConnectionRefusedError:
        raise ClientError(f"cannot connect to {host}:{port}: connection refused "
                          "(is lbconsole running there?)") from None
    except TimeoutError:
        raise ClientError(f"cannot connect to {host}:{port}: timed out") from None
    except OSError as exc:
        raise ClientError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    return protocol


class HttpClient:
    """`Client`'s interface over HTTP keep-alive: answers matched by order, ids as
    the caller knows them (the JSON id it gave, else its own count)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.seq = 0
        self.waiting: deque[tuple[object, asyncio.Future[dict]]] = deque()
        self._conn: _HttpAnswers | None = None

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = 5001,
                      timeout: float = 5.0) -> HttpClient:
        client = cls(host, port)
        client._conn = await _open_http(host, port, client._on_bodies, client._on_lost, timeout)
        return client

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.transport is not None

    def send(self, line: str | bytes) -> asyncio.Future[dict]:
        raw = (line.encode() if isinstance(line, str) else line).strip()
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        if not raw or b"\n" in raw:
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
        self.waiting.append((key, future))
        assert self._conn is not None and self._conn.transport is not None
        self._conn.transport.write(http_request(raw))
        return future

    async def request(self, line: str | bytes, timeout: float = 30.0) -> dict:
        return await asyncio.wait_for(self.send(line), timeout)

    async def exit(self, timeout: float = 30.0) -> dict | None:
        """Wait for the answers in flight, then close (HTTP has no goodbye line)."""
        if not self.connected:
            return None
        pending = [f for _, f in self.waiting]
        if pending:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True),
                                       timeout)
        await self.close()
        return {"goodbye": True}

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._conn.closed), 2.0)

    def _on_bodies(self, bodies: list[bytes]) -> None:
        for body in bodies:
            if not self.waiting:
                return
            key, future = self.waiting.popleft()
            try:
                answer = orjson.loads(body)
            except orjson.JSONDecodeError:
                answer = {"error": body.decode("utf-8", "replace").strip()[:200]}
            if not isinstance(answer, dict):
                answer = {"error": "not a JSON object"}
            answer["id"] = key
            if not future.done():
                future.set_result(answer)

    def _on_lost(self) -> None:
        waiting, self.waiting = self.waiting, deque()
        for _, future in waiting:
            if not future.done():
                future.set_exception(ClientError("the balancer closed the connection"))


HTTP_DEPTH = 16
"""Requests pipelined per HTTP connection at most. HAProxy answers a connection's
pipelined requests one at a time and refuses (400) what overflows its 16 KB
buffer, so depth buys little; connections buy concurrency."""


RECONNECTS = 3
"""Times in a row a batch connection may be closed by the peer with nothing answered on
it before the batch gives up."""


async def run_http_batch(host: str, port: int, total: int, *, window: int = 1024,
                         seed: int | None = None, progress: BatchProgress | None = None,
                         on_chunk: Callable[[bytes], None] | None = None,
                         stall_timeout: float = 60.0, connections: int = 8) -> BatchProgress:
    """`run_batch` over HTTP keep-alive: `total` random requests over `connections`
    connections, `window` in flight in all (at most HTTP_DEPTH on each).

    A connection the peer closes (HAProxy handing over to a new process after an
    algorithm switch answers what it started, then closes) is opened again and the
    requests it left unanswered are sent anew, as RFC 9112 lets a client do with
    pipelined idempotent requests; a calculation is one. A peer that closes again
    and again without answering fails the batch."""
    progress = progress or BatchProgress(total)
    progress.total = total
    progress.started = time.monotonic()
    rng = random.Random(seed)
    pool = [http_request(line.rstrip()) for line in random_lines(min(max(total, 1), 8192), rng)]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = max(1, min(connections, total, window))
    depth = max(1, min(HTTP_DEPTH, window // count))
    quotas = [total // count + (1 if i < total % count else 0) for i in range(count)]
    sent = [0] * count
    answered = [0] * count
    barren = [0] * count
    """Closes in a row with nothing answered, per connection."""
    conns: list[_HttpAnswers] = []
    reopening: set[asyncio.Task[None]] = set()

    def send(index: int, howmany: int) -> None:
        conn = conns[index]
        howmany = min(howmany, quotas[index] - sent[index])
        if conn.transport is None or howmany <= 0:
            return
        start = progress.sent
        conn.transport.write(b"".join(pool[(start + k) % len(pool)] for k in range(howmany)))
        progress.sent += howmany
        sent[index] += howmany

    def on_bodies(index: int, bodies: list[bytes]) -> None:
        chunk = b"".join(bodies)
        progress.answered += len(bodies)
        answered[index] += len(bodies)
        barren[index] = 0
        progress.errors += chunk.count(b'"error"')
        for raw, hits in Counter(_SERVER.findall(chunk)).items():
            progress.per_server[raw.decode()] += hits
        _check(bodies[-1], progress)
        progress.last_lines.extend(bodies[-8:])
        if on_chunk is not None:
            on_chunk(chunk)
        if progress.answered >= total:
            if not done.done():
                done.set_result(None)
            return
        send(index, len(bodies))

    async def reopen(index: int) -> None:
        try:
            conns[index] = await _open(index)
        except ClientError as exc:
            if not done.done():
                done.set_exception(exc)
            return
        send(index, depth)

    def on_lost(index: int) -> None:
        if done.done() or answered[index] >= quotas[index]:
            return
        barren[index] += 1
        if barren[index] > RECONNECTS:
            done.set_exception(ClientError("the balancer closed the connection"))
            return
        progress.sent -= sent[index] - answered[index]  # never answered: sent again
        sent[index] = answered[index]
        task = loop.create_task(reopen(index))
        reopening.add(task)
        task.add_done_callback(reopening.discard)

    async def _open(index: int) -> _HttpAnswers:
        return await _open_http(host, port, lambda b: on_bodies(index, b),
                                lambda: on_lost(index), 5.0)

    try:
        for index in range(count):
            conns.append(await _open(index))
        for index in range(count):
            send(index, depth)
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
            done.cancel()
        for task in list(reopening):
            task.cancel()
        for conn in conns:
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

"""Load generator for `lbconsole bench`: pipelined requests over C connections, answers checked.

`python -m app.bench.loadgen --target HOST:PORT [--target ...] -c C -d D -n N --json`
opens C connections (spread round-robin over the targets), keeps up to D requests
in flight on each, sends N text requests in all and prints one JSON object.
Requests come from a precomputed pool with the expected answer bytes, so the
check is exact and cheap: every answer is matched to its request by id (the
request's line number on its connection) and compared byte for byte; wrong,
duplicate and missing answers are counted. It runs in its own process so the
balancer under test never shares a CPU-bound process with its load.

`--pingpong NAME=HOST:PORT ...` measures latency instead: one request in flight
on one connection per target, the targets taking turns (see `ping_pong`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import socket
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field

from balancer import eventloop

POOL_SIZE = 8192
"""Distinct requests in the pool (a power of two: the index is a mask, not a modulo)."""

MAX_SAMPLES = 262_144
"""Latency samples kept per run at most; every S-th request is sampled, S a power of two."""

_OPS = (b"somma", b"sottrazione", b"moltiplicazione", b"divisione")


class LoadError(Exception):
    """The run could not finish: connection refused or lost, stall, overall timeout."""


def build_pool(size: int = POOL_SIZE, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """Request lines and, for each, the exact bytes its answer has after the id.

    Operands are integers and divisions are exact, so every result is an integer
    whose JSON form is known without asking the protocol module: the check stays
    independent of the code under test.
    """
    rng = random.Random(seed)
    lines: list[bytes] = []
    expected: list[bytes] = []
    for _ in range(size):
        op = rng.randrange(4)
        if op == 3:
            b = rng.randint(1, 1000)
            a = b * rng.randint(0, 1000)
            result = a // b
        else:
            a, b = rng.randint(1, 1_000_000), rng.randint(1, 1_000_000)
            result = (a + b, a - b, a * b)[op]
        name = _OPS[op]
        lines.append(b"%b %d %d\n" % (name, a, b))
        expected.append(b',"op":"%b","a":%d,"b":%d,"result":%d' % (name, a, b, result))
    return lines, expected


@dataclass
class Totals:
    """What one run found; `ok` only when every request got exactly one right answer."""

    requests: int
    answered: int = 0
    errors: int = 0
    wrong: int = 0
    duplicates: int = 0
    missing: int = 0
    elapsed: float = 0.0
    req_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    connections: int = 0
    depth: int = 0
    targets: list[str] = field(default_factory=list)
    samples: int = 0
    cpu_s: float = 0.0
    cpu_us_per_req: float | None = None
    uvloop: bool = False
    ok: bool = False
    error: str | None = None
    bad_lines: list[str] = field(default_factory=list)
    """A few of the wrong answers, for the report."""


class LoadConnection(asyncio.Protocol):
    """One generator connection: sends pool slices, checks answers by line number."""

    def __init__(self, run: LoadRun, index: int, quota: int) -> None:
        self.run = run
        self.quota = quota
        self.base = (index * 1021) % POOL_SIZE
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent = 0
        self.answered = 0
        self.errors = 0
        self.wrong = 0
        self.duplicates = 0
        self.seen = bytearray(quota + 1)
        shift = run.sample_shift
        self.sent_at = array("d", bytes(8 * ((quota >> shift) + 1)))
        self.lost: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.answered < self.quota:
            self.lost = f"connection closed by the target after {self.answered} answers" + (
                f" ({exc})" if exc else "")
            self.run.connection_done()

    def send(self, count: int) -> None:
        """Send the next `count` requests as one write (slices of the doubled pool)."""
        count = min(count, self.quota - self.sent)
        transport = self.transport
        if count <= 0 or transport is None:
            return
        run = self.run
        blob, offsets = run.blob, run.offsets
        start = self.sent
        now = time.perf_counter()
        shift = run.sample_shift
        step = 1 << shift
        first = ((start >> shift) + 1) << shift
        sent_at = self.sent_at
        for k in range(first, start + count + 1, step):
            sent_at[k >> shift] = now
        position = (self.base + start + 1) & (POOL_SIZE - 1)
        left = count
        while left:
            piece = min(left, POOL_SIZE)
            transport.write(blob[offsets[position] : offsets[position + piece]])
            left -= piece
        self.sent = start + count

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        run = self.run
        expected = run.expected
        mask = POOL_SIZE - 1
        base = self.base
        seen = self.seen
        sent = self.sent
        shift = run.sample_shift
        smask = (1 << shift) - 1
        sent_at = self.sent_at
        fresh = 0
        for line in lines:
            cut = line.find(b",", 6)
            try:
                k = int(line[6:cut])
            except ValueError:
                self._bad(line)
                continue
            if k <= 0 or k > sent:
                self._bad(line)
                continue
            if seen[k]:
                self.duplicates += 1
                continue
            seen[k] = 1
            fresh += 1
            if not k & smask:
                j = k >> shift
                sent_at[j] = now - sent_at[j]
            # Right: the expected fields, then either the end or the balancer's server name.
            if line.startswith(expected[(base + k) & mask], cut) and line[-1] == 125:
                continue
            if line.startswith(b',"error":', cut):
                self.errors += 1
            else:
                self._bad(line)
        if fresh:
            self.answered += fresh
            run.answered += fresh
            run.last_answer = now
            if self.answered >= self.quota:
                run.connection_done()
            else:
                self.send(fresh)

    def _bad(self, line: bytes) -> None:
        self.wrong += 1
        bad = self.run.bad_lines
        if len(bad) < 5:
            bad.append(line[:200].decode("utf-8", "replace"))

    def latencies(self) -> list[float]:
        """Latencies (seconds) of the sampled requests that were answered."""
        shift = self.run.sample_shift
        seen, sent_at = self.seen, self.sent_at
        return [sent_at[k >> shift] for k in range(1 << shift, self.sent + 1, 1 << shift)
                if seen[k]]


class LoadRun:
    """Connections, the shared pool, progress, and the watchdog that ends stalls."""

    def __init__(self, targets: list[tuple[str, int]], connections: int, depth: int,
                 requests: int, *, seed: int = 1, http: bool = False) -> None:
        if not targets:
            raise ValueError("at least one target")
        if connections < 1 or depth < 1 or requests < 1:
            raise ValueError("connections, depth and requests must be positive")
        self.targets = targets
        self.depth = depth
        self.requests = requests
        connections = min(connections, requests)
        self.connections_wanted = connections
        lines, fields = build_pool(POOL_SIZE, seed)
        self.expected = [(f + b"}", f + b',"server":"') for f in fields]
        self.http = http
        """HTTP/1.1 keep-alive (app.bench.httpload) instead of the line protocol."""
        if http:
            from app.bench.httpload import http_requests

            lines = http_requests(lines)
        doubled = lines + lines
        self.blob = b"".join(doubled)
        self.offsets = [0]
        for line in doubled:
            self.offsets.append(self.offsets[-1] + len(line))
        shift = 0
        while (requests >> shift) > MAX_SAMPLES:
            shift += 1
        self.sample_shift = shift
        base, extra = divmod(requests, connections)
        self.quotas = [base + (1 if i < extra else 0) for i in range(connections)]
        self.conns: list[LoadConnection] = []
        self.answered = 0
        self.last_answer = 0.0
        self.bad_lines: list[str] = []
        self._open = 0
        self._done: asyncio.Future[None] | None = None

    def connection_done(self) -> None:
        self._open -= 1
        if self._open <= 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        kind = LoadConnection
        if self.http:
            from app.bench.httpload import HttpLoadConnection

            kind = HttpLoadConnection
        for index, quota in enumerate(self.quotas):
            host, port = self.targets[index % len(self.targets)]
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(
                    lambda i=index, q=quota: kind(self, i, q), host, port), timeout)
            except TimeoutError:
                raise LoadError(f"cannot connect to {host}:{port}: timed out") from None
            except OSError as exc:
                raise LoadError(f"cannot connect to {host}:{port}: "
                                f"{exc.strerror or exc}") from None
            self.conns.append(conn)

    async def drive(self, timeout: float, stall: float) -> tuple[float, float]:
        """Send the first windows and wait for the last answer; (elapsed, cpu seconds)."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._open = sum(1 for c in self.conns if c.lost is None)
        if not self._open:
            self._done.set_result(None)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        started = self.last_answer = time.perf_counter()
        for conn in self.conns:
            conn.send(self.depth)
        deadline = started + timeout
        try:
            while not self._done.done():
                now = time.perf_counter()
                if now > deadline:
                    raise LoadError(f"overall timeout: {timeout:g}s passed with "
                                    f"{self.answered} of {self.requests} answered")
                if now - self.last_answer > stall:
                    raise LoadError(f"stalled: no answer for {stall:g}s with "
                                    f"{self.answered} of {self.requests} answered")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._done), min(0.25, stall))
        finally:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime - cpu0
            end = self.last_answer if self.answered else time.perf_counter()
        lost = [c.lost for c in self.conns if c.lost]
        if lost:
            raise LoadError(lost[0])
        return end - started, cpu

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()

    def totals(self, elapsed: float, cpu: float, error: str | None) -> Totals:
        conns = self.conns
        answered = sum(c.answered for c in conns)
        samples = sorted(s for c in conns for s in c.latencies())
        t = Totals(
            requests=self.requests,
            answered=answered,
            errors=sum(c.errors for c in conns),
            wrong=sum(c.wrong for c in conns),
            duplicates=sum(c.duplicates for c in conns),
            missing=self.requests - answered,
            elapsed=round(elapsed, 6),
            req_per_s=round(answered / elapsed, 1) if elapsed > 0 else 0.0,
            p50_ms=_ms(percentile(samples, 0.50)),
            p99_ms=_ms(percentile(samples, 0.99)),
            connections=len(conns) or self.connections_wanted,
            depth=self.depth,
            targets=[f"{h}:{p}" for h, p in self.targets],
            samples=len(samples),
            cpu_s=round(cpu, 4),
            cpu_us_per_req=round(cpu / answered * 1e6, 3) if answered else None,
            uvloop=_uvloop_running(),
            error=error,
            bad_lines=self.bad_lines,
        )
        t.ok = error is None and not (t.errors or t.wrong or t.duplicates or t.missing)
        return t


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 4)


def _uvloop_running() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def run_load(targets: list[tuple[str, int]], connections: int = 8, depth: int = 64,
                   requests: int = 100_000, *, timeout: float = 60.0, stall: float = 5.0,
                   connect_timeout: float = 5.0, seed: int = 1, http: bool = False) -> Totals:
    """One run against the targets; failures end up in `Totals.error`, never as a hang."""
    run = LoadRun(targets, connections, depth, requests, seed=seed, http=http)
    elapsed = cpu = 0.0
    error = None
    try:
        await run.connect(connect_timeout)
        elapsed, cpu = await run.drive(timeout, stall)
    except LoadError as exc:
        error = str(exc)
    finally:
        run.close()
    return run.totals(elapsed, cpu, error)


def ping_pong(targets: list[tuple[str, tuple[str, int]]], requests: int, *, slice_size: int = 100,
              warmup: int = 200, timeout: float = 60.0, stall: float = 5.0,
              seed: int = 1, http: frozenset[str] = frozenset()) -> dict:
    """One request in flight at a time on one connection per target, the targets
    taking turns in slices of `slice_size` requests (in a shuffled order each
    turn) until each has had `requests`. Whatever the machine does meanwhile
    (other work, where the scheduler puts each process) hits every target alike,
    so their p50s can be compared. Every answer is checked; blocking sockets keep
    the generator's own share of each round trip small and the same for all."""
    lines, fields = build_pool(POOL_SIZE, seed)
    rng = random.Random(seed)
    results: dict[str, dict] = {}
    conns: dict[str, _PingConnection] = {}
    deadline = time.monotonic() + timeout
    error = None
    try:
        for name, address in targets:
            if name in http:
                from app.bench.httpload import HttpPingConnection

                conns[name] = HttpPingConnection(address, stall, lines, fields)
            else:
                conns[name] = _PingConnection(address, stall, lines, fields)
            results[name] = {"requests": requests}
        for conn in conns.values():
            conn.run(warmup, None)
        names = list(conns)
        done = 0
        while done < requests:
            count = min(slice_size, requests - done)
            rng.shuffle(names)
            for name in names:
                conns[name].run(count, conns[name].latencies)
            done += count
            if time.monotonic() > deadline:
                raise LoadError(f"overall timeout: {timeout:g}s passed with {done} of "
                                f"{requests} round trips per target")
    except LoadError as exc:
        error = str(exc)
    finally:
        for conn in conns.values():
            conn.close()
    for name, conn in conns.items():
        ordered = sorted(conn.latencies)
        elapsed = sum(ordered)
        results[name].update(
            answered=len(ordered), wrong=conn.wrong, errors=conn.errors,
            p50_ms=_ms(percentile(ordered, 0.50)), p99_ms=_ms(percentile(ordered, 0.99)),
            req_per_s=round(len(ordered) / elapsed, 1) if elapsed > 0 else 0.0,
            error=conn.error, bad_lines=conn.bad_lines)
        results[name]["ok"] = (conn.error is None and error is None and not conn.wrong
                               and not conn.errors and len(ordered) == requests)
    return {"targets": results, "requests": requests, "slice": slice_size,
            "ok": error is None and all(r["ok"] for r in results.values()), "error": error}


class _PingConnection:
    """A blocking connection for `ping_pong`: send one request, read its answer, check it."""

    def __init__(self, address: tuple[str, int], stall: float, lines: list[bytes],
                 fields: list[bytes]) -> None:
        self.lines = lines
        self.fields = fields
        self.latencies: list[float] = []
        self.sent = 0
        self.wrong = 0
        self.errors = 0
        self.error: str | None = None
        self.bad_lines: list[str] = []
        self.address = f"{address[0]}:{address[1]}"
        try:
            self.sock = socket.create_connection(address, timeout=stall)
        except OSError as exc:
            raise LoadError(f"cannot connect to {self.address}: "
                            f"{exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def run(self, count: int, latencies: list[float] | None) -> None:
        sock, lines, fields = self.sock, self.lines, self.fields
        clock = time.perf_counter
        mask = POOL_SIZE - 1
        for _ in range(count):
            k = self.sent + 1
            started = clock()
            try:
                sock.sendall(lines[k & mask])
                buffer = self.buffer
                while b"\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise LoadError(f"{self.address} closed the connection after "
                                        f"{self.sent} answers")
                    buffer += chunk
            except OSError as exc:
                self.error = f"{self.address}: {exc.strerror or exc or 'timed out'}"
                raise LoadError(self.error) from None
            ended = clock()
            line, _, self.buffer = buffer.partition(b"\n")
            self.sent = k
            cut = line.find(b",", 6)
            want = fields[k & mask]
            if line[6:cut] != b"%d" % k or not line.startswith(want, cut) or line[-1:] != b"}":
                if line.startswith(b',"error":', cut):
                    self.errors += 1
                else:
                    self.wrong += 1
                    if len(self.bad_lines) < 5:
                        self.bad_lines.append(line[:200].decode("utf-8", "replace"))
            if latencies is not None:
                latencies.append(ended - started)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.bench.loadgen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", type=parse_target, default=[],
                        metavar="HOST:PORT", help="where to send (repeat to spread connections)")
    parser.add_argument("--pingpong", action="append", type=_named_target, default=[],
                        metavar="NAME=HOST:PORT",
                        help="ping-pong instead of load: one request in flight per target, "
                             "the targets taking turns (repeat for each target)")
    parser.add_argument("--pingpong-http", action="append", type=_named_target, default=[],
                        metavar="NAME=HOST:PORT", help="a ping-pong target over HTTP keep-alive")
    parser.add_argument("--http", action="store_true",
                        help="load over HTTP/1.1 keep-alive (POST /) instead of request lines")
    parser.add_argument("--slice", type=int, default=100,
                        help="ping-pong requests per target per turn (default 100)")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-d", "--depth", type=int, default=64, help="requests in flight each")
    parser.add_argument("-n", "--requests", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=60.0, help="whole run, seconds")
    parser.add_argument("--stall", type=float, default=5.0,
                        help="seconds without any answer that end the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def _named_target(text: str) -> tuple[str, tuple[str, int]]:
    name, sep, address = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, parse_target(address)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pingpong or args.pingpong_http:
        report = ping_pong(args.pingpong + args.pingpong_http, args.requests,
                           slice_size=max(1, args.slice), timeout=args.timeout, stall=args.stall,
                           seed=args.seed, http=frozenset(n for n, _ in args.pingpong_http))
        print(json.dumps(report), flush=True)
        return 0 if report["ok"] else 1
    if not args.target:
        print("loadgen: give --target HOST:PORT (load) or --pingpong NAME=HOST:PORT",
              file=sys.stderr)
        return 2
    totals = eventloop.run(run_load(args.target, args.connections, args.depth, args.requests,
                                    timeout=args.timeout, stall=args.stall, seed=args.seed,
                                    http=args.http))
    if args.json:
        print(json.dumps(asdict(totals)), flush=True)
    else:
        print(f"{totals.answered}/{totals.requests} answered in {totals.elapsed:.3f}s: "
              f"{totals.req_per_s:,.0f} req/s, p50 {totals.p50_ms} ms, p99 {totals.p99_ms} ms, "
              f"{totals.errors} errors, {totals.wrong} wrong, {totals.duplicates} duplicates, "
              f"{totals.missing} missing, {totals.cpu_us_per_req} us CPU/request"
              + (f"; FAILED: {totals.error}" if totals.error else ""), flush=True)
    return 0 if totals.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The calculation server: `python -m backends.server --name server1 --port 0`.

Binds 127.0.0.1, prints one ready line with its real port, and answers the wire
protocol (text or JSON lines, pipelined, many requests in flight) until it is
killed or gets SIGTERM. `ping` answers with the server's name and counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time

from balancer import eventloop
from balancer.protocol import (
    ALIASES,
    MAX_LINE,
    OPERATIONS,
    Ping,
    ProtocolError,
    answer_line,
    compute,
    draw_operands,
    dumps,
    error_line,
    parse_line,
    parse_text,
)

_SUM, _SUB, _MUL, _DIV = (op.encode() for op in OPERATIONS)
_FAST_OPS: dict[bytes, bytes] = {
    alias.encode(): {"somma": _SUM, "sottrazione": _SUB, "moltiplicazione": _MUL,
                     "divisione": _DIV}[name]
    for alias, name in ALIASES.items()
}


class CalcServer:
    """Answers request lines; holds the counters a `ping` reports."""

    def __init__(self, name: str, delay: float = 0.0, seed: int | None = None) -> None:
        self.name = name
        self.delay = delay
        self.rng = random.Random(seed)
        self.served = 0
        self.errors = 0
        self.connections = 0
        self.started = time.monotonic()

    def answer(self, line: bytes, seq: int) -> bytes:
        """The answer line to one request line; never raises on bad input."""
        # The common shapes (`somma 3 4`, `somma`, with small non-negative
        # integers) are answered straight from the split line; everything else
        # goes through the full parser.
        parts = line.split()
        op = _FAST_OPS.get(parts[0]) if parts else None
        if op is not None:
            if len(parts) == 3:
                ta, tb = parts[1], parts[2]
                if ta.isdigit() and tb.isdigit() and len(ta) < 16 and len(tb) < 16:
                    return self.integers(seq, op, int(ta), int(tb))
            elif len(parts) == 1:
                rnd = self.rng.random
                return self.integers(seq, op, 1 + int(rnd() * 50), 1 + int(rnd() * 50))
        if line[:1].islower() and line.isascii():
            return self.respond(parse_text(line, seq))
        return self.respond(parse_line(line, seq))

    def integers(self, rid: int, op: bytes, a: int, b: int) -> bytes:
        """Answer an operation on two small non-negative integers (the fast path)."""
        if op is _DIV:
            if b == 0:
                self.errors += 1
                return (b'{"id":%d,"error":"division by zero","op":"divisione","a":%d,"b":%d}\n'
                        % (rid, a, b))
            if a % b:
                self.served += 1
                return (b'{"id":%d,"op":"divisione","a":%d,"b":%d,"result":%b}\n'
                        % (rid, a, b, repr(a / b).encode()))
            result = a // b
        elif op is _SUM:
            result = a + b
        elif op is _SUB:
            result = a - b
        else:
            result = a * b
        self.served += 1
        return b'{"id":%d,"op":"%b","a":%d,"b":%d,"result":%d}\n' % (rid, op, a, b, result)

    def respond(self, parsed: object) -> bytes:
        if isinstance(parsed, ProtocolError):
            self.errors += 1
            return error_line(parsed.id, parsed.message)
        if isinstance(parsed, Ping):
            return self.pong(parsed.id)
        op, a, b, rid = parsed.op, parsed.a, parsed.b, parsed.id  # type: ignore[attr-defined]
        if a is None:
            a, b = draw_operands(self.rng)
        result = compute(op, a, b)
        if isinstance(result, ProtocolError):
            self.errors += 1
            return dumps({"id": rid, "error": result.message, "op": op, "a": a, "b": b}) + b"\n"
        self.served += 1
        return answer_line(rid, op, a, b, result)

    def pong(self, rid: object) -> bytes:
        return (
            dumps(
                {
                    "id": rid,
                    "pong": self.name,
                    "pid": os.getpid(),
                    "served": self.served,
                    "errors": self.errors,
                    "connections": self.connections,
                    "uptime": round(time.monotonic() - self.started, 3),
                }
            )
            + b"\n"
        )


class CalcProtocol(asyncio.Protocol):
    """One client connection (usually the balancer's): split lines, answer in one write."""

    def __init__(self, server: CalcServer, connections: set[CalcProtocol]) -> None:
        self.server = server
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.server.connections -= 1

    def eof_received(self) -> bool:
        # Answers already computed have been written; close once they drain.
        return False

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        out = []
        seq = self.seq
        answer = self.server.answer
        for line in lines:
            if not line or line == b"\r":
                continue
            seq += 1
            if len(line) > MAX_LINE:
                out.append(error_line(seq, f"line too long (limit {MAX_LINE} bytes)"))
                self._finish(out, close=True)
                return
            out.append(answer(line, seq))
        self.seq = seq
        if len(self.buffer) > MAX_LINE:
            out.append(error_line(seq + 1, f"line too long (limit {MAX_LINE} bytes)"))
            self._finish(out, close=True)
            return
        if out:
            self._finish(out, close=False)

    def _finish(self, out: list[bytes], close: bool) -> None:
        data = b"".join(out)
        transport = self.transport
        if transport is None:
            return
        if self.server.delay > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(self.server.delay, self._write_late, data, close)
            return
        transport.write(data)
        if close:
            transport.close()

    def _write_late(self, data: bytes, close: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if close:
                self.transport.close()


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    calc = CalcServer(args.name, delay=args.delay, seed=args.seed)
    connections: set[CalcProtocol] = set()
    try:
        server = await loop.create_server(
            lambda: CalcProtocol(calc, connections), args.host, args.port, backlog=1024
        )
    except OSError as exc:
        print(f"error {args.name} cannot listen on {args.host}:{args.port}: {exc.strerror}",
              flush=True)
        return 1
    port = server.sockets[0].getsockname()[1]
    http_conns: set[asyncio.Protocol] = set()
    if args.http_port is not None:  # the HTTP/1.1 interface, for HAProxy (backends/http.py)
        from backends.http import start_http

        try:
            _, http_port, http_conns = await start_http(calc, args.host, args.http_port,
                                                        calc.pong)  # type: ignore[assignment]
        except OSError as exc:
            print(f"error {args.name} cannot listen on {args.host}:{args.http_port}: "
                  f"{exc.strerror}", flush=True)
            return 1
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if args.exit_on_stdin_eof:
        # The supervisor holds our stdin open; EOF means it is gone, so we go too.
        await _watch_stdin(done)
    print(f"ready {args.name} {args.host}:{port} pid {os.getpid()}", flush=True)
    if args.http_port is not None:
        print(f"http {args.name} {args.host}:{http_port}", flush=True)
    await done.wait()
    server.close()
    if calc.delay > 0:
        await asyncio.sleep(calc.delay)
    for conn in [*connections, *http_conns]:
        if conn.transport is not None:  # type: ignore[attr-defined]
            conn.transport.close()  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    return 0


async def _watch_stdin(done: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    class _Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            done.set()

    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(_Watch, sys.stdin)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backends.server", description=__doc__)
    parser.add_argument("--name", default="server1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds added before each answer (a slow server)")
    parser.add_argument("--http-port", type=int, default=None, metavar="P",
                        help="also serve HTTP/1.1 on port P (0 picks a free one)")
    parser.add_argument("--seed", type=int, default=None, help="seed for random operands")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when standard input closes (set by the supervisor)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return eventloop.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

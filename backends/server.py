"""The calculation server: `python -m backends.server --name server1 --port 0`.

Binds 127.0.0.1 (or `--host`), prints one ready line with its real port, and
answers the wire protocol (text or JSON lines, pipelined, many requests in
flight) until it is killed or gets SIGTERM/SIGINT. `ping` answers with the
server's name, counters and settings. Requests may carry simulated work
(`"work_ms"`); `--workers`, `--speed`, `--latency` and the fault options shape
how it answers (see backends.settings). With `--exit-on-stdin-eof` (set by the
supervisor) standard input is the control channel (backends.control) and its
end makes the server exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from backends.calc import CalcServer
from backends.control import listen_stdin
from backends.lines import LineConnection
from backends.settings import ServerSettings, add_settings_options, settings_from_args
from balancer import eventloop

__all__ = ["CalcServer", "LineConnection", "main", "parse_args", "serve"]

SHUTDOWN_GRACE = 2.0
"""Seconds a stopping server waits for answers still in work or delayed."""


async def serve(args: argparse.Namespace, settings: ServerSettings | None = None) -> int:
    """Listen, print the ready line, answer until a signal (or stdin EOF); the exit status."""
    loop = asyncio.get_running_loop()
    if settings is None:
        settings = settings_from_args(args)
    calc = CalcServer(args.name, seed=args.seed, settings=settings)
    try:
        server = await loop.create_server(
            lambda: LineConnection(calc), args.host, args.port, backlog=1024)
    except OSError as exc:
        print(f"error {args.name} cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", flush=True)
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
        # The supervisor holds our stdin open: its orders come that way, and
        # EOF means it is gone, so we go too.
        await listen_stdin(calc, done)
    print(f"ready {args.name} {args.host}:{port} pid {os.getpid()}", flush=True)
    if args.http_port is not None:
        print(f"http {args.name} {args.host}:{http_port}", flush=True)
    await done.wait()
    server.close()
    deadline = time.monotonic() + SHUTDOWN_GRACE
    while calc.outstanding and not calc.settings.blackhole and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for conn in [*calc.connections, *http_conns]:
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.close()
    await asyncio.sleep(0)
    return 0


def build_parser(prog: str = "python -m backends.server") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="server1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds added before each answer (older form of --latency)")
    parser.add_argument("--http-port", type=int, default=None, metavar="P",
                        help="also serve HTTP/1.1 on port P (0 picks a free one)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for random operands and injected faults (repeatable runs)")
    add_settings_options(parser)
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="take control orders on stdin, exit when it closes (the supervisor)")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ServerSettings:
    """Refuse bad options with a usage error (never a traceback); the settings they give."""
    if not args.name or any(c.isspace() for c in args.name):
        parser.error("--name must be one word")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    if args.delay < 0:
        parser.error(f"--delay must be 0 or more seconds, got {args.delay:g}")
    try:
        return settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    return eventloop.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""`lbconsole server`: one calculation server on any host, until Ctrl-C or SIGTERM.

The same server the supervisor spawns (backends.server), with its work,
workers, speed, latency and fault options, but stand-alone: its settings come
from the command line only (no control channel), and its first line on
stdout is `ready NAME ADDR:PORT pid PID`. It has no authentication, so it
binds loopback unless told otherwise, and says so on stderr when it is.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from backends.server import serve
from backends.settings import add_settings_options, settings_from_args
from balancer import eventloop


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the name it answers pings with")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1; others are unprotected)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--http-port", type=int, default=None, metavar="P",
                        help="also serve HTTP/1.1 on port P, for HAProxy (0: a free one); "
                             "its line `http NAME ADDR:PORT` follows the ready line")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="seed for random operands and injected faults (repeatable runs)")
    add_settings_options(parser)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_main(args: argparse.Namespace) -> int:
    """Run one server from parsed options; the exit status (2 for bad options)."""
    problems = []
    if not args.name or any(c.isspace() for c in args.name):
        problems.append("--name must be one word")
    if not 0 <= args.port <= 65535:
        problems.append(f"--port must be from 0 to 65535, got {args.port}")
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        print(f"lbconsole server: error: {problems[0]}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"warning: lbconsole server has no authentication: anyone who can reach "
              f"{args.host or 'this host'} on its port can use it (and see its counters)",
              file=sys.stderr, flush=True)
    args.exit_on_stdin_eof = False
    return eventloop.run(serve(args, settings))

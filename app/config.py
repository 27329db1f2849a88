"""Command-line options shared by the console and `serve`, turned into a RuntimeConfig."""

from __future__ import annotations

import argparse

from app.runtime import RuntimeConfig

ENGINES = ("builtin", "haproxy")


def parse_address(text: str, default_port: int = 5001) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT`, `PORT` or `HOST` into (host, port)."""
    text = text.strip()
    if text.isdigit():
        return "127.0.0.1", int(text)
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _positive(kind: type) -> object:
    def convert(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return convert


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    d = RuntimeConfig()
    s = argparse.SUPPRESS
    g = parser.add_argument_group("balancer")
    g.add_argument("--engine", choices=ENGINES, default=s,
                   help="builtin: the Python balancer (default); haproxy: a real HAProxy in "
                        "the data path (mode http, per request), driven by lbconsole")
    g.add_argument("--host", default=s,
                   help="address to listen on (default 127.0.0.1; anything else exposes the "
                        "balancer to that network)")
    g.add_argument("--port", type=int, default=s,
                   help=f"port to listen on (default {d.port}; 0 picks a free one)")
    g.add_argument("--servers", type=int, default=s, metavar="N",
                   help=f"calculation servers to spawn (default {d.servers})")
    g.add_argument("--backend", action="append", default=s, metavar="HOST:PORT",
                   help="a server lbconsole did not spawn (repeatable)")
    g.add_argument("--max-clients", type=_positive(int), default=s,
                   help=f"client connections accepted at once (default {d.max_clients})")
    g.add_argument("--max-inflight", type=_positive(int), default=s,
                   help=f"requests in flight per client before reading pauses "
                        f"(default {d.max_inflight})")
    g.add_argument("--request-timeout", type=_positive(float), default=s, metavar="S",
                   help=f"a server silent this long is DOWN and its requests are re-sent "
                        f"(default {d.request_timeout:g})")
    g.add_argument("--queue-timeout", type=_positive(float), default=s, metavar="S",
                   help=f"how long requests wait when no server is UP "
                        f"(default {d.queue_timeout:g})")
    g.add_argument("--server-delay", type=float, default=s, metavar="S", help=s)
    h = parser.add_argument_group("health checks")
    h.add_argument("--check-interval", type=_positive(float), default=s, metavar="S",
                   help=f"seconds between checks (default {d.check_interval:g})")
    h.add_argument("--rise", type=_positive(int), default=s,
                   help=f"good checks to bring a DOWN server UP (default {d.rise})")
    h.add_argument("--fall", type=_positive(int), default=s,
                   help=f"failed checks to take an UP server DOWN (default {d.fall})")
    h.add_argument("--check-timeout", type=_positive(float), default=s, metavar="S",
                   help=f"seconds a check may take (default {d.check_timeout:g})")
    lg = parser.add_argument_group("log")
    lg.add_argument("--log-file", default=s, metavar="PATH",
                    help=f"log file (default {d.log_file}; '-' for none)")
    lg.add_argument("--no-request-log", action="store_true", default=s,
                    help="log events only, not one line per request")
    lg.add_argument("--log-max-bytes", type=_positive(int), default=s,
                    help=f"rotate the log at this size (default {d.log_max_bytes})")
    lg.add_argument("--log-backups", type=int, default=s,
                    help=f"rotated files kept (default {d.log_backups})")


def engine_of(args: argparse.Namespace) -> str:
    """The engine chosen on the command line (`builtin` unless told)."""
    return vars(args).get("engine", "builtin")


def runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    d = RuntimeConfig()
    get = vars(args).get
    log_file = get("log_file", d.log_file)
    backends = tuple(parse_address(b) for b in get("backend", []) or [])
    servers = get("servers", None)
    if servers is None:
        servers = 0 if backends else d.servers
    return RuntimeConfig(
        host=get("host", d.host),
        port=get("port", d.port),
        servers=servers,
        backends=backends,
        log_file=None if log_file in ("-", "") else log_file,
        log_requests=not get("no_request_log", False),
        log_max_bytes=get("log_max_bytes", d.log_max_bytes),
        log_backups=get("log_backups", d.log_backups),
        check_interval=get("check_interval", d.check_interval),
        rise=get("rise", d.rise),
        fall=get("fall", d.fall),
        check_timeout=get("check_timeout", d.check_timeout),
        request_timeout=get("request_timeout", d.request_timeout),
        queue_timeout=get("queue_timeout", d.queue_timeout),
        max_clients=get("max_clients", d.max_clients),
        max_inflight=get("max_inflight", d.max_inflight),
        server_delay=get("server_delay", d.server_delay),
    )

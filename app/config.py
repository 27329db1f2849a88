"""Command-line options shared by the console and `serve`, turned into a RuntimeConfig.

Server settings (`--server-workers`, `--server-speed`, `--server-latency`) are read
by the command grammar's own value parser, so `speed 3 0.5` typed live and
`--server-speed server3=0.5` accept and refuse the same values; `lbconsole
compare` takes the same argparse types from here.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable

from app.control.grammar import parse_percent, parse_setting_value
from app.runtime import RuntimeConfig
from balancer.algorithms import ALGORITHMS, MAX_WEIGHT

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_SPAWNED = re.compile(r"server\d+")

ENGINES = ("builtin", "haproxy")


def parse_address(text: str, default_port: int = 5001) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT`, `PORT` or `HOST` into (host, port)."""
    text = text.strip()
    if text.isdecimal():
        return "127.0.0.1", int(text)
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def parse_backend(text: str) -> tuple[str | None, str, int]:
    """`[NAME=]HOST:PORT` into (name or None, host, port); a clear error otherwise.

    HOST is an IPv4 address, a bracketed IPv6 address (`[::1]:5001`) or a host
    name; PORT is required (a backend has no sensible default port). Names of
    the form `serverN` belong to the servers lbconsole spawns.
    """
    spec = text.strip()
    name, sep, address = spec.partition("=")
    if not sep:
        name, address = "", spec
    elif not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"bad backend name {name!r} in {text!r}: a letter, then letters, digits, "
            f"'_', '.' or '-' (at most 32)")
    elif _SPAWNED.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"backend name {name!r} is reserved for servers lbconsole spawns; pick another")
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"expected [NAME=]HOST:PORT, got {text!r}")
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad port {port!r} in {text!r}: 1-65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad IPv6 address {host!r} in {text!r}") from None
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"bad host {host!r} in {text!r}: write IPv6 addresses in brackets, [::1]:5001")
    elif not _HOSTNAME.fullmatch(host) or (host.replace(".", "").isdecimal()
                                           and not _is_ipv4(host)):
        raise argparse.ArgumentTypeError(f"bad host {host!r} in {text!r}")
    return name or None, host, int(port)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def name_backends(
    specs: list[tuple[str | None, str, int]],
) -> tuple[tuple[str, str, int], ...]:
    """Give unnamed backends `backendN` (N: their place on the command line); names must
    be unique."""
    named = tuple((name or f"backend{i}", host, port)
                  for i, (name, host, port) in enumerate(specs, start=1))
    seen: set[str] = set()
    for name, _, _ in named:
        if name in seen:
            raise ValueError(f"two backends are named {name!r}")
        seen.add(name)
    return named


class _BackendAction(argparse.Action):
    """Append one `--backend`, refusing a name already taken (at parse time, so the
    user gets argparse's usage line and no traceback)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        specs = [*(getattr(namespace, self.dest, None) or []), values]
        try:
            name_backends(specs)
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, specs)


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


def add_scenario_option(parser: argparse.ArgumentParser) -> None:
    """`--scenario FILE|NAME` (serve, and the console when it offers it)."""
    parser.add_argument("--scenario", default=None, metavar="FILE|NAME",
                        help="run this scenario (a TOML file, or a shipped one by name: "
                             "lbconsole scenario --help) against the live balancer once its "
                             "servers are UP; each step and the report go to stdout and the log")


def parse_weight(text: str) -> tuple[str, int]:
    """`NAME=W`, W a whole number from 0 to 256."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value.strip().isdecimal() or int(value) > MAX_WEIGHT:
        raise argparse.ArgumentTypeError(
            f"expected NAME=W with W from 0 to {MAX_WEIGHT} (e.g. server1=3), not {text!r}")
    return name, int(value)


def server_setting(setting: str) -> Callable[[str], object]:
    """An argparse type for one server setting's value (`workers`: a count or `unlimited`,
    as None; `speed`: a factor; `latency`: ms), with the grammar's message when bad."""

    def convert(text: str) -> object:
        value = parse_setting_value(setting, text.strip())
        if isinstance(value, str):
            raise argparse.ArgumentTypeError(value)
        return value

    return convert


def named_setting(setting: str) -> Callable[[str], tuple[str, object]]:
    """An argparse type for `NAME=VALUE`: one server's setting."""
    value_of = server_setting(setting)

    def convert(text: str) -> tuple[str, object]:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected NAME=VALUE (e.g. server3={'0.5' if setting == 'speed' else '20'}), "
                f"not {text!r}")
        return name.strip(), value_of(value)

    return convert


def _whole(low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not text.strip().isdecimal() or int(text) < low:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low}, not {text!r}")
        return int(text)

    return convert


def _fraction(text: str) -> float:
    """`20%` (or `20`) as 0.2."""
    percent = parse_percent(text)
    if percent is None:
        raise argparse.ArgumentTypeError(
            f"expected a percentage from 0 to 100 (e.g. 20%), not {text!r}")
    return percent / 100


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
    g.add_argument("--backend", action=_BackendAction, type=parse_backend, default=s,
                   metavar="[NAME=]HOST:PORT",
                   help="a server lbconsole did not spawn, on this or another host "
                        "(repeatable; NAME defaults to backend1, backend2…)")
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
    g.add_argument("--algorithm", choices=list(ALGORITHMS), default=s, metavar="NAME",
                   help=f"balancing algorithm: {', '.join(ALGORITHMS)} "
                        f"(default {d.algorithm}); live: algo NAME")
    g.add_argument("--weight", type=parse_weight, action="append", default=s,
                   metavar="NAME=W",
                   help="a server's weight, 0-256, default 1; 0 takes it out (repeatable)")
    g.add_argument("--server-workers", type=server_setting("workers"), default=s, metavar="K",
                   help="requests each spawned server works on at once; the others wait "
                        "inside it (default unlimited); live: workers N K")
    g.add_argument("--server-speed", type=named_setting("speed"), action="append", default=s,
                   metavar="NAME=F",
                   help="a spawned server's speed: its work takes work_ms / F (default 1; "
                        "repeatable); live: speed N F")
    g.add_argument("--server-latency", type=named_setting("latency"), action="append",
                   default=s, metavar="NAME=MS",
                   help="ms a spawned server adds to every answer (default 0; repeatable); "
                        "live: latency N MS")
    g.add_argument("--admin-socket", default=s, metavar="PATH",
                   help="the runtime API's unix socket (default: beside the log file, "
                        "loadbalancer.sock; '-' for none)")
    h = parser.add_argument_group("health checks")
    h.add_argument("--check-interval", type=_positive(float), default=s, metavar="S",
                   help=f"seconds between checks (default {d.check_interval:g})")
    h.add_argument("--rise", type=_positive(int), default=s,
                   help=f"good checks to bring a DOWN server UP (default {d.rise})")
    h.add_argument("--fall", type=_positive(int), default=s,
                   help=f"failed checks to take an UP server DOWN (default {d.fall})")
    h.add_argument("--check-timeout", type=_positive(float), default=s, metavar="S",
                   help=f"seconds a check may take (default {d.check_timeout:g})")
    f = parser.add_argument_group("retries and outlier ejection")
    f.add_argument("--retries", type=_whole(0), default=s, metavar="N",
                   help=f"times a request answered with a server fault is sent to another "
                        f"server (default {d.retries})")
    f.add_argument("--retry-budget", type=_fraction, default=s, metavar="P%",
                   help=f"retries allowed, as a share of the last 10 s of requests "
                        f"(default {d.retry_budget * 100:g}%%)")
    f.add_argument("--eject-after", type=_whole(0), default=s, metavar="N",
                   help=f"server faults in a row that eject a server (default {d.eject_after}"
                        f"; 0: never)")
    f.add_argument("--eject-time", type=_positive(float), default=s, metavar="S",
                   help=f"first ejection's length, doubled on each repeat "
                        f"(default {d.eject_time:g})")
    f.add_argument("--max-ejected", type=_fraction, default=s, metavar="P%",
                   help=f"largest share of the servers ejected at once "
                        f"(default {d.max_ejected * 100:g}%%)")
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
    """The options as a RuntimeConfig; ValueError with a message for a bad combination."""
    d = RuntimeConfig()
    get = vars(args).get
    log_file = get("log_file", d.log_file)
    admin_socket = get("admin_socket", d.admin_socket)
    backends = name_backends(get("backend", []) or [])
    servers = get("servers", None)
    if servers is None:
        servers = 0 if backends else d.servers
    weights = dict(get("weight", []) or [])
    spawned = {f"server{i}" for i in range(1, servers + 1)}
    _known("--weight", weights, spawned | {name for name, _, _ in backends})
    speeds = dict(get("server_speed", []) or [])
    latencies = dict(get("server_latency", []) or [])
    _known("--server-speed", speeds, spawned, " that lbconsole starts")
    _known("--server-latency", latencies, spawned, " that lbconsole starts")
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
        algorithm=get("algorithm", d.algorithm),
        weights=weights,
        server_workers=get("server_workers", d.server_workers),
        server_speeds=speeds,
        server_delays={name: ms / 1000.0 for name, ms in latencies.items()},
        retries=get("retries", d.retries),
        retry_budget=get("retry_budget", d.retry_budget),
        eject_after=get("eject_after", d.eject_after),
        eject_time=get("eject_time", d.eject_time),
        max_ejected=get("max_ejected", d.max_ejected),
        admin_socket=None if admin_socket == "-" else admin_socket,
    )


def _known(option: str, given: dict[str, object], names: set[str], which: str = "") -> None:
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"{option} {unknown[0]}=…: there is no server {unknown[0]!r}{which} "
                         f"(the servers are {', '.join(sorted(names)) or 'none'})")

"""The HAProxy configuration lbconsole writes for `--engine haproxy`, and its request log format.

One frontend on the console's listening socket (inherited as `fd@N`, so
`--port 0` works and a restart of HAProxy never frees the port), one backend
`servers` in `mode http` balancing each request (`balance roundrobin`) over the
calculation servers' HTTP ports. Health checks use the console's interval,
rise and fall (`option httpchk GET /ping`); `observe layer4` with
`on-error mark-down` takes a server DOWN at the first refused or dropped
connection, as the built-in engine does; failed attempts are retried
(`retry-on conn-failure empty-response response-timeout`) on another server
(`option redispatch 1`). The admin stats socket (mode 600, level admin) is the
runtime API; every request is logged, raw, to HAProxy's stdout in `LOG_FORMAT`.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKEND = "servers"
"""The HAProxy backend holding the calculation servers (`servers/server1`...)."""

LOG_TAG = "lbreq"
LOG_FORMAT = f"{LOG_TAG} %ci:%cp %s %ST %Tw %Tc %Tr %Ta %rc %tsc %B"
"""One line per request: client, server that answered (`<NOSRV>` when none), status,
queue/connect/response/total times in ms (-1 when not reached), retries (`+N`
when redispatched), termination state, bytes sent to the client."""

ERRORS = ((400, "bad request"), (408, "request timeout"), (502, "bad answer from the server"),
          (503, "no server available"), (504, "server timeout"))
"""HAProxy's own error answers, as JSON like every other answer (it sends HTML otherwise)."""

ALGORITHMS = {"roundrobin": "roundrobin", "leastconn": "leastconn", "random": "random",
              "weighted": "roundrobin"}
"""The console's algorithms in HAProxy's words (its roundrobin honours weights smoothly)."""


def check_algorithm(name: str) -> str:
    """`name` if HAProxy has it; KeyError naming the ones it has (p2c is the built-in
    engine's own)."""
    if name in ALGORITHMS:
        return name
    have = "roundrobin, leastconn, random or weighted (roundrobin with weights)"
    if name == "p2c":
        raise KeyError(f"p2c is not an HAProxy algorithm: with --engine haproxy use {have}")
    raise KeyError(f"unknown algorithm {name!r} (with --engine haproxy: {have})")


@dataclass(frozen=True)
class ServerEntry:
    """One calculation server as HAProxy sees it."""

    name: str
    host: str
    port: int | None
    """The server's HTTP port; None when it is not running (then it starts in maint)."""
    weight: int = 1


@dataclass(frozen=True)
class HaproxySettings:
    """Everything the configuration depends on."""

    bind: str
    """`fd@N` (a socket we listen on and pass down) or `HOST:PORT`."""
    socket_path: str
    servers: tuple[ServerEntry, ...] = ()
    check_interval: float = 1.0
    rise: int = 2
    fall: int = 3
    check_timeout: float = 1.0
    connect_timeout: float = 1.0
    request_timeout: float = 2.0
    queue_timeout: float = 10.0
    client_timeout: float = 120.0
    retries: int = 3
    maxconn: int = 4096
    algorithm: str = "roundrobin"
    threads: int | None = None
    """nbthread (None: HAProxy's default)."""
    log: bool = True
    hard_stop_after: float = 10.0
    """How long a soft-stopped HAProxy may finish its requests before it exits."""


def ms(seconds: float) -> str:
    """A duration in HAProxy's syntax, in whole milliseconds (at least 1)."""
    return f"{max(1, round(seconds * 1000))}ms"


def server_options(s: HaproxySettings, weight: int = 1) -> str:
    """The options of every server line (also used by `add server` at run time)."""
    return (f"check inter {ms(s.check_interval)} rise {s.rise} fall {s.fall} "
            f"observe layer4 error-limit 1 on-error mark-down weight {weight}")


def server_line(s: HaproxySettings, entry: ServerEntry) -> str:
    address = f"{entry.host}:{entry.port}" if entry.port else "127.0.0.1:1"
    line = f"    server {entry.name} {address} {server_options(s, entry.weight)}"
    return line if entry.port else line + " disabled"


def render(s: HaproxySettings) -> str:
    """The whole configuration file."""
    if s.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {s.algorithm!r}")
    glob = [
        "global",
        f"    maxconn {s.maxconn}",
        f"    stats socket {s.socket_path} mode 600 level admin",
        "    stats timeout 30s",
        f"    hard-stop-after {ms(s.hard_stop_after)}",
    ]
    if s.threads:
        glob.append(f"    nbthread {s.threads}")
    if s.log:
        glob.append("    log stdout format raw local0")
    defaults = [
        "defaults",
        "    mode http",
        f"    timeout connect {ms(s.connect_timeout)}",
        f"    timeout client {ms(s.client_timeout)}",
        f"    timeout server {ms(s.request_timeout)}",
        f"    timeout queue {ms(s.queue_timeout)}",
        f"    timeout check {ms(s.check_timeout)}",
        "    timeout http-keep-alive 60s",
        "    timeout http-request 10s",
        "    option http-keep-alive",
        f"    retries {s.retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
    ]
    defaults += [f"    http-error status {status} content-type application/json "
                 f"string '{{\"error\":\"{message}\"}}'" for status, message in ERRORS]
    if s.log:
        defaults += ["    log global", f'    log-format "{LOG_FORMAT}"']
    frontend = ["frontend lbconsole", f"    bind {s.bind}", f"    default_backend {BACKEND}"]
    backend = [
        f"backend {BACKEND}",
        f"    balance {ALGORITHMS[s.algorithm]}",
        "    option httpchk GET /ping",
        "    http-check expect status 200",
        *(server_line(s, e) for e in s.servers),
    ]
    head = "# Written by lbconsole (--engine haproxy); rewritten on every start.\n"
    return head + "\n".join(glob + defaults + frontend + backend) + "\n"

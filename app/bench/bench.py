"""`lbconsole bench`: throughput and latency of the balancer against direct access and HAProxy.

Starts its own calculation servers and every target's balancer, waits until
each is at rest, then drives the same load at each target in turn, round after
round, from a separate generator process (`python -m app.bench.loadgen`), every
answer checked. Then every target measures ping-pong latency at once, taking
turns. It prints a table (or one JSON object with `--json`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from app.bench.procs import (
    BenchError,
    Processes,
    Running,
    children_cpu_seconds,
    cpu_seconds,
    haproxy_path,
    machine,
    machine_busy_seconds,
    peak_rss_mb,
    settle,
    start_balancer,
    start_haproxy,
    start_servers,
)
from app.bench.report import add_ratios, goals, render_table

TARGETS = ("direct", "serve", "serve-leastconn", "serve-p2c", "serve-nolog", "console",
           "haproxy", "haproxy-http")
HTTP_TARGETS = frozenset({"haproxy-http"})
HTTP_SHARE = 10
"""HTTP targets get requests / HTTP_SHARE of each round."""
"""Targets the generator drives over HTTP/1.1 keep-alive instead of request lines."""
ALGORITHM_TARGETS = {"serve-leastconn": "leastconn", "serve-p2c": "p2c"}
"""`serve` as users run it, with another balancing algorithm (`serve` is roundrobin)."""
DEFAULT_REQUESTS = 1_000_000
START_TIMEOUT = 20.0
PINGPONG_SLICE = 100
"""Ping-pong requests per target per turn."""
WARM_UP_REQUESTS = 20_000
"""Requests per target before the first round, not measured."""


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}")
    return list(dict.fromkeys(names))


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] + (
        " Targets: direct (the generator spreads its connections over the servers itself: "
        "the ceiling), serve (`lbconsole serve` with per-request logging, as users run it), "
        "serve-leastconn and serve-p2c (the same with --algorithm leastconn / p2c, measured "
        "against serve's roundrobin), serve-nolog (--no-request-log), console (the balancer "
        "inside the headless console, when that exists), haproxy (HAProxy in tcp mode, when "
        "on PATH), haproxy-http (HAProxy in http mode, per request, over the servers' HTTP "
        "ports). Every target uses the very same server processes.")
    parser.add_argument("-c", "--connections", type=_positive_int, default=8,
                        help="client connections of the generator (default 8)")
    parser.add_argument("-d", "--depth", type=_positive_int, default=64,
                        help="requests each connection keeps in flight (default 64)")
    parser.add_argument("-n", "--requests", type=_positive_int, default=DEFAULT_REQUESTS,
                        help=f"requests per target (default {DEFAULT_REQUESTS:,}: the whole "
                             "default run, every target, takes 30-45 s on 2 cores)")
    parser.add_argument("--targets", type=_targets, default=None, metavar="LIST",
                        help=f"comma list of {', '.join(TARGETS)} (default: all available)")
    parser.add_argument("--servers", type=_positive_int, default=3,
                        help="calculation servers to start (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="longest one load run may take before it fails (default 120)")
    parser.add_argument("--stall", type=float, default=5.0, metavar="S",
                        help="a run with no answer for this long fails (default 5)")
    parser.add_argument("--pingpong-requests", type=_positive_int, default=5000, metavar="N",
                        help="ping-pong requests per target (1 connection, 1 in flight, "
                             "every target alive and taking turns; default 5000)")
    parser.add_argument("--rounds", type=_positive_int, default=5,
                        help="split the requests of each target over this many rounds, the "
                             "targets (all started once, at rest) taking turns; each figure is "
                             "that of the median round (default 5: a shared machine's noise "
                             "hits every target alike)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the figures instead of the table")


def bench_main(args: argparse.Namespace) -> int:
    wanted = args.targets or list(TARGETS)
    settings = {
        "connections": args.connections, "depth": args.depth, "requests": args.requests,
        "servers": args.servers, "pingpong_requests": args.pingpong_requests,
        "timeout": args.timeout, "shared_servers": True, "rounds": args.rounds,
        "pingpong_slice": PINGPONG_SLICE,
    }
    report: dict = {"machine": machine(), "settings": settings, "targets": {}}
    say = _progress(args.json)
    with _terminate_as_interrupt(), _workdir() as workdir:
        procs = Processes(workdir)
        try:
            say(f"starting {args.servers} calculation servers")
            servers = start_servers(procs, args.servers, START_TIMEOUT,
                                    http=bool(HTTP_TARGETS & set(wanted)))
            rounds: dict[str, list[dict]] = {name: [] for name in wanted}
            running: dict[str, Running | None] = {}
            for name in wanted:
                say(f"{name}: starting")
                started = start_target(name, procs, servers, workdir)
                if isinstance(started, dict):
                    rounds[name].append(started)  # failed or skipped: not measured
                else:
                    running[name] = started
            # Each balancer is measured at rest, not while it is still starting up
            # (the console's Textual start-up runs on after it listens).
            settled = {name: settle(b.pid) for name, b in running.items() if b is not None}
            per_round = argparse.Namespace(**vars(args))
            per_round.requests = max(1, args.requests // args.rounds)
            order = list(running)
            # A short warm-up, not measured: the first round should not be the one
            # that meets cold servers and fresh connections.
            warm_up = argparse.Namespace(**vars(per_round))
            warm_up.requests = min(WARM_UP_REQUESTS, per_round.requests)
            for name in order:
                run_round(name, running[name], procs, servers, warm_up)
            for index in range(args.rounds):
                shift = index % max(1, len(order))
                for name in order[shift:] + order[:shift]:  # a different target goes first
                    if rounds[name] and rounds[name][-1]["status"] != "ok":
                        continue  # failed once: not again
                    say(f"{name}: round {index + 1} of {args.rounds}")
                    result = run_round(name, running[name], procs, servers, per_round)
                    rounds[name].append(result)
                    say(f"{name}: {_brief(result)}")
            for name in wanted:
                result = report["targets"][name] = _median_round(rounds[name])
                balancer = running.get(name)
                if balancer is not None and result["status"] == "ok":
                    result["peak_rss_mb"] = peak_rss_mb(balancer.pid)
                    result["settle_s"] = round(settled[name], 2)
            measured = [n for n in wanted if report["targets"][n]["status"] == "ok"]
            if measured:
                say(f"ping-pong: {', '.join(measured)} taking turns")
                pingpong = run_pingpong(measured, running, procs, servers, args)
                for name in measured:
                    result = report["targets"][name]
                    result["pingpong"] = pingpong[name]
                    if not pingpong[name].get("ok"):
                        result["status"] = "failed"
                        result["reason"] = f"ping-pong: {pingpong[name].get('error')}"
        except BenchError as exc:
            report["error"] = str(exc)
        finally:
            procs.stop_all()
    add_ratios(report)
    report["goals"] = goals(report["targets"])
    failed = [n for n, r in report["targets"].items() if r["status"] == "failed"]
    report["ok"] = not failed and "error" not in report
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(render_table(report), flush=True)
    return 0 if report["ok"] else 1


def start_target(name: str, procs: Processes, servers: list[Running],
                 workdir: Path) -> Running | dict | None:
    """Start a target's balancer (None for direct); a result dict when it cannot run."""
    try:
        balancer = _start_target(name, procs, servers, workdir)
    except BenchError as exc:
        if name == "console":
            return {"status": "skipped", "reason": "headless console not available",
                    "detail": str(exc)}
        return {"status": "failed", "reason": str(exc)}
    if name in ("haproxy", "haproxy-http") and balancer is None:
        return {"status": "skipped", "reason": "haproxy not found on PATH"}
    return balancer


def run_round(name: str, balancer: Running | None, procs: Processes, servers: list[Running],
              args: argparse.Namespace) -> dict:
    """One load run against one target; the figures as a dict."""
    if balancer is not None and balancer.proc.poll() is not None:
        return {"status": "failed", "reason": f"{name} exited with code "
                                              f"{balancer.proc.returncode}: {balancer.tail()}"}
    addresses = [s.address for s in servers] if balancer is None else [balancer.address]
    watched = {s.name: s.pid for s in servers}
    if balancer is not None:
        watched["balancer"] = balancer.pid
    try:
        before = _cpu_snapshot(watched)
        # HTTP/1.1 targets run at a twentieth of the line protocol's rate (one request
        # per connection at a time): they get a tenth of the requests, so a default
        # run stays short; a rate needs no more.
        requests = max(1, args.requests // HTTP_SHARE) if name in HTTP_TARGETS else args.requests
        load = _generate(procs, addresses, args.connections, args.depth, requests, args,
                         http=name in HTTP_TARGETS)
        after = _cpu_snapshot(watched)
    except BenchError as exc:
        return {"status": "failed", "reason": str(exc)}
    return _figures(name, load, before, after, servers)


def run_pingpong(names: list[str], running: dict[str, Running | None], procs: Processes,
                 servers: list[Running], args: argparse.Namespace) -> dict[str, dict]:
    """Latency at one request in flight, every target alive at once and taking turns
    in slices (see `loadgen.ping_pong`); added = a target's p50 minus direct's."""
    pairs = [("direct", servers[0].address)] + [
        (name, balancer.address) for name in names
        if name != "direct" and (balancer := running.get(name)) is not None]
    command = [sys.executable, "-m", "app.bench.loadgen", "-n", str(args.pingpong_requests),
               "--slice", str(PINGPONG_SLICE), "--timeout", str(args.timeout),
               "--stall", str(args.stall)]
    for name, address in pairs:
        flag = "--pingpong-http" if name in HTTP_TARGETS else "--pingpong"
        command += [flag, f"{name}={address}"]
    try:
        report = procs.run_json("pingpong", command, args.timeout + 30)
    except BenchError as exc:
        report = {"targets": {}, "error": str(exc)}
    out: dict[str, dict] = {}
    measured = report.get("targets", {})
    base = (measured.get("direct") or {}).get("p50_ms")
    for name, result in measured.items():
        figures = {k: result.get(k) for k in ("p50_ms", "p99_ms", "req_per_s", "requests",
                                             "answered", "wrong", "errors", "ok")}
        if not result.get("ok"):
            figures["error"] = result.get("error") or report.get("error") or "failed"
        p50 = result.get("p50_ms")
        if name != "direct" and base is not None and p50 is not None:
            figures["direct_p50_ms"] = base
            figures["added_p50_ms"] = round(p50 - base, 4)
        out[name] = figures
    for name in names:
        out.setdefault(name, {"ok": False, "error": report.get("error") or "not measured"})
    return out


def _start_target(name: str, procs: Processes, servers: list[Running],
                  workdir: Path) -> Running | None:
    log = str(workdir / f"{name}.log")
    if name == "direct":
        return None
    if name == "serve":
        return start_balancer(procs, name, ["serve", "--log-file", log], servers, START_TIMEOUT)
    if name in ALGORITHM_TARGETS:
        return start_balancer(procs, name, ["serve", "--log-file", log, "--algorithm",
                                            ALGORITHM_TARGETS[name]], servers, START_TIMEOUT)
    if name == "serve-nolog":
        return start_balancer(procs, name, ["serve", "--log-file", log, "--no-request-log"],
                              servers, START_TIMEOUT)
    if name == "console":
        return start_balancer(procs, name, ["--headless", "--log-file", log], servers,
                              START_TIMEOUT)
    if name == "haproxy":
        if haproxy_path() is None:
            return None
        return start_haproxy(procs, servers, START_TIMEOUT)
    if name == "haproxy-http":
        if haproxy_path() is None:
            return None
        return start_haproxy(procs, servers, START_TIMEOUT, http=True)
    raise BenchError(f"unknown target {name!r}")


def _generate(procs: Processes, addresses: list[str], connections: int, depth: int,
              requests: int, args: argparse.Namespace, http: bool = False) -> dict:
    command = [sys.executable, "-m", "app.bench.loadgen", "-c", str(connections),
               "-d", str(depth), "-n", str(requests), "--timeout", str(args.timeout),
               "--stall", str(args.stall), "--json", *(["--http"] if http else [])]
    for address in addresses:
        command += ["--target", address]
    return procs.run_json("loadgen", command, args.timeout + 30)


def _cpu_snapshot(watched: dict[str, int]) -> dict[str, float | None]:
    """CPU used so far by each watched process, by finished children, and by the machine."""
    snapshot = {name: cpu_seconds(pid) for name, pid in watched.items()}
    snapshot["@children"] = children_cpu_seconds()
    snapshot["@machine"] = machine_busy_seconds()
    snapshot["@wall"] = time.monotonic()
    return snapshot


def _figures(name: str, load: dict, before: dict, after: dict,
             servers: list[Running]) -> dict:
    elapsed = load.get("elapsed") or 0.0
    answered = load.get("answered") or 0

    def used(key: str) -> float | None:
        a, b = before.get(key), after.get(key)
        return None if a is None or b is None else b - a

    server_cpu = [used(s.name) for s in servers]
    servers_total = sum(c for c in server_cpu if c is not None)
    balancer_cpu = used("balancer")
    # Whatever else ran on the machine meanwhile (other work, the kernel's share of the
    # network path not charged to a process): high values mean noisy figures.
    machine_cpu, ours = used("@machine"), used("@children")
    others = None
    if machine_cpu is not None and ours is not None:
        others = machine_cpu - ours - servers_total - (balancer_cpu or 0.0)
    ok = load.get("ok")
    problems = [f"load: {load['error']}"] if load.get("error") else []
    for key in ("errors", "wrong", "duplicates", "missing"):
        if load.get(key):
            problems.append(f"load: {load[key]} {key}")
    result = {
        "status": "ok" if ok else "failed",
        "req_per_s": load.get("req_per_s"),
        "p50_ms": load.get("p50_ms"),
        "p99_ms": load.get("p99_ms"),
        "peak_rss_mb": None,
        "balancer_cpu_cores": _share(balancer_cpu, elapsed),
        "balancer_cpu_us_per_req": _per_request(balancer_cpu, answered),
        "servers_cpu_cores": [_share(c, elapsed) for c in server_cpu],
        "servers_cpu_us_per_req": _per_request(servers_total, answered),
        "generator_cpu_cores": _share(load.get("cpu_s"), elapsed),
        "generator_cpu_us_per_req": load.get("cpu_us_per_req"),
        "others_cpu_cores": _share(max(others, 0.0) if others is not None else None,
                                   used("@wall") or 0.0),
        "load": load,
    }
    if problems:
        result["reason"] = "; ".join(problems)
    if name == "haproxy":
        result["note"] = ("HAProxy in tcp mode picks a server per connection, not per request; "
                          "one thread (nbthread 1)")
    if name == "haproxy-http":
        result["note"] = ("HAProxy in http mode picks a server per request over the servers' "
                          "HTTP/1.1 ports, keep-alive; it answers a connection's pipelined "
                          "requests one at a time; one thread (nbthread 1)")
    return result


def _median_round(results: list[dict]) -> dict:
    """The round with the median rate stands for the target (its figures stay
    consistent with each other); every round's rate is kept alongside."""
    if not results or results[-1]["status"] != "ok":
        return results[-1] if results else {"status": "failed", "reason": "not run"}
    ordered = sorted(results, key=lambda r: r.get("req_per_s") or 0.0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_req_per_s"] = [r.get("req_per_s") for r in results]
    return chosen


def _share(cpu: float | None, elapsed: float) -> float | None:
    return round(cpu / elapsed, 2) if cpu is not None and elapsed > 0 else None


def _per_request(cpu: float | None, answered: int) -> float | None:
    return round(cpu / answered * 1e6, 3) if cpu is not None and answered else None


def _brief(result: dict) -> str:
    if result["status"] != "ok":
        return f"{result['status']}: {result.get('reason', '')}"
    return f"{result['req_per_s']:,.0f} req/s, p50 {result['p50_ms']} ms"


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    started = time.monotonic()

    def say(text: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:5.1f}s] {text}", file=sys.stderr, flush=True)

    return say


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lbconsole-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the bench like Ctrl-C does: through the `finally` that stops everything."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""`compare`: the same seeded batch under each algorithm in turn, on the same servers.

Each algorithm gets the very same requests (operations, operands, `work_ms`,
order: `batch.make_batch` with one seed), sent with the same concurrency to
the same running servers; between runs the balancer is left to settle (nothing
in flight). The result is one row per algorithm: throughput, p50/p95/p99/max
latency, each server's share and the errors. `compare_live` runs on a live
Runtime (the console, `lbconsole ctl compare …`); `compare_main` is
`lbconsole compare`, which starts its own balancer and servers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

import orjson

from app.config import named_setting, parse_weight, server_setting
from app.control.batch import BatchResult, make_batch, run_measured
from app.control.dispatch import Reply, connect_host
from app.control.grammar import DEFAULT_CONCURRENCY, Compare, Work, parse_work
from balancer.algorithms import ALGORITHMS

if TYPE_CHECKING:
    from app.runtime import Runtime

SETTLE_TIMEOUT = 10.0
WARMUP = 500
"""Requests sent unmeasured before the first algorithm's run."""


def compare_table(results: dict[str, BatchResult]) -> str:
    """One aligned row per algorithm, plain text (the console draws its own screen)."""
    servers = sorted({name for r in results.values() for name in r.per_server})
    head = ["algorithm", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
            *(f"{s} %" for s in servers), "errors"]
    rows = [head]
    for name, r in results.items():
        p = r.percentiles()
        shares = r.shares()
        rows.append([name, f"{r.rate:,.0f}",
                     *("-" if p[k] is None else f"{p[k]:.2f}"
                       for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                     *(f"{shares.get(s, 0) * 100:.1f}" for s in servers),
                     f"{r.errors:,}" + (f" ({r.failure})" if r.failure else "")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def compare_data(command: Compare, results: dict[str, BatchResult], seed: int) -> dict:
    return {"count": command.count, "work": command.work.text() if command.work else None,
            "concurrency": command.concurrency, "seed": seed,
            "results": {name: r.as_dict() for name, r in results.items()}}


async def settle(runtime: Runtime, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait (bounded) until the balancer holds no request."""
    deadline = time.monotonic() + timeout
    while runtime.balancer.inflight_total() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def compare_live(runtime: Runtime, command: Compare, seed: int = 1) -> Reply:
    """Run the batch once per algorithm on `runtime`, then put its algorithm back."""
    balancer = runtime.balancer
    original = balancer.algorithm_name
    lines = make_batch(command.count, command.work, seed)
    host, port = connect_host(runtime), balancer.port
    results: dict[str, BatchResult] = {}
    runtime.log.event(f"compare: {command.count:,} requests under "
                      f"{', '.join(command.algorithms)}")
    try:
        # Unmeasured, so the first algorithm does not pay for cold connections and caches.
        await run_measured(host, port, lines[:WARMUP], command.concurrency)
        for name in command.algorithms:
            if balancer.algorithm_name != name:
                runtime.set_algorithm(name)
            await settle(runtime)
            results[name] = await run_measured(host, port, lines, command.concurrency)
    finally:
        if balancer.algorithm_name != original:
            runtime.set_algorithm(original)
    ok = all(r.ok for r in results.values())
    return Reply(ok, compare_table(results), compare_data(command, results, seed))


# ---------------------------------------------------------------- lbconsole compare


def _algorithms(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm {unknown[0] if unknown else text!r} "
            f"(use {', '.join(ALGORITHMS)})")
    return names


def _work(text: str) -> Work:
    work = parse_work(text)
    if isinstance(work, str):
        raise argparse.ArgumentTypeError(work)
    return work


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algorithms", type=_algorithms, default=tuple(ALGORITHMS),
                        metavar="A,B,…",
                        help=f"comma-separated, in this order (default {','.join(ALGORITHMS)})")
    parser.add_argument("-n", "--requests", type=int, default=20_000, metavar="N",
                        help="requests per algorithm (default 20000)")
    parser.add_argument("--work", type=_work, default=None, metavar="A-B|exp:M",
                        help="simulated work per request, ms (default none)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="C",
                        help=f"requests in flight (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--servers", type=int, default=3, metavar="N",
                        help="calculation servers to start (default 3)")
    parser.add_argument("--server-workers", type=server_setting("workers"), default=None,
                        metavar="K", help="workers per server (default unlimited)")
    parser.add_argument("--server-speed", type=named_setting("speed"), action="append",
                        default=[], metavar="NAME=F",
                        help="a server's speed factor (repeatable)")
    parser.add_argument("--weight", type=parse_weight, action="append", default=[],
                        metavar="NAME=W", help="a server's weight for weighted (repeatable)")
    parser.add_argument("--seed", type=int, default=1,
                        help="the batch's seed: the same seed, the same requests (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


async def _compare(args: argparse.Namespace) -> int:
    from app.runtime import Runtime, RuntimeConfig

    if (not 0 < args.requests <= 10_000_000 or not 1 <= args.concurrency <= 4096
            or not 1 <= args.servers <= 64):
        print("lbconsole compare: -n is from 1 to 10,000,000, --concurrency from 1 to 4096 "
              "and --servers from 1 to 64", file=sys.stderr)
        return 2
    config = RuntimeConfig(port=0, servers=args.servers, log_file=None, log_requests=False,
                           admin_socket=None, weights=dict(args.weight),
                           server_workers=args.server_workers,
                           server_speeds=dict(args.server_speed))
    runtime = Runtime(config)
    try:
        await runtime.balancer.start()
        await runtime.start_servers()
        if not await runtime.wait_until_up(timeout=20.0):
            print("lbconsole compare: the servers did not come up", file=sys.stderr)
            return 1
        for name in [s for s, _ in [*args.weight, *args.server_speed]]:
            runtime.resolve(name)
        command = Compare(args.algorithms, args.requests, args.work, args.concurrency)
        reply = await compare_live(runtime, command, seed=args.seed)
    except (KeyError, ValueError, OSError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"lbconsole compare: {text}", file=sys.stderr)
        return 1
    finally:
        await runtime.stop(grace=1.0)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(reply.data) + b"\n")
    else:
        print(reply.message)
    return 0 if reply.ok else 1


def compare_main(args: argparse.Namespace) -> int:
    from balancer import eventloop

    return eventloop.run(_compare(args))

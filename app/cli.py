"""`lbconsole` command line: the console (default), `serve`, `client` and `bench`."""

from __future__ import annotations

import argparse
import sys

from app.config import add_runtime_options, engine_of, runtime_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbconsole",
        description="Round-robin load balancer for calculation servers, with a terminal console.",
    )
    add_runtime_options(parser)
    parser.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the balancer and its servers without a screen")
    add_runtime_options(serve)
    serve.add_argument("--stats-interval", type=float, default=0.0, metavar="S",
                       help="print a one-line status every S seconds (0: never)")

    client = sub.add_parser("client", help="the terminal client: type requests, get answers")
    client.add_argument("address", nargs="?", default="127.0.0.1:5001", metavar="HOST:PORT")
    client.add_argument("-q", "--quiet", action="store_true",
                        help="for random batches print only the summary")
    client.add_argument("--json", action="store_true", help="print answers as raw JSON lines")
    client.add_argument("--http", action="store_true",
                        help="speak HTTP/1.1 keep-alive (to `serve --engine haproxy`)")
    client.add_argument("--window", type=int, default=1024,
                        help="requests kept in flight by random batches (default 1024)")

    bench = sub.add_parser("bench", help="measure throughput and latency against the targets")
    from app.bench.bench import add_bench_options

    add_bench_options(bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve" and engine_of(args) == "haproxy":
            from app.engines.serve import serve_main as haproxy_serve

            return haproxy_serve(runtime_config(args), args.stats_interval)
        if args.command == "serve":
            from app.serve import serve_main

            return serve_main(runtime_config(args), args.stats_interval)
        if args.command == "client":
            from app.terminal_client import client_main

            return client_main(args.address, quiet=args.quiet, raw=args.json, window=args.window,
                               http=args.http)
        if args.command == "bench":
            from app.bench.bench import bench_main

            return bench_main(args)
        from app.console import console_main

        if engine_of(args) == "haproxy":
            from app.engines.haproxy_process import HaproxyMissing, find_haproxy

            try:
                find_haproxy()
            except HaproxyMissing as exc:
                print(f"lbconsole: {exc}", file=sys.stderr)
                return 1
        return console_main(runtime_config(args), headless=args.headless,
                            engine=engine_of(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

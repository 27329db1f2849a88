"""`lbconsole` command line: the console (default), `serve`, `server`, `client`, `ctl`,
`compare`, `web` and `bench`."""

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
    from app.config import add_scenario_option

    add_scenario_option(parser)
    parser.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the balancer and its servers without a screen")
    add_runtime_options(serve)
    serve.add_argument("--stats-interval", type=float, default=0.0, metavar="S",
                       help="print a one-line status every S seconds (0: never)")
    add_scenario_option(serve)

    scenario = sub.add_parser(
        "scenario", help="run a scenario (timed faults and load, with checks) headless, on "
                         "servers it starts; exit status 1 when a check fails")
    from app.control.scenario_cli import add_scenario_options

    add_scenario_options(scenario)

    server = sub.add_parser("server", help="run one calculation server (on any host)")
    from app.server_main import add_server_options

    add_server_options(server)

    client = sub.add_parser("client", help="the terminal client: type requests, get answers")
    client.add_argument("address", nargs="?", default="127.0.0.1:5001", metavar="HOST:PORT")
    client.add_argument("-q", "--quiet", action="store_true",
                        help="for random batches print only the summary")
    client.add_argument("--json", action="store_true", help="print answers as raw JSON lines")
    client.add_argument("--http", action="store_true",
                        help="speak HTTP/1.1 keep-alive (to `serve --engine haproxy`)")
    client.add_argument("--window", type=int, default=1024,
                        help="requests kept in flight by random batches (default 1024)")

    from app.control.grammar import help_text

    ctl = sub.add_parser(
        "ctl", help="send one command to a running lbconsole's runtime socket",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands (N: a row number or a server name):\n" + help_text())
    ctl.add_argument("--socket", default=None, metavar="PATH",
                     help="the admin socket (default $LBCONSOLE_SOCKET, else "
                          "loadbalancer.sock here)")
    ctl.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    ctl.add_argument("--timeout", type=float, default=300.0, metavar="S",
                     help="seconds to wait for the answer (default 300)")
    ctl.add_argument("words", nargs="+", metavar="COMMAND",
                     help="a command as typed in the console: kill 2, show servers, help; "
                          "- reads one per line from stdin")

    compare = sub.add_parser("compare", help="the same seeded batch under each algorithm, "
                                             "side by side, on servers it starts")
    from app.control.compare import add_compare_options

    add_compare_options(compare)

    web = sub.add_parser("web", help="serve the console in a browser (textual-serve)")
    add_runtime_options(web)
    web.add_argument("--web-host", default="127.0.0.1", metavar="H",
                     help="address the web server listens on (default 127.0.0.1; anything "
                          "else lets that network drive the console, with no login)")
    web.add_argument("--web-port", type=int, default=8000, metavar="P",
                     help="web server port (default 8000; 0 picks a free one)")

    bench = sub.add_parser("bench", help="measure throughput and latency against the targets")
    from app.bench.bench import add_bench_options

    add_bench_options(bench)
    return parser


def web_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `web` subcommand's parser: its options are what `web` passes to each console."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["web"]
    raise LookupError("no web subcommand")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in (None, "serve"):
            try:
                config = runtime_config(args)
            except ValueError as exc:
                parser.error(str(exc))
            if engine_of(args) == "haproxy":
                from app.engines.haproxy_config import check_algorithm

                try:
                    check_algorithm(config.algorithm)
                except KeyError as exc:  # p2c is the built-in engine's own
                    print(f"lbconsole: --algorithm: {exc.args[0]}", file=sys.stderr)
                    return 1
        if args.command == "serve" and engine_of(args) == "haproxy":
            from app.engines.serve import serve_main as haproxy_serve

            return haproxy_serve(config, args.stats_interval)
        if args.command == "serve":
            from app.control.scenario_cli import scenario_of
            from app.serve import serve_main

            return serve_main(config, args.stats_interval, scenario_of(parser, args))
        if args.command == "server":
            from app.server_main import server_main

            return server_main(args)
        if args.command == "client":
            from app.terminal_client import client_main

            return client_main(args.address, quiet=args.quiet, raw=args.json, window=args.window,
                               http=args.http)
        if args.command == "ctl":
            from app.control.ctl import ctl_main

            return ctl_main(args.socket, args.words, raw=args.json, timeout=args.timeout)
        if args.command == "scenario":
            from app.control.scenario_cli import scenario_main

            return scenario_main(args)
        if args.command == "compare":
            from app.control.compare import compare_main

            return compare_main(args)

        if args.command == "web":
            from app.web import web_main

            return web_main(web_parser(parser), args)
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
        from app.control.scenario_cli import scenario_of

        return console_main(config, headless=args.headless, engine=engine_of(args),
                            scenario=scenario_of(parser, args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

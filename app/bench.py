"""`lbconsole bench` (work in progress)."""

from __future__ import annotations

import argparse


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--requests", type=int, default=1_000_000)


def bench_main(args: argparse.Namespace) -> int:
    raise SystemExit("lbconsole bench: not built yet")

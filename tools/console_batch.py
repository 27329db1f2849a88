"""Time `random N` typed into the console (headless, Pilot-driven) and report peak RSS.

    .venv/bin/python tools/console_batch.py 1000000 [--size 120x40] [--window 2048]

Compare with `lbconsole serve --port 0` + `printf 'random N\\n' | lbconsole client -q`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import source as source_module
from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from balancer import eventloop


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(count: int, size: tuple[int, int], log_requests: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = RuntimeConfig(port=0, log_file=str(Path(tmp) / "loadbalancer.log"),
                               log_requests=log_requests)
        source = LiveSource(config)
        app = ConsoleApp(source)
        async with app.run_test(size=size) as pilot:
            deadline = time.monotonic() + 20
            while not (app.stats and app.stats.servers_up == 3):
                assert time.monotonic() < deadline, "servers did not come up"
                await pilot.pause(0.05)
            await pilot.press("slash")
            await pilot.press(*f"random {count}", "enter")
            started = time.monotonic()
            ticks = 0
            while app.operator.progress is None or not app.operator.progress.done:
                await pilot.pause(0.1)
                ticks += 1
            elapsed = time.monotonic() - started
            await pilot.pause(0.3)
            message = str(app.query_one("#message").render())
            print(f"console batch: {message}")
            print(f"console batch: wall {elapsed:.2f} s, {count / elapsed:,.0f} req/s "
                  f"(window {source_module.BATCH_WINDOW}, size {size[0]}x{size[1]}, "
                  f"request log {'on' if log_requests else 'off'})")
            await pilot.press("escape", "q")
            await pilot.pause(0.5)
        await source.stop()
    print(f"peak RSS (VmHWM): {peak_rss_mb():.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--window", type=int, default=source_module.BATCH_WINDOW)
    parser.add_argument("--no-request-log", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    source_module.BATCH_WINDOW = args.window
    eventloop.run(run(args.count, (width, height), not args.no_request_log))


if __name__ == "__main__":
    main()

"""Time `random N` typed into the console (headless, Pilot-driven) and report peak RSS.

    python -m app.bench.console_batch 1000000 [--size 120x40] [--window 2048]

It also reports how regularly the UI ticked during the batch and how long a key
press (`p`, twice) took to be handled. Compare the batch rate with
`lbconsole serve --port 0` + `printf 'random N\\n' | lbconsole client -q HOST:PORT`.
The real terminal adds the cost of writing the screen; measure that in tmux.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from textual import events

from app import source as source_module
from app.console import ConsoleApp
from app.runtime import RuntimeConfig
from app.source import LiveSource
from app.widgets.server_table import ServerTable
from balancer import eventloop


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def key_latency(app: ConsoleApp) -> float:
    """Post `p` (pause) as a key press from the terminal; seconds until it took effect."""
    app.query_one(ServerTable).focus()
    paused = app.paused
    before = time.monotonic()
    app.post_message(events.Key("p", "p"))
    while app.paused == paused:
        await asyncio.sleep(0.001)
    return time.monotonic() - before


async def run(count: int, size: tuple[int, int], log_requests: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = RuntimeConfig(port=0, log_file=str(Path(tmp) / "loadbalancer.log"),
                               log_requests=log_requests)
        source = LiveSource(config)
        app = ConsoleApp(source, freeze_gc=True)
        ticks: list[float] = []
        tick = app.tick

        def timed_tick() -> None:
            ticks.append(time.monotonic())
            tick()

        app.tick = timed_tick  # type: ignore[method-assign]
        async with app.run_test(size=size) as pilot:
            deadline = time.monotonic() + 20
            while not (app.stats and app.stats.servers_up == 3):
                assert time.monotonic() < deadline, "servers did not come up"
                await pilot.pause(0.05)
            await pilot.press("slash", *f"random {count}")
            started = time.monotonic()
            await pilot.press("enter")
            key_times = []
            while app.operator.progress is None or not app.operator.progress.done:
                await asyncio.sleep(0.1)
                progress = app.operator.progress
                if progress and len(key_times) < 2 and progress.answered > count // 3:
                    key_times.append(await key_latency(app))
            elapsed = time.monotonic() - started
            during = [b - a for a, b in itertools.pairwise(ticks)
                      if started <= a <= started + elapsed]
            await asyncio.sleep(0.3)
            message = str(app.query_one("#message").render())
            print(f"console batch: {message}")
            print(f"wall from Enter to done: {elapsed:.2f} s "
                  f"(window {source_module.BATCH_WINDOW}, size {size[0]}x{size[1]}, "
                  f"request log {'on' if log_requests else 'off'})")
            if during:
                print(f"UI ticks during the batch: {len(during)}, interval median "
                      f"{statistics.median(during) * 1000:.0f} ms, max {max(during) * 1000:.0f} ms")
            print("key p handled in: " + ", ".join(f"{t * 1000:.0f} ms" for t in key_times))
            await pilot.press("escape", "q")
            await asyncio.sleep(0.5)
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

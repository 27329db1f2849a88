"""`lbconsole serve --engine haproxy`: HAProxy, its servers and the log, without a screen.

The same contract as the built-in `serve`: the first stdout line is
`listening on HOST:PORT` (the real port, also with `--port 0`), then
`admin socket PATH` (lbconsole's runtime socket for `lbconsole ctl`, unless
`--admin-socket -`); once HAProxy runs, `haproxy pid PID, runtime API SOCKET`
(HAProxy's own, the same path after an algorithm switch); state changes follow as
`NAME OLD -> NEW: WHY`, and Ctrl-C / SIGTERM stops HAProxy and every
server. No haproxy on PATH: one line naming the package, exit status 1.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from app.engines.haproxy import HaproxyEngine
from app.engines.haproxy_config import check_algorithm
from app.engines.haproxy_process import HaproxyFailed, HaproxyMissing, find_haproxy
from app.runtime import RuntimeConfig
from app.serve import say
from balancer import eventloop


async def serve(config: RuntimeConfig, stats_interval: float = 0.0,
                algorithm: str | None = None) -> int:
    eventloop.raise_fd_limit()
    engine = HaproxyEngine(config, algorithm=algorithm)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            port = engine.listen()
        except OSError as exc:
            print(f"lbconsole serve: cannot listen on {config.host}:{config.port}: "
                  f"{exc.strerror or exc} (--port 0 picks a free port)", file=sys.stderr,
                  flush=True)
            return 1
        try:
            admin = await engine.start_control()
        except OSError as exc:
            print(f"lbconsole serve: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return 1
        # The first stdout line is the contract with scripts: the real port.
        say(f"listening on {config.host}:{port}")
        if admin is not None:
            say(f"admin socket {admin}")
        engine.listeners.append(lambda name, old, new, why: say(f"{name} {old} -> {new}: {why}"))
        try:
            await engine.start_servers()
        except HaproxyFailed as exc:
            print(f"lbconsole serve: {exc}", file=sys.stderr, flush=True)
            return 1
        say(f"haproxy pid {engine.process.pid}, runtime API {engine.api.path}")
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), stats_interval or None)
            except TimeoutError:
                s = engine.stats()
                say(f"{s.servers_up}/{len(s.backends)} UP, {s.answered} answered, "
                    f"{s.errors} errors, {s.rate:,.0f} req/s (haproxy)")
        say("shutting down: stopping haproxy and the servers")
    finally:
        await engine.stop()
    return 0


def serve_main(config: RuntimeConfig, stats_interval: float = 0.0,
               algorithm: str | None = None) -> int:
    try:
        find_haproxy()
        check_algorithm(algorithm or config.algorithm)
    except HaproxyMissing as exc:
        print(f"lbconsole: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyError as exc:
        print(f"lbconsole serve: --algorithm: {exc.args[0]}", file=sys.stderr, flush=True)
        return 1
    return eventloop.run(serve(config, stats_interval, algorithm))

"""Carrying out a command: the single place where the grammar's commands act on a Runtime.

`execute(runtime, command)` is what the runtime socket, the console (for the
commands that are not about its own screen) and scenarios call. It never
raises for anything an operator can cause: every outcome, good or bad, is a
`Reply` with a message worth showing and, for `show`, `random` and
`compare`, the data as a JSON-ready dict. Requests and batches go through a
client connection to the balancer's own port, exactly as an outside client's
would; server settings go to the supervisor, algorithm and weights to the
balancer, each through the Runtime so every change is logged.

The HAProxy engine (`app.engines.haproxy.HaproxyEngine`) is driven through the
same code: it offers the Runtime's methods, some of them coroutines where
HAProxy's runtime API has to be asked (`_settle` awaits those), and
`protocol = "http"`, so requests and batches go to it over HTTP keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from app.control import grammar as g
from balancer.client import Client, ClientError, run_batch
from balancer.protocol import describe

if TYPE_CHECKING:
    from app.runtime import Runtime

REQUEST_TIMEOUT = 30.0
BATCH_WINDOW = 1024


@dataclass(frozen=True)
class Reply:
    """The outcome of one command: `{"ok": ..., "message": ..., "data": ...}` on the socket."""

    ok: bool
    message: str
    data: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return orjson.dumps({"ok": self.ok, "message": self.message, "data": self.data},
                            option=orjson.OPT_NON_STR_KEYS)


def connect_host(runtime: Runtime) -> str:
    host = runtime.config.host
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def _settle(value: Any) -> Any:
    """The Runtime answers at once; an engine may have to ask HAProxy first (a coroutine)."""
    return await value if inspect.isawaitable(value) else value


def _http(runtime: Runtime) -> bool:
    """Whether the engine's port speaks HTTP (HAProxy) rather than the line protocol."""
    return getattr(runtime, "protocol", "line") == "http"


def _text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def execute(runtime: Runtime, command: g.Command, *, selected: str | None = None,
                  origin: str = "ctl", seed: int | None = None) -> Reply:
    """Carry out `command`; `selected` stands in for a left-out server (the console's
    selected row); `origin` names the caller in refusals ("ctl", "console", "scenario");
    `seed` makes `random` and `compare` batches repeatable (a scenario's)."""
    try:
        return await _execute(runtime, command, selected, origin, seed)
    except (KeyError, ValueError, ProcessLookupError, OSError, ClientError,
            TimeoutError) as exc:
        return Reply(False, f"{_verb(command)}: {_text(exc)}")


def _verb(command: g.Command) -> str:
    match command:
        case g.ServerCommand(action, target):
            return f"{action} {target or ''}".strip()
        case g.ServerSetting(setting, target, _):
            return f"{setting} {target or ''}".strip()
        case g.SetWeight(target, _):
            return f"weight {target}"
        case g.SetAlgorithm(name):
            return f"algo {name}"
        case g.SendRequest(line):
            return line[:40]
        case g.Quit():
            return "exit"
        case g.TogglePause():
            return "pause"
        case g.ClearPanels():
            return "clear"
    return type(command).__name__.lower()


async def _execute(runtime: Runtime, command: g.Command, selected: str | None,
                   origin: str, seed: int | None) -> Reply:
    match command:
        case g.Invalid(message):
            return Reply(False, message)
        case g.ServerCommand(action, target):
            name = target or selected
            if name is None:
                return Reply(False, f"{action} needs a server: {action} 2 or {action} server2")
            return Reply(True, await _server_action(runtime, action, name))
        case g.AddServer():
            text = await runtime.add_server()
            return Reply("failed" not in text, text)
        case g.SetAlgorithm(name):
            return Reply(True, await _settle(runtime.set_algorithm(name)),
                         {"algorithm": runtime.balancer.algorithm_name})
        case g.SetWeight(target, weight):
            return Reply(True, await _settle(runtime.set_weight(target, weight)))
        case g.ServerSetting(setting, target, value):
            name = target or selected
            if name is None:
                return Reply(False, f"{setting} needs a server: {setting} 2 or {setting} server2")
            text, answer = await runtime.control(name, setting, value)
            return Reply(True, text, answer or None)
        case g.Show("servers"):
            return show_servers(runtime)
        case g.Show(_):
            return show_stats(runtime)
        case g.SendRequest(line):
            return await _request(runtime, line)
        case g.RunBatch(count, work) if work is not None and _http(runtime):
            return Reply(False, f"random {count:,} work …: measured batches need the built-in "
                                "engine (plain random N works over HTTP)")
        case g.RunBatch(count, work):
            return await _batch(runtime, count, work, seed)
        case g.CancelBatch():
            running = [t for t in runtime.batches if not t.done()]
            for task in running:
                task.cancel()
            if not running:
                return Reply(False, "no batch is running")
            return Reply(True, f"cancelling {len(running)} batch{'es' if len(running) > 1 else ''}")
        case g.Compare() if _http(runtime):
            return Reply(False, "compare needs the built-in engine (with HAProxy every switch "
                                "restarts it; use algo NAME and random N instead)")
        case g.Compare():
            from app.control.compare import compare_live

            return await compare_live(runtime, command, seed=1 if seed is None else seed)
        case g.ShowHelp():
            return Reply(True, g.help_text())
    return Reply(False, f"{_verb(command)} is a console command; it does nothing over {origin}")


async def _server_action(runtime: Runtime, action: str, name: str) -> str:
    if action == "kill":
        return runtime.kill(name)
    if action == "stop":
        return await runtime.stop_server(name)
    if action == "restart":
        return await runtime.restart(name)
    if action == "drain":
        return await _settle(runtime.drain(name))
    if action == "freeze":
        return runtime.freeze(name)
    if action == "thaw":
        return runtime.thaw(name)
    raise KeyError(f"unknown action {action!r}")


def _plain(obj: object) -> dict[str, Any]:
    return dataclasses.asdict(obj)  # type: ignore[call-overload]


def show_servers(runtime: Runtime) -> Reply:
    rows = runtime.rows()
    states = ", ".join(f"{r.name} {r.state}" for r in rows) or "none"
    return Reply(True, f"{len(rows)} servers: {states}",
                 {"algorithm": runtime.balancer.algorithm_name,
                  "servers": [_plain(r) for r in rows]})


def show_stats(runtime: Runtime) -> Reply:
    stats = runtime.stats()
    data = _plain(stats)
    data["algorithm"] = runtime.balancer.algorithm_name
    return Reply(True, f"{stats.answered} answered, {stats.errors} errors, "
                       f"{stats.servers_up}/{len(stats.backends)} UP, "
                       f"algorithm {data['algorithm']}", data)


async def _request(runtime: Runtime, line: str) -> Reply:
    if _http(runtime):
        from app.engines.http_client import HttpClient

        client: Any = await HttpClient.connect(connect_host(runtime), runtime.balancer.port)
    else:
        client = await Client.connect(connect_host(runtime), runtime.balancer.port)
    try:
        answer = await client.request(line, timeout=REQUEST_TIMEOUT)
    finally:
        await client.close()
    return Reply("error" not in answer, describe(answer), answer)


async def _batch(runtime: Runtime, count: int, work: g.Work | None,
                 seed: int | None) -> Reply:
    host, port = connect_host(runtime), runtime.balancer.port
    if work is None and _http(runtime):
        from app.engines.http_client import run_http_batch

        task = asyncio.ensure_future(run_http_batch(host, port, count, window=BATCH_WINDOW,
                                                    seed=seed))
    elif work is None:
        task = asyncio.ensure_future(run_batch(host, port, count, window=BATCH_WINDOW,
                                               seed=seed))
    else:
        from app.control.batch import make_batch, run_measured

        lines = make_batch(count, work, seed=seed)
        task = asyncio.ensure_future(run_measured(host, port, lines, BATCH_WINDOW))
    runtime.batches.add(task)
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.cancelled():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise  # the caller itself was cancelled
        return Reply(False, f"random {count:,} cancelled")
    finally:
        runtime.batches.discard(task)
    if work is None:
        data = {"answered": result.answered, "errors": result.errors,
                "per_server": dict(result.per_server), "elapsed_s": result.elapsed,
                "rate": result.rate, "wrong": result.bad, "failure": result.failure,
                **result.percentiles()}
        ok = not (result.errors or result.bad or result.failure)
        return Reply(ok, f"random {count:,}: {result.summary()}", data)
    return Reply(result.ok, f"random {count:,} work {work.text()}: {result.summary()}",
                 result.as_dict())

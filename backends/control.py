"""The control channel: orders on standard input, replies on standard output.

Only the supervisor holds a spawned server's stdin, so only it can change the
server's settings; nothing that reaches the data port can. One JSON object per
line, each answered by one line (after the ready line) carrying the order's id:

    {"id": 1, "set": {"workers": 4, "flaky": 0.3}}  ->  {"id": 1, "ok": true, "settings": {...}}
    {"id": 2, "set": {"heal": true}}               ->  {"id": 2, "ok": true, "settings": {...}}
    {"id": 3, "get": "settings"}                   ->  {"id": 3, "ok": true, "settings": {...}}
    {"id": 4, "get": "stats"}                      ->  {"id": 4, "ok": true, "stats": {...}}
    anything wrong                                 ->  {"id": …, "ok": false, "error": "..."}

End of input means the supervisor is gone: the server exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable

import orjson

from backends.calc import CalcServer

MAX_ORDER = 64 * 1024


def execute(server: CalcServer, line: bytes) -> dict[str, object]:
    """Carry out one order line; the reply object (never raises on bad input)."""
    try:
        order = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"id": None, "ok": False, "error": "an order must be one JSON object per line"}
    if not isinstance(order, dict):
        return {"id": None, "ok": False, "error": "an order must be a JSON object"}
    reply: dict[str, object] = {"id": order.get("id")}
    try:
        if "set" in order:
            changes = order["set"]
            if not isinstance(changes, dict):
                raise ValueError('"set" takes an object of settings')
            reply.update(ok=True, settings=server.configure(changes))
        elif order.get("get") == "settings":
            reply.update(ok=True, settings=server.settings.as_dict())
        elif order.get("get") == "stats":
            reply.update(ok=True, stats=server.stats())
        else:
            raise ValueError('unknown order (use "set" or "get": "settings" / "stats")')
    except ValueError as exc:
        reply.update(ok=False, error=str(exc))
    return reply


class _Orders(asyncio.Protocol):
    def __init__(self, server: CalcServer, write: Callable[[bytes], None],
                 gone: asyncio.Event) -> None:
        self.server = server
        self.write = write
        self.gone = gone
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        if len(self.buffer) > MAX_ORDER:
            self.buffer = b""
            self.write(orjson.dumps({"id": None, "ok": False, "error": "order too long"}) + b"\n")
        for line in lines:
            if line.strip():
                self.write(orjson.dumps(execute(self.server, line)) + b"\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone.set()


def _write_stdout(data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


async def listen_stdin(server: CalcServer, gone: asyncio.Event) -> None:
    """Take orders from stdin; set `gone` at end of input."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(lambda: _Orders(server, _write_stdout, gone), sys.stdin)

"""A client of HAProxy's runtime API: its admin stats socket, one command per connection.

Each call opens the unix socket, writes one command line, and reads the reply
until HAProxy closes (non-interactive mode), so calls never interleave. A
reply that is not the expected empty line or known success text raises
`ApiError` with HAProxy's own words. `show stat` is parsed from its CSV.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass

STATES = ("ready", "drain", "maint")


class ApiError(OSError):
    """HAProxy refused a command, or its socket could not be reached (an OSError, so
    the dispatcher answers it like any other failure the operator can cause)."""


@dataclass(frozen=True)
class StatRow:
    """One server line of `show stat`, with the fields the console shows."""

    backend: str
    server: str
    status: str
    """UP, DOWN, DRAIN, MAINT, NOLB, `UP 1/3` (going down), `DOWN 1/2` (coming up)..."""
    weight: int
    current: int
    """Requests in progress on it (scur); client connections on the FRONTEND row."""
    queued: int
    """Requests waiting for it (qcur)."""
    total: int
    """Requests it was given (stot)."""
    errors_connect: int
    errors_response: int
    retries: int
    redispatches: int
    check_status: str
    """L4OK, L4CON, L7OK, L7STS, L4TOUT..., with a `* ` prefix while a check runs."""
    check_code: str
    last_check: str
    """HAProxy's words for the last check (`Layer4 connection problem`...)."""
    address: str
    last_change: int
    """Seconds since the last state change."""
    fields: dict[str, str]
    """Every column, as HAProxy gave it."""


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def parse_stat(text: str, proxies: bool = False) -> list[StatRow]:
    """The server rows of `show stat` CSV output (with the FRONTEND and BACKEND
    rows too when `proxies`)."""
    if text.startswith("# "):
        text = text[2:]
    rows = []
    for fields in csv.DictReader(io.StringIO(text)):
        name = fields.get("svname") or ""
        if not name or (name in ("FRONTEND", "BACKEND") and not proxies):
            continue
        rows.append(StatRow(
            backend=fields.get("pxname", ""), server=name, status=fields.get("status", ""),
            weight=_int(fields.get("weight")), current=_int(fields.get("scur")),
            queued=_int(fields.get("qcur")),
            total=_int(fields.get("stot")), errors_connect=_int(fields.get("econ")),
            errors_response=_int(fields.get("eresp")), retries=_int(fields.get("wretr")),
            redispatches=_int(fields.get("wredis")),
            check_status=fields.get("check_status", ""), check_code=fields.get("check_code", ""),
            last_check=fields.get("last_chk", ""), address=fields.get("addr", ""),
            last_change=_int(fields.get("lastchg")), fields=dict(fields),
        ))
    return rows


class RuntimeApi:
    """HAProxy's admin socket at `path`."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    async def command(self, line: str) -> str:
        """Send one command; HAProxy's reply, whole."""
        if "\n" in line or ";" in line:
            raise ApiError(f"one command at a time: {line!r}")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ApiError(f"cannot reach HAProxy's socket {self.path}: "
                           f"{getattr(exc, 'strerror', None) or exc or 'timed out'}") from None
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ApiError(f"HAProxy did not answer {line.split()[0]!r}: "
                           f"{exc or 'timed out'}") from None
        finally:
            writer.close()
        return data.decode("utf-8", "replace")

    async def action(self, line: str, ok: tuple[str, ...] = ()) -> str:
        """A command whose success is an empty reply (or starts with one of `ok`)."""
        reply = (await self.command(line)).strip()
        if reply and not reply.startswith(ok):
            raise ApiError(f"HAProxy: {reply}")
        return reply

    async def show_stat(self, proxies: bool = False) -> list[StatRow]:
        return parse_stat(await self.command("show stat"), proxies)

    async def set_state(self, backend: str, server: str, state: str) -> None:
        if state not in STATES:
            raise ApiError(f"state must be one of {', '.join(STATES)}")
        await self.action(f"set server {backend}/{server} state {state}")

    async def set_weight(self, backend: str, server: str, weight: int) -> None:
        await self.action(f"set server {backend}/{server} weight {int(weight)}")

    async def set_address(self, backend: str, server: str, host: str, port: int) -> None:
        await self.action(f"set server {backend}/{server} addr {host} port {int(port)}",
                          ok=("IP changed", "no need to change", "port changed"))

    async def add_server(self, backend: str, server: str, address: str, options: str) -> None:
        """`add server` (a dynamic server starts in maint), then enable it and its checks."""
        await self.action(f"add server {backend}/{server} {address} {options}",
                          ok=("New server registered",))
        await self.action(f"enable health {backend}/{server}")
        await self.action(f"enable server {backend}/{server}")

    async def del_server(self, backend: str, server: str) -> None:
        """Put it in maint, then `del server` (HAProxy refuses while it has requests)."""
        await self.action(f"disable server {backend}/{server}")
        await self.action(f"del server {backend}/{server}", ok=("Server deleted",))

    async def set_health(self, backend: str, server: str, enabled: bool) -> None:
        word = "enable" if enabled else "disable"
        await self.action(f"{word} health {backend}/{server}")

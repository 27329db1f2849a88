"""The runtime API: a unix socket taking one command per line, answering one JSON line each.

Like HAProxy's stats socket: `lbconsole serve` and the console both open it
(`--admin-socket PATH`, by default beside the log file: `loadbalancer.log`
gets `loadbalancer.sock`, or `loadbalancer-PORT.sock` when another instance
in the same place has that one), mode 0600 so only the user running the
balancer can drive it. The commands are the console's (`app.control.grammar`), carried
out by `app.control.dispatch.execute`; each answer is
`{"ok": true|false, "message": "...", "data": {...}|null}`.

A path given with --admin-socket that another live instance holds is refused
(a connect test tells a live socket from a stale file left by a crash, which
is replaced). Nothing
here listens on TCP: the client port carries requests only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import tempfile
from typing import TYPE_CHECKING, Any

from app.control.dispatch import Reply, execute
from app.control.grammar import parse_command

if TYPE_CHECKING:
    from app.runtime import Runtime

MAX_LINE = 64 * 1024
"""Longest command line accepted, in bytes; a longer one closes the connection."""
MAX_CONNECTIONS = 64
"""Admin connections at once; more are answered with an error and closed."""
PROBE_TIMEOUT = 1.0


def default_socket_path(log_file: str | None, port: int, with_port: bool = False) -> str:
    """`loadbalancer.log` -> `loadbalancer.sock` beside it (`loadbalancer-PORT.sock`
    `with_port`: when another instance has the first); without a log file,
    `lbconsole-UID-PORT.sock` in $XDG_RUNTIME_DIR (or the temp directory)."""
    if log_file:
        base, _ = os.path.splitext(log_file)
        path = base + (f"-{port}" if with_port else "") + ".sock"
        return path if path != log_file else log_file + ".sock"
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(folder, f"lbconsole-{os.getuid()}-{port}.sock")


def claim(path: str) -> None:
    """Make `path` free to bind: remove a stale socket file; OSError if it is in use."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; "
                                    "choose another --admin-socket PATH")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left behind by an instance that died
        return
    except TimeoutError:
        pass  # alive but busy: still someone else's
    except OSError as exc:
        raise OSError(exc.errno, f"cannot use admin socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE,
                  f"admin socket {path} is held by another running lbconsole; "
                  "give this one --admin-socket PATH (or - for none)")


async def open_control(runtime: Any, port: int) -> ControlServer | None:
    """Open `runtime`'s socket once it listens on `port` (its config's admin_socket_path);
    None when disabled. Shared by both engines' runtimes (anything `execute` drives, with
    `config` and `log`).

    Raises OSError with a message for the operator when another live instance
    holds the path given with --admin-socket; the default path, when taken, gives
    way to one with the port in its name.
    """
    config = runtime.config
    path = config.admin_socket_path(port)
    if path is None:
        return None
    server = ControlServer(runtime, path)
    try:
        await server.start()
    except OSError as exc:
        if config.admin_socket or exc.errno != errno.EADDRINUSE:
            raise
        # The default name belongs to another live instance (one log file for two
        # balancers): this one takes a name with its port instead of failing.
        path = default_socket_path(config.log_file, port, with_port=True)
        server = ControlServer(runtime, path)
        await server.start()
    runtime.log.event(f"runtime API on {path}")
    return server


class ControlServer:
    """The unix socket server; one `Runtime` behind it."""

    def __init__(self, runtime: Runtime, path: str) -> None:
        self.runtime = runtime
        self.path = path
        self.connections: set[asyncio.StreamWriter] = set()
        self.commands = 0
        self._server: asyncio.base_events.Server | None = None
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        """Bind (mode 0600) and serve; OSError with a message for the operator."""
        claim(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            info = os.stat(self.path)
            self._inode = (info.st_dev, info.st_ino)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                           limit=MAX_LINE)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"admin socket {self.path} is in use "
                                         "(another lbconsole started at the same time?)"
                              ) from None
            raise OSError(exc.errno, f"cannot open admin socket {self.path}: "
                                     f"{exc.strerror or exc}") from None

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self.connections):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None
        with contextlib.suppress(OSError):
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= MAX_CONNECTIONS:
            await self._send(writer, Reply(False, f"too many admin connections "
                                                  f"(limit {MAX_CONNECTIONS})"))
            writer.close()
            return
        self.connections.add(writer)
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    raw = exc.partial  # the last line may come without a newline
                    if not raw.strip():
                        break
                except asyncio.LimitOverrunError:
                    await self._send(writer, Reply(False, f"command line too long "
                                                          f"(limit {MAX_LINE} bytes)"))
                    break
                await self._send(writer, await self.answer(raw))
                if reader.at_eof():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()

    async def answer(self, raw: bytes) -> Reply:
        """One command line in, its reply out."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Reply(False, "a command must be UTF-8 text")
        command = parse_command(line)
        if command is None:
            return Reply(False, "empty command (try help)")
        self.commands += 1
        try:
            return await execute(self.runtime, command, origin="ctl")
        except Exception as exc:  # a bug, not the operator's doing: answer, log, go on
            self.runtime.log.event(f"runtime API: {line.strip()[:60]!r} failed: {exc!r}")
            return Reply(False, f"internal error: {exc!r} (see the log)")

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(reply.to_json() + b"\n")
        await writer.drain()


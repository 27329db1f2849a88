"""`lbconsole web`: the same console in a browser, served by textual-serve.

textual-serve runs one console process per browser connection, as a shell
command, and talks to it over the process's stdin and stdout. This module
builds that command from the options the operator gave (every console option
passes through), listens where it was told (loopback unless told otherwise,
with a warning then), prints the real URL first (also with `--web-port 0`),
and makes sure no console and no calculation server outlives the web server:

- the command `exec`s the console, so the process textual-serve watches is the
  console itself, not a shell in front of it;
- each console runs `ConsoleWebDriver`, which quits the console when its stdin
  closes (the web server has gone, even by SIGKILL), so the console stops its
  servers, which in turn exit when their own stdin closes;
- on SIGTERM or Ctrl-C the web server sends every console SIGTERM, waits for
  them (each stops its servers), and SIGKILLs any that are still there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from textual import messages
from textual.drivers.web_driver import WebDriver
from textual_serve.server import Server

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WEB_DESTS = frozenset({"web_host", "web_port", "command", "headless", "help"})
"""Parsed options that belong to `web` itself, not to the console it serves."""
STOP_GRACE = 10.0
"""Seconds the consoles get to stop their servers when the web server stops."""


class ConsoleWebDriver(WebDriver):
    """Textual's web driver, plus: a closed stdin (the web server is gone) quits the app."""

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        finally:
            if not self.exit_event.is_set():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(
                        self._app._post_message(messages.ExitApp()), loop=self._loop)


def console_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The console options the operator gave, as arguments again, for each browser's console.

    The runtime options default to "not given" (argparse.SUPPRESS), so exactly
    those typed are present in `args`, whether before or after `web`.
    """
    given = vars(args)
    argv: list[str] = []
    for action in parser._actions:
        dest = action.dest
        if not action.option_strings or dest in WEB_DESTS or dest not in given:
            continue
        value = given[dest]
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, _as_argument(item)]
        else:
            argv += [flag, _as_argument(value)]
    return argv


def _as_argument(value: object) -> str:
    """A parsed option value as it was typed: `--backend` gives (name, host, port),
    `--weight` and the like (name, value)."""
    if isinstance(value, tuple) and len(value) == 3:
        name, host, port = value
        host = f"[{host}]" if ":" in str(host) else host
        return f"{name}={host}:{port}" if name else f"{host}:{port}"
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}={value[1]}"
    return str(value)


def console_command(argv: list[str]) -> str:
    """The shell command textual-serve runs per browser: the console, exec'd in place."""
    return (f"exec env TEXTUAL_DRIVER=app.web:ConsoleWebDriver "
            f"{shlex.quote(sys.executable)} -m app.cli {shlex.join(argv)}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host: str, url: str) -> str | None:
    """What to tell the operator before serving the console beyond this machine."""
    if is_loopback(host):
        return None
    return (f"lbconsole web: warning: {host} is not a loopback address. Anyone who can "
            f"reach {url} gets the console, with no login: they can kill servers and run "
            f"batches. Prefer the default {DEFAULT_HOST} (with an SSH tunnel for others).")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def children() -> list[int]:
    """Pids of this process's live children (the consoles textual-serve started)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def stop_children(grace: float = STOP_GRACE) -> None:
    """SIGTERM every console, wait up to `grace` seconds, then SIGKILL what is left."""
    pids = children()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pids = [pid for pid in pids if pid in children()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class ConsoleServer(Server):
    """textual-serve's Server with lbconsole's start-up line and shutdown."""

    async def handle_index(self, request: web.Request) -> Any:
        # The page's websocket URL is absolute: build it from the address the browser
        # used, which is right for --web-port 0 and for any --web-host.
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def on_startup(self, app: web.Application) -> None:
        return None  # the URL line is printed before the loop starts

    async def on_shutdown(self, app: web.Application) -> None:
        await stop_children()


def web_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Serve the console until SIGTERM or Ctrl-C; the first stdout line is the URL."""
    host: str = args.web_host
    argv = console_argv(parser, args)
    try:
        sock = socket.create_server((host, args.web_port),
                                    family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        print(f"lbconsole web: cannot listen on {host}:{args.web_port}: "
              f"{exc.strerror or exc}" + ("; --web-port 0 picks a free port"
                                          if exc.errno == 98 else ""), file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    url = f"http://{url_host(host)}:{port}"
    server = ConsoleServer(console_command(argv), host=host, port=port, title="lbconsole",
                           public_url=url)
    print(f"serving the console on {url}", flush=True)
    warning = host_warning(host, url)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    server.initialize_logging()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_exit)
    try:
        web.run_app(server._make_app(), sock=sock, handle_signals=False, loop=loop,
                    print=None, access_log=None, shutdown_timeout=STOP_GRACE)
    finally:
        loop.close()
    return 0

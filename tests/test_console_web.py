"""`lbconsole web`: options pass through, and a real browser gets the real console.

The end-to-end test starts `lbconsole web` as a subprocess on free ports,
fetches the page, opens it in headless Chromium, reads the terminal the page
shows (from the websocket stream Chromium received), types a command into it,
closes the tab and stops the server, and checks by pid that every console and
calculation server the web server started is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.cli import build_parser, web_parser
from app.web import console_argv, console_command, host_warning
from tests.browser import Browser, find_chromium
from tests.wire import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def test_every_console_option_passes_through_and_web_options_do_not() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["--port", "0", "web", "--servers", "2", "--backend", "127.0.0.1:9", "--backend",
         "127.0.0.1:10", "--no-request-log", "--check-interval", "0.2", "--log-file", "a b.log",
         "--web-port", "0", "--web-host", "127.0.0.1"])
    argv = console_argv(web_parser(parser), args)
    assert argv == ["--port", "0", "--servers", "2", "--backend", "127.0.0.1:9",
                    "--backend", "127.0.0.1:10", "--check-interval", "0.2",
                    "--log-file", "a b.log", "--no-request-log"]
    assert console_argv(web_parser(parser), parser.parse_args(["web"])) == []
    command = console_command(argv)
    assert command.startswith("exec ") and "'a b.log'" in command
    assert "TEXTUAL_DRIVER=app.web:ConsoleWebDriver" in command


def test_only_a_loopback_host_goes_without_a_warning() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert host_warning(host, "http://x") is None
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        warning = host_warning(host, f"http://{host}:8000")
        assert warning and "warning" in warning and host in warning and "no login" in warning


def test_a_taken_web_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "web", "--web-port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--web-port 0" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def descendants(root: int) -> dict[int, str]:
    """Live descendants of `root`: pid -> command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
            commands[int(entry.name)] = cmdline
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = commands[pid]
                frontier.append(pid)
    return found


def servers_under(root: int) -> set[int]:
    return {pid for pid, cmd in descendants(root).items() if "backends.server" in cmd}


async def eventually(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(300)
async def test_the_console_in_headless_chromium(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not found (.ci/run installs Debian's chromium when it can)")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "web", "--port", "0", "--web-port", "0",
        "--check-interval", "0.2", "--log-file", str(tmp_path / "lb.log"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state")})
    seen: set[int] = set()
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"serving the console on (http://127\.0\.0\.1:(\d+))\n", first)
        assert match, first
        url = match[1]
        page_html = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        assert f'data-session-websocket-url="ws://127.0.0.1:{match[2]}/ws"' in page_html

        async with Browser(chromium) as browser:
            page = await browser.open(url)
            screen = await page.wait_for(
                lambda t: "Servers" in t and all(
                    re.search(rf"\b{name}\s+UP\b", t) for name in ("server1", "server2",
                                                                   "server3")),
                60, "the Servers panel with three UP servers")
            assert "3/3" in screen
            first_servers = servers_under(process.pid)
            assert len(first_servers) == 3, descendants(process.pid)
            seen |= first_servers

            await page.type("/kill 2")
            await page.press_enter()
            await page.wait_for(lambda t: re.search(r"\bserver2\s+DOWN\b", t) is not None,
                                20, "server2 DOWN after typing kill 2 in the page")
            await eventually(lambda: len(servers_under(process.pid)) == 2, 10,
                             "server2's process to go")
            history = tmp_path / "state" / "lbconsole" / "history"
            assert history.read_text() == "kill 2\n"  # the typed line, kept in XDG_STATE_HOME
            log = tmp_path / "lb.log"  # --log-file passed through to the tab's console
            await eventually(lambda: log.exists() and re.search(
                r"server2 process \d+ killed by SIGKILL", log.read_text()), 10,
                "the kill in the console's log")
            assert "operator: kill server2" in log.read_text()

            await page.close()  # the tab goes: its console and servers must go too
            await eventually(lambda: not servers_under(process.pid), 20,
                             "the closed tab's servers to stop")
            await eventually(lambda: not descendants(process.pid), 20,
                             "the closed tab's console to exit")

            second = await browser.open(url)  # a new tab gets a console of its own
            await second.wait_for(lambda t: "3/3" in t, 60, "a second console")
            seen |= servers_under(process.pid)
            consoles = set(descendants(process.pid))
            assert len(servers_under(process.pid)) == 3

            process.send_signal(signal.SIGTERM)  # the server quits with a tab open
            assert await asyncio.wait_for(process.wait(), 30) == 0
        assert not [pid for pid in seen | consoles if pid_alive(pid)]
    finally:
        leftovers = descendants(process.pid) if process.returncode is None else {}
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in set(leftovers) | seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(300)
async def test_a_killed_web_server_leaves_no_console_or_server(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not found (.ci/run installs Debian's chromium when it can)")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "web", "--port", "0", "--web-port", "0",
        "--servers", "2", "--log-file", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state")})
    tree: dict[int, str] = {}
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = first.split()[-1]
        async with Browser(chromium) as browser:
            page = await browser.open(url)
            await page.wait_for(lambda t: "2/2" in t, 60, "two servers UP")
            tree = descendants(process.pid)
            assert len([c for c in tree.values() if "backends.server" in c]) == 2
            process.kill()  # no shutdown at all: the consoles see their stdin close
            await process.wait()
            await eventually(lambda: not [pid for pid in tree if pid_alive(pid)], 30,
                             f"the orphaned consoles and servers to exit: {tree}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

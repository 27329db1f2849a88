"""`lbconsole server` as a user runs it: ready line, options, the warning, clean exits."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

LBCONSOLE = [sys.executable, "-m", "app.cli"]


@pytest.fixture
def run_server() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen([*LBCONSOLE, "server", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def ask(port: int, payload: bytes, count: int) -> list[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"\n") < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_ready_line_options_and_sigterm(run_server) -> None:
    process = run_server("--name", "far", "--workers", "2", "--speed", "0.5", "--latency",
                         "1", "--seed", "4")
    ready = process.stdout.readline().split()
    assert ready[:2] == ["ready", "far"] and ready[3] == "pid" and int(ready[4]) == process.pid
    host, port = ready[2].rsplit(":", 1)
    assert host == "127.0.0.1"
    pong, answer = ask(int(port), b'ping\n{"op": "somma", "a": 1, "b": 2, "work_ms": 10}\n', 2)
    assert pong["pong"] == "far" and pong["pid"] == process.pid
    assert (pong["workers"], pong["speed"], pong["latency_ms"]) == (2, 0.5, 1.0)
    assert answer == {"id": 2, "op": "somma", "a": 1, "b": 2, "result": 3}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr.read() == ""  # loopback: no warning


def test_ctrl_c_exits_cleanly(run_server) -> None:
    process = run_server("--name", "far")
    assert process.stdout.readline().startswith("ready far 127.0.0.1:")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert "Traceback" not in process.stderr.read()


def test_other_addresses_warn_there_is_no_authentication(run_server) -> None:
    process = run_server("--name", "open", "--host", "0.0.0.0")
    ready = process.stdout.readline()
    assert ready.startswith("ready open 0.0.0.0:")
    port = int(ready.split()[2].rsplit(":", 1)[1])
    assert ask(port, b"somma 2 2\n", 1)[0]["result"] == 4  # reached over loopback only
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert "no authentication" in process.stderr.read()


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x", "--speed", "0"], "speed must be above 0"),
    (["--name", "x", "--workers", "0"], "workers must be a whole number"),
    (["--name", "x", "--flaky", "1.5"], "flaky must be a fraction"),
    (["--name", "two words"], "--name must be one word"),
    (["--name", "x", "--port", "70000"], "--port must be from 0 to 65535"),
    ([], "required: --name"),
])
def test_bad_options_are_refused_clearly(run_server, args: list[str], message: str) -> None:
    process = run_server(*args)
    assert process.wait(timeout=20) == 2
    err = process.stderr.read()
    assert message in err and "Traceback" not in err


def test_a_busy_port_is_a_clear_error(run_server) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = run_server("--name", "x", "--port", str(taken.getsockname()[1]))
        assert process.wait(timeout=20) == 1
        out = process.stdout.read()
    assert "cannot listen" in out and "Traceback" not in process.stderr.read()

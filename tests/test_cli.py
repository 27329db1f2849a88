"""`lbconsole serve` and `lbconsole client` as processes, driven like a user would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import pid_alive

LBCONSOLE = [sys.executable, "-m", "app.cli"]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [*LBCONSOLE, "serve", "--port", "0", "--log-file", str(log), "--check-interval", "0.2",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        assert match, first + process.stderr.read() if process.stderr else first
        port = int(match[1])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as probe:
                probe.sendall(b"ping\nexit\n")
                pong = json.loads(probe.makefile().readline())
            want = len([a for a in args if a.startswith("127.0.0.1:")]) or 3
            if pong.get("servers_up") == want:
                break
            time.sleep(0.05)
        yield process, port
    finally:
        _stop(process)


def test_serve_goes_on_when_nobody_reads_its_stdout(tmp_path: Path) -> None:
    # `lbconsole serve | head -1`: once the reader is gone, lines to stdout have
    # nowhere to go; the balancer keeps serving and stops clean, no traceback.
    with serve(tmp_path) as (process, port):
        assert process.stdout is not None
        process.stdout.close()
        server_pids(tmp_path / "serve.log")
        ready = re.search(r"server2 process (\d+) ready", (tmp_path / "serve.log").read_text())
        assert ready
        os.kill(int(ready[1]), signal.SIGKILL)  # a state change: a line for stdout
        time.sleep(0.5)
        answers = talk(port, b"somma 2 3\n" * 4)
        assert [a["result"] for a in answers] == [5] * 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        errors = process.stderr.read()
        assert "Traceback" not in errors and "Error" not in errors, errors
    log = (tmp_path / "serve.log").read_text()
    assert "server2 UP -> DOWN" in log and "all servers stopped" in log


def server_pids(log: Path, count: int = 3) -> list[int]:
    """Pids from the log's ready lines (the log is flushed every 100 ms)."""
    deadline = time.monotonic() + 10
    while True:
        pids = [int(p) for p in re.findall(r"process (\d+) ready", log.read_text())]
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def talk(port: int, payload: bytes, timeout: float = 10.0) -> list[dict]:
    """A client that knows only the protocol: plain socket, lines in, JSON lines out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # a half-close: the balancer answers, then closes
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_serve_speaks_the_protocol_to_an_outside_client_and_stops_clean(tmp_path: Path) -> None:
    with serve(tmp_path) as (process, port):
        answers = sorted(talk(port, b"somma 1 1\n" * 9 + b"exit\n"), key=lambda a: a["id"])
        assert [a.get("server") for a in answers[:9]] == ["server1", "server2", "server3"] * 3
        assert answers[-1] == {"id": 10, "goodbye": True}

        bad = talk(port, b"bogus 1 2\n{\"id\": 5, \"op\": \"div\", \"a\": 1, \"b\": 0}\n"
                         b"\xff\n3 * 4\n")
        by_id = {a["id"]: a for a in bad}
        assert "unknown operation" in by_id[1]["error"]
        assert by_id[5]["error"] == "division by zero"
        assert by_id[3]["error"] == "invalid UTF-8"
        assert by_id[4]["result"] == 12

        pids = server_pids(tmp_path / "serve.log")
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not [p for p in pids if pid_alive(p)]
    log = (tmp_path / "serve.log").read_text()
    assert "all servers stopped" in log


def test_serve_with_outside_backends(tmp_path: Path) -> None:
    outside = subprocess.Popen(
        [sys.executable, "-m", "backends.server", "--name", "far", "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert outside.stdout is not None
        port = int(outside.stdout.readline().split(":")[-1].split()[0])
        with serve(tmp_path, "--servers", "0", "--backend", f"127.0.0.1:{port}") as (_, lb):
            answers = sorted(talk(lb, b"somma 2 3\nsomma 4 5\n", timeout=10),
                             key=lambda a: a["id"])
            assert [a["server"] for a in answers] == ["backend1", "backend1"]
            assert [a["result"] for a in answers] == [5, 9]
    finally:
        _stop(outside)


def test_client_from_a_pipe(tmp_path: Path) -> None:
    with serve(tmp_path) as (_, port):
        result = subprocess.run(
            [*LBCONSOLE, "client", f"127.0.0.1:{port}"],
            input="somma 3 4\n3 * 4\ndivisione 1 0\nrandom 30\nexit\n",
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "#1 somma 3 4 = 7  server1"
    assert out[1] == "#2 moltiplicazione 3 4 = 12  server2"
    assert out[2].startswith("#3 error: division by zero")
    assert len([line for line in out if " = " in line]) == 32
    summary = out[-1]
    assert summary.startswith("random 30: 30 answers, 0 errors, ")
    assert summary.endswith(" ms, server1 10 / server2 10 / server3 10")
    assert "Traceback" not in result.stderr


def test_client_without_a_balancer_says_so_and_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run([*LBCONSOLE, "client", f"127.0.0.1:{port}"], input="somma 1 1\n",
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot connect to 127.0.0.1" in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run([*LBCONSOLE, "serve", "--port", str(port), "--log-file",
                                 str(tmp_path / "x.log")], capture_output=True, text=True,
                                timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "getpgid"), reason="POSIX only")
def test_servers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """Even SIGKILL of `serve`, which it cannot catch, leaves no server behind."""
    with serve(tmp_path) as (process, _):
        pids = server_pids(tmp_path / "serve.log")
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
        assert not [p for p in pids if pid_alive(p)]

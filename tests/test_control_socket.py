"""The runtime socket and `lbconsole ctl`, over real processes: `serve` as a subprocess,
`ctl` as another, exit codes and JSON checked as a script would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LBCONSOLE = [sys.executable, "-m", "app.cli"]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (serve stops its servers), SIGKILL if it does not leave in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=10)


def ctl(sock: Path | str, *words: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*LBCONSOLE, "ctl", "--socket", str(sock), *words],
                          capture_output=True, text=True, timeout=timeout)


def show(sock: Path, what: str = "servers") -> dict:
    result = ctl(sock, "show", what)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@contextlib.contextmanager
def serve(folder: Path, *args: str, wait_up: bool = True) -> Iterator[tuple[subprocess.Popen,
                                                                           int, list[str]]]:
    """`lbconsole serve --port 0` in `folder`; yields (process, port, first stdout lines)."""
    process = subprocess.Popen(
        [*LBCONSOLE, "serve", "--port", "0", "--log-file", str(folder / "lb.log"),
         "--check-interval", "0.2", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        assert match, first + (process.stderr.read() if process.stderr else "")
        lines = [first]
        if "-" not in args:
            lines.append(process.stdout.readline())
        if wait_up:
            sock = folder / "lb.sock"
            for i, arg in enumerate(args):
                if arg == "--admin-socket":
                    sock = Path(args[i + 1])
            wait_for(lambda: all(s["state"] == "UP" for s in show(sock)["servers"]))
        yield process, int(match[1]), lines
    finally:
        stop(process)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, Path]]:
    """One `serve` shared by the tests that do not change it: (socket, port, folder)."""
    folder = tmp_path_factory.mktemp("ctl")
    sock = folder / "x.sock"
    with serve(folder, "--admin-socket", str(sock)) as (_, port, lines):
        assert lines[1] == f"admin socket {sock}\n"
        yield sock, port, folder


def test_show_servers_and_stats_are_one_json_object_each(running: tuple[Path, int, Path]) -> None:
    sock, port, _ = running
    servers = show(sock)
    assert [s["name"] for s in servers["servers"]] == ["server1", "server2", "server3"]
    assert {s["state"] for s in servers["servers"]} == {"UP"}
    assert all(s["pid"] and s["weight"] == 1 for s in servers["servers"])
    assert servers["algorithm"] == "roundrobin"
    stats = show(sock, "stats")
    assert stats["address"] == f"127.0.0.1:{port}" and stats["servers_up"] == 3
    raw = ctl(sock, "--json", "show", "stats")
    reply = json.loads(raw.stdout)
    assert reply["ok"] is True and "answered" in reply["message"] and reply["data"]["clients"] >= 0


def test_socket_is_private_to_its_user(running: tuple[Path, int, Path]) -> None:
    sock, _, _ = running
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_refused_commands_exit_1_with_a_message(running: tuple[Path, int, Path]) -> None:
    sock, _, _ = running
    for words, says in ((("weight", "9", "1"), "no server 9 (there are 3)"),
                        (("frobnicate",), "not understood"),
                        (("pause",), "pause is a console command"),
                        (("algo", "fastest"), "unknown algorithm 'fastest'"),
                        (("cancel",), "no batch is running")):
        result = ctl(sock, *words)
        assert result.returncode == 1, (words, result.stdout)
        assert says in result.stderr, (words, result.stderr)
        assert "Traceback" not in result.stderr


def test_commands_from_stdin(running: tuple[Path, int, Path]) -> None:
    sock, _, _ = running
    result = subprocess.run(
        [*LBCONSOLE, "ctl", "--socket", str(sock), "-"], text=True, capture_output=True,
        input="# a script\nsomma 1 2\n\nweight 9 1\nshow stats\n", timeout=60)
    assert result.returncode == 1  # one of them was refused
    out = result.stdout.splitlines()
    assert out[0].startswith("#1 somma 1 2 = 3") and json.loads(out[1])["servers_up"] == 3
    assert "no server 9" in result.stderr


def test_requests_and_batches_go_through_the_balancer(running: tuple[Path, int, Path]) -> None:
    sock, _, _ = running
    one = ctl(sock, "3", "*", "4")
    assert one.returncode == 0 and "= 12" in one.stdout
    batch = ctl(sock, "random", "300")
    assert batch.returncode == 0, batch.stderr
    assert "300 answers, 0 errors" in batch.stdout


def test_the_client_port_cannot_run_admin_commands(running: tuple[Path, int, Path]) -> None:
    sock, port, _ = running
    with socket.create_connection(("127.0.0.1", port), timeout=10) as wire:
        wire.sendall(b"kill 1\nweight 1 0\nalgo p2c\nshow servers\nexit\n")
        answers = [json.loads(line) for line in wire.makefile().read().splitlines()]
    assert len(answers) == 5 and answers[-1].get("goodbye")
    for answer in answers[:4]:
        assert "error" in answer, answer
    servers = show(sock)
    assert servers["algorithm"] == "roundrobin"
    assert servers["servers"][0]["state"] == "UP" and servers["servers"][0]["weight"] == 1


def test_one_connection_many_commands_and_bad_lines(running: tuple[Path, int, Path]) -> None:
    sock, _, _ = running
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock))
        conn.sendall(b"show stats\n\n\xff\xfe\nhelp\n")
        stream = conn.makefile("rb")
        replies = [json.loads(stream.readline()) for _ in range(4)]
    assert replies[0]["ok"] and replies[0]["data"]["servers_up"] == 3
    assert not replies[1]["ok"] and "empty command" in replies[1]["message"]
    assert not replies[2]["ok"] and "UTF-8" in replies[2]["message"]
    assert replies[3]["ok"] and "algo NAME" in replies[3]["message"]
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock))
        with contextlib.suppress(OSError):
            conn.sendall(b"x" * (70 * 1024) + b"\n")
        reply = json.loads(conn.makefile("rb").readline())
    assert not reply["ok"] and "too long" in reply["message"]
    assert show(sock, "stats")["servers_up"] == 3  # still serving


def test_kill_algo_and_weight_act_and_are_logged(tmp_path: Path) -> None:
    with serve(tmp_path, "--algorithm", "p2c", "--weight", "server3=0") as (_, _, lines):
        sock = tmp_path / "lb.sock"  # the default: beside lb.log
        assert lines[1] == f"admin socket {sock}\n"
        servers = show(sock)
        assert servers["algorithm"] == "p2c"
        assert [s["weight"] for s in servers["servers"]] == [1, 1, 0]
        result = ctl(sock, "kill", "2")
        assert result.returncode == 0 and "server2 killed (SIGKILL to pid" in result.stdout
        wait_for(lambda: show(sock)["servers"][1]["state"] == "DOWN")
        assert ctl(sock, "algo", "leastconn").stdout == "algorithm leastconn\n"
        assert show(sock, "stats")["algorithm"] == "leastconn"
        assert ctl(sock, "weight", "server1", "3").returncode == 0
        assert show(sock)["servers"][0]["weight"] == 3
    log = (tmp_path / "lb.log").read_text()
    assert "operator: kill server2" in log
    assert "operator: algorithm p2c -> leastconn" in log
    assert "operator: weight server1 1 -> 3" in log
    assert not sock.exists()  # removed on a clean stop


def test_a_live_socket_is_refused_or_avoided_and_a_stale_one_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "lb.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # bound, never listened: what a crashed instance leaves
    stale.close()
    assert sock.exists()
    with serve(tmp_path, wait_up=False) as (_, _, lines):
        assert lines[1] == f"admin socket {sock}\n"
        assert ctl(sock, "show", "stats").returncode == 0
        # Asked for by name, a live instance's socket is refused, with the way out.
        second = subprocess.run(
            [*LBCONSOLE, "serve", "--port", "0", "--log-file", str(tmp_path / "lb2.log"),
             "--servers", "0", "--admin-socket", str(sock)],
            capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "held by another running lbconsole" in second.stderr
        assert "--admin-socket" in second.stderr and "Traceback" not in second.stderr
        assert ctl(sock, "show", "stats").returncode == 0  # the first one is untouched
        # By default (the same log file), a second instance takes a name with its port.
        with serve(tmp_path, "--servers", "1", wait_up=False) as (_, port, other):
            own = tmp_path / f"lb-{port}.sock"
            assert other[1] == f"admin socket {own}\n"
            assert show(own, "stats")["address"] == f"127.0.0.1:{port}"
            assert show(sock, "stats")["address"] != f"127.0.0.1:{port}"


def test_dash_disables_the_socket_and_ctl_says_nothing_listens(tmp_path: Path) -> None:
    with serve(tmp_path, "--admin-socket", "-", "--servers", "1", wait_up=False) as (_, _, _):
        assert not list(tmp_path.glob("*.sock"))
        result = ctl(tmp_path / "lb.sock", "show", "servers")
        assert result.returncode == 1
        assert "no admin socket at" in result.stderr and "Traceback" not in result.stderr


def test_ctl_usage_errors() -> None:
    result = subprocess.run([*LBCONSOLE, "ctl", "--socket", "/nonexistent/x.sock", "   "],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr
    result = ctl("/nonexistent/x.sock", "weight", "2", "999")
    assert result.returncode == 1 and "from 0 to 256" in result.stderr


def test_an_impossible_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    for path, says in ((tmp_path / "no" / "such" / "x.sock", "No such file or directory"),
                       (tmp_path / ("d" * 120) / "x.sock", "cannot open admin socket")):
        result = subprocess.run(
            [*LBCONSOLE, "serve", "--port", "0", "--log-file", "-", "--servers", "0",
             "--admin-socket", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, result.stdout
        assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    (tmp_path / "file.sock").write_text("not a socket")
    result = subprocess.run(
        [*LBCONSOLE, "serve", "--port", "0", "--log-file", "-", "--servers", "0",
         "--admin-socket", str(tmp_path / "file.sock")], capture_output=True, text=True,
        timeout=30)
    assert result.returncode == 1 and "exists and is not a socket" in result.stderr
    assert (tmp_path / "file.sock").read_text() == "not a socket"  # left alone

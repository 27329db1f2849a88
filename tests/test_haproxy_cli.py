"""`lbconsole serve --engine haproxy` and `lbconsole client --http` as real processes."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.bench.loadgen import run_load
from app.bench.procs import Processes, start_haproxy, start_servers
from tests.httpwire import ROOT, HttpWire

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="haproxy not on PATH (apt-get install haproxy)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def descendants(pid: int) -> list[int]:
    """Live processes whose parent chain leads to `pid`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    port: int
    log: Path
    admin: str = ""
    """HAProxy's own runtime API socket."""
    ctl: str = ""
    """lbconsole's runtime socket (`lbconsole ctl --socket`)."""

    def line(self, timeout: float = 10.0) -> str:
        """The next stdout line, or "" after `timeout`."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else ""


def admin(path: str, command: str) -> str:
    """One command on HAProxy's own socket, no lbconsole code involved."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out.decode()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    log = tmp_path / "loadbalancer.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--engine", "haproxy", "--port", "0",
         "--log-file", str(log), "--check-interval", "0.2", "--rise", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    kids: list[int] = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"^listening on 127\.0\.0\.1:(\d+)$", first.strip())
        assert match, first + (proc.stderr.read() if proc.poll() is not None else "")
        running = Serve(proc, int(match[1]), log)
        second = proc.stdout.readline()
        assert second == f"admin socket {tmp_path / 'loadbalancer.sock'}\n", second
        running.ctl = second.split(" ", 2)[2].strip()
        third = proc.stdout.readline()
        found = re.match(r"^haproxy pid \d+, runtime API (/\S+/admin\.sock)$", third)
        assert found, third
        running.admin = found[1]
        assert oct(os.stat(running.admin).st_mode & 0o777) == "0o600"
        assert oct(os.stat(running.ctl).st_mode & 0o777) == "0o600"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # up once a request goes through
            with contextlib.suppress(OSError):
                wire = HttpWire(running.port, timeout=2)
                try:
                    if wire.request("somma 1 1").status == 200:
                        break
                finally:
                    wire.close()
            time.sleep(0.1)
        kids = descendants(proc.pid)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@needs_haproxy
def test_serve_rotates_per_request_and_sigterm_leaves_nothing(serve: Serve) -> None:
    wire = HttpWire(serve.port)
    try:
        names = [wire.request(f"somma {i} 2").json["server"] for i in range(6)]
    finally:
        wire.close()
    assert names[:3] == names[3:] and sorted(names[:3]) == ["server1", "server2", "server3"]
    kids = descendants(serve.proc.pid)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in kids]
    assert sum(c.split(b"\0")[0].endswith(b"haproxy") for c in commands) == 1
    assert sum(b"backends.server" in c for c in commands) == 3
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(15) == 0
    time.sleep(0.2)
    assert not [pid for pid in kids if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]]


@needs_haproxy
def test_a_drain_on_haproxys_socket_shows_in_serve_and_in_the_rotation(serve: Serve) -> None:
    assert admin(serve.admin, "set server servers/server2 state drain").strip() == ""
    said: list[str] = []
    deadline = time.monotonic() + 10
    while not any(x.startswith("server2 UP -> DRAINING: haproxy DRAIN") for x in said):
        assert time.monotonic() < deadline, said
        said.append(serve.line(max(0.0, deadline - time.monotonic())))
    wire = HttpWire(serve.port)
    try:
        names = {wire.request("somma 1 1").json["server"] for _ in range(6)}
    finally:
        wire.close()
    assert names == {"server1", "server3"}
    stat = admin(serve.admin, "show stat")
    rows = [line.split(",") for line in stat.splitlines() if line.startswith("servers,server")]
    assert {r[1]: r[17] for r in rows}["server2"] == "DRAIN"


@needs_haproxy
def test_client_http_through_haproxy(serve: Serve) -> None:
    script = "somma 3 4\n3 * 4\ndivisione 1 0\nrandom 300\nexit\n"
    done = subprocess.run([sys.executable, "-m", "app.cli", "client", "--http", "-q",
                           f"127.0.0.1:{serve.port}"], input=script, capture_output=True,
                          text=True, timeout=60, env=_env())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("#1 somma 3 4 = 7")
    assert lines[1].startswith("#2 moltiplicazione 3 4 = 12")
    assert "division by zero" in lines[2]
    summary = lines[3]
    assert summary.startswith("random 300: 300 answers, 0 errors"), summary
    assert "server1 100 / server2 100 / server3 100" in summary


def test_missing_haproxy_is_one_clear_line_and_status_1(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--engine", "haproxy",
                           "--port", "0", "--log-file", "-"], capture_output=True, text=True,
                          timeout=30, env=_env(PATH=str(tmp_path)), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "lbconsole: haproxy not found on PATH: install it (apt-get install haproxy) "
        "or use --engine builtin"]


@needs_haproxy
async def test_the_http_load_generator_checks_every_answer(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        servers = start_servers(procs, 2, http=True)
        haproxy = start_haproxy(procs, servers, 15, http=True)
        totals = await run_load([("127.0.0.1", haproxy.port)], connections=4, depth=8,
                                requests=2000, http=True)
        assert totals.ok, totals
        assert totals.answered == 2000 and totals.samples > 0
        # The same generator, pointed at a server's line-protocol port over HTTP,
        # finds nothing right: the check is real.
        wrong = await run_load([("127.0.0.1", servers[0].http_port)], connections=1, depth=1,
                               requests=5, http=False, stall=2)
        assert not wrong.ok
    finally:
        procs.stop_all()


@needs_haproxy
def test_bench_measures_haproxy_http_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.bench.bench import bench_main
    from app.cli import build_parser

    args = build_parser().parse_args([
        "bench", "-n", "2000", "--rounds", "2", "-c", "4", "-d", "8",
        "--pingpong-requests", "200", "--targets", "direct,haproxy-http", "--timeout", "30",
        "--json"])
    code = bench_main(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    result = report["targets"]["haproxy-http"]
    assert result["status"] == "ok", result
    from app.bench.bench import HTTP_SHARE

    # A round is 2000 / 2 requests, and an HTTP target gets a tenth of them.
    assert result["load"]["answered"] == 1000 // HTTP_SHARE and result["load"]["ok"]
    assert result["pingpong"]["ok"] and result["pingpong"]["answered"] == 200
    assert "per request" in result["note"]

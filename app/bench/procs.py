"""The processes `lbconsole bench` runs: servers, balancers, HAProxy and the load generator.

Every process is started here, remembered, and stopped by pid (SIGTERM, then
SIGKILL) when the bench ends, also on Ctrl-C or an error. Each child also gets
SIGTERM from the kernel if the bench itself dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_READY = re.compile(r"^ready (\S+) (\S+):(\d+) pid (\d+)", re.M)
_HTTP = re.compile(r"^http (\S+) (\S+):(\d+)", re.M)
_LISTENING = re.compile(r"^listening on (\S+):(\d+)", re.M)
_ROOT = str(Path(__file__).resolve().parents[2])
_PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """A process the bench needs could not be started or did not answer."""


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM if the bench dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Running:
    """A started process, where its output goes, and the address it serves (once known)."""

    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    host: str = "127.0.0.1"
    port: int = 0
    http_port: int = 0
    """A server's HTTP/1.1 port (servers started with http=True)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def tail(self, lines: int = 3) -> str:
        """The last lines of its stderr (or stdout), to explain a failure."""
        for path in (self.err, self.out):
            with contextlib.suppress(OSError):
                text = path.read_text("utf-8", "replace").strip()
                if text:
                    return " | ".join(text.splitlines()[-lines:])
        return ""


class Processes:
    """Owns every child of the bench; `stop_all()` leaves none behind."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Running] = []
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_ROOT, self.env.get("PYTHONPATH")) if p)

    def start(self, name: str, args: list[str], *, stdin_pipe: bool = False) -> Running:
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=fout, stderr=ferr, env=self.env, cwd=self.workdir,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        running = Running(name, proc, out, err)
        self.running.append(running)
        return running

    def stop(self, running: Running, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to `grace`, then SIGKILL; returns the exit code."""
        proc = running.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if running in self.running:
            self.running.remove(running)
        return proc.returncode

    def stop_all(self) -> None:
        for running in reversed(list(self.running)):
            with contextlib.suppress(Exception):
                self.stop(running, grace=3.0)

    def wait_for_line(self, running: Running, pattern: re.Pattern[str],
                      timeout: float) -> re.Match[str]:
        """Poll the process's stdout file for a line; BenchError on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                text = running.out.read_text("utf-8", "replace")
                match = pattern.search(text)
                if match is not None:
                    return match
            code = running.proc.poll()
            if code is not None:
                detail = running.tail()
                raise BenchError(f"{running.name} exited with code {code} before it was ready"
                                 + (f": {detail}" if detail else ""))
            if time.monotonic() > deadline:
                raise BenchError(f"{running.name} printed no ready line within {timeout:g}s")
            time.sleep(0.02)

    def run_json(self, name: str, args: list[str], timeout: float) -> dict:
        """Run a process to completion and read the one JSON object it prints."""
        running = self.start(name, args)
        try:
            running.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(running, grace=1.0)
            raise BenchError(f"{name} did not finish within {timeout:g}s") from None
        self.stop(running)
        text = running.out.read_text("utf-8", "replace").strip()
        try:
            return json.loads(text.splitlines()[-1])
        except (IndexError, ValueError):
            raise BenchError(f"{name} printed no result (exit code {running.proc.returncode})"
                             f": {running.tail()}") from None


# ------------------------------------------------------------------ starting targets


def start_servers(procs: Processes, count: int, timeout: float = 15.0,
                  http: bool = False) -> list[Running]:
    """`python -m backends.server` × count, on free ports; stdin held so they die with us.
    With `http`, each also serves HTTP/1.1 on a free port (for haproxy-http)."""
    servers = []
    extra = ["--http-port", "0"] if http else []
    for index in range(1, count + 1):
        name = f"server{index}"
        servers.append(procs.start(name, [
            sys.executable, "-m", "backends.server", "--name", name, "--port", "0",
            "--exit-on-stdin-eof", *extra], stdin_pipe=True))
    for server in servers:
        match = procs.wait_for_line(server, _READY, timeout)
        server.host, server.port = match[2], int(match[3])
        if http:
            server.http_port = int(procs.wait_for_line(server, _HTTP, timeout)[3])
    return servers


def start_balancer(procs: Processes, name: str, args: list[str], servers: list[Running],
                   timeout: float) -> Running:
    """A balancer (`serve` or the headless console) over our servers, once all are UP."""
    backends = [a for s in servers for a in ("--backend", s.address)]
    running = procs.start(name, [sys.executable, "-m", "app.cli", *args, "--port", "0",
                                 "--servers", "0", *backends])
    match = procs.wait_for_line(running, _LISTENING, timeout)
    running.host, running.port = match[1], int(match[2])
    wait_servers_up(running, len(servers), timeout)
    return running


def wait_servers_up(running: Running, count: int, timeout: float) -> None:
    """Ask the balancer `ping` until it says every server is UP."""
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise BenchError(f"{running.name} exited with code {running.proc.returncode}: "
                             f"{running.tail()}")
        with contextlib.suppress(OSError, ValueError), socket.create_connection(
                (running.host, running.port), timeout=1.0) as sock:
            sock.sendall(b"ping\n")
            said = sock.makefile("rb").readline().decode("utf-8", "replace").strip()
            if json.loads(said).get("servers_up") == count:
                return
        time.sleep(0.05)
    raise BenchError(f"{running.name}: not all {count} servers UP within {timeout:g}s "
                     f"(last pong: {said or 'none'})")


def haproxy_path() -> str | None:
    return shutil.which("haproxy")


HAPROXY_CONFIG = """\
# Written by lbconsole bench: tcp mode, one thread (as the Python balancer), round robin.
global
    maxconn 4096
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
listen bench
    bind 127.0.0.1:{port}
    balance roundrobin
{servers}
"""


HAPROXY_HTTP_CONFIG = """\
# Written by lbconsole bench: http mode (a server per request), keep-alive, one thread.
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
listen bench
    bind 127.0.0.1:{port}
    balance roundrobin
{servers}
"""


def start_haproxy(procs: Processes, servers: list[Running], timeout: float,
                  http: bool = False) -> Running:
    """HAProxy in the foreground (-db) on a free port, round robin over our servers:
    per connection (tcp mode) or, with `http`, per request over their HTTP ports."""
    binary = haproxy_path()
    if binary is None:
        raise BenchError("haproxy not found on PATH")
    port = free_port()
    name = "haproxy-http" if http else "haproxy"
    config = procs.workdir / f"{name}.cfg"
    template = HAPROXY_HTTP_CONFIG if http else HAPROXY_CONFIG
    config.write_text(template.format(port=port, servers="\n".join(
        f"    server {s.name} {s.host}:{s.http_port if http else s.port}" for s in servers)))
    running = procs.start(name, [binary, "-db", "-f", str(config)])
    running.port = port
    deadline = time.monotonic() + timeout
    while True:
        if running.proc.poll() is not None:
            raise BenchError(f"haproxy exited with code {running.proc.returncode}: "
                             f"{running.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return running
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"haproxy not listening on {port} within {timeout:g}s") from None
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ measuring processes


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, limit: float = 3.0, window: float = 0.1, idle: float = 0.1) -> float:
    """Wait until a process is at rest (under `idle` of a core for one `window`), at
    most `limit` seconds; returns how long it took. A target is measured at rest,
    not while it is still starting up (the console's Textual start-up runs on for a
    few hundred milliseconds after it listens)."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while before is not None and time.monotonic() - started < limit:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now is None or now - before < idle * window:
            break
        before = now
    return time.monotonic() - started


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (the `cpu` line of /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    busy = sum(int(f) for f in fields[1:4]) + sum(int(f) for f in fields[6:9])
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU of the children this process has waited for (the finished generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def machine() -> dict:
    """Cores, CPU model, Python version and whether uvloop is in use."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop  # noqa: F401

        uvloop_on = not os.environ.get("LBCONSOLE_NO_UVLOOP")
    except ImportError:
        uvloop_on = False
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop": uvloop_on,
        "haproxy": haproxy_version(),
    }


def haproxy_version() -> str | None:
    binary = haproxy_path()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, timeout=5, text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\S+)", out)
    return match[1] if match else None

"""Calculation servers inside the lab's hosts and `lbconsole serve` outside, as processes.

Each process's stdout is read by a thread that stamps every line with the
monotonic time it arrived, so a test can say when `serve` reported a state
change (`h1 UP -> DOWN: no answer for 1.0s`) relative to when it cut a link.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.netlab.lab import NetLab

SERVER = [sys.executable, "-m", "backends.server"]
"""Until `lbconsole server` lands; same ready line: `ready NAME ADDR:PORT pid PID`."""
SERVE = [sys.executable, "-m", "app.cli", "serve"]
_READY = re.compile(r"ready (\S+) (\S+):(\d+) pid (\d+)")
_CHANGE = re.compile(r"(\S+) (\w+) -> (\w+): (.*)")


@dataclass(frozen=True)
class Change:
    """One state-change line of `serve`: when it arrived, server, old, new, reason."""

    at: float
    name: str
    old: str
    new: str
    reason: str


@dataclass
class Lines:
    """A process's stdout lines as they arrive, stamped with time.monotonic()."""

    process: subprocess.Popen
    stderr: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
        self.closed.set()

    def first(self, timeout: float) -> str:
        """The first line (the ready/listening line), or AssertionError with stderr."""
        deadline = time.monotonic() + timeout
        while not self.lines and not self.closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.lines:
            raise AssertionError(f"no first line from {self.process.args}: "
                                 f"{self.stderr.read_text()[-2000:]}")
        return self.lines[0][1]


@dataclass
class Serve:
    """`lbconsole serve` in the default namespace, with the lab's hosts as backends."""

    lines: Lines
    port: int
    log: Path

    def changes(self) -> list[Change]:
        out = []
        for at, line in list(self.lines.lines):
            m = _CHANGE.fullmatch(line)
            if m:
                out.append(Change(at, m[1], m[2], m[3], m[4]))
        return out

    def change(self, name: str, new: str, after: float) -> Change | None:
        """The first change of `name` to `new` that arrived after `after`."""
        return next((c for c in self.changes() if c.name == name and c.new == new
                     and c.at >= after), None)

    def state(self, name: str) -> str:
        """The last state `serve` reported for `name` (STARTING before any)."""
        last = [c.new for c in self.changes() if c.name == name]
        return last[-1] if last else "STARTING"


def _spawn(lab: NetLab, argv: list[str], stderr: Path, host: str | None = None,
           **popen: object) -> Lines:
    with stderr.open("w") as err:
        process = lab.spawn(argv, host=host, stdout=subprocess.PIPE, stderr=err, text=True,
                            **popen)
    return Lines(process, stderr)


def start_servers(lab: NetLab, folder: Path, timeout: float = 15.0) -> dict[str, int]:
    """One calculation server per host, on its address; their ports by host name.
    (The servers' stdin is a pipe we hold: if this process dies, they exit too.)"""
    started = {}
    for name, host in lab.hosts.items():
        started[name] = _spawn(lab, [*SERVER, "--name", name, "--host", host.address,
                                     "--port", "0", "--exit-on-stdin-eof"],
                               folder / f"{name}.stderr", host=name, stdin=subprocess.PIPE)
    ports = {}
    for name, lines in started.items():
        first = lines.first(timeout)
        m = _READY.fullmatch(first)
        assert m and m[1] == name and m[2] == lab.hosts[name].address, first
        assert int(m[4]) == lines.process.pid, "ip netns exec should exec the server itself"
        ports[name] = int(m[3])
    return ports


def start_serve(lab: NetLab, ports: dict[str, int], log: Path, *options: str,
                timeout: float = 20.0) -> Serve:
    """`serve --port 0 --servers 0 --backend hN=ADDR:PORT …`, once every host is UP."""
    backends = [a for name, port in ports.items()
                for a in ("--backend", f"{name}={lab.hosts[name].address}:{port}")]
    lines = _spawn(lab, [*SERVE, "--port", "0", "--servers", "0", "--log-file", str(log),
                         "--no-request-log", *backends, *options],
                   log.with_suffix(".stderr"))
    process = lines.process
    first = lines.first(timeout)
    m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", first)
    assert m, first
    serve = Serve(lines, int(m[1]), log)
    deadline = time.monotonic() + timeout
    while any(serve.state(name) != "UP" for name in ports):
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"not every host came UP: {[c for c in serve.changes()]}")
        time.sleep(0.02)
    return serve

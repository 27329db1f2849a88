"""A network lab on this machine: hosts as Linux network namespaces on a bridge.

Why: a partition (a host that goes silent: no RST, no FIN, nothing) cannot be
made on 127.0.0.1. Here every host is a namespace with its own address behind
a veth on a bridge in the default namespace, so the balancer reaches it over a
real network path that the lab can cut and heal.

Safety, in this order:
- The lab's whole range, 10.213.0.0/16, gets a blackhole route first (its own
  metric, so parallel labs coexist), so no packet for it can leave the machine;
  the hosts live in one more specific /24 on the bridge.
- Every object made is pushed on an undo stack at once; `down()` (always
  called by `with NetLab()` and by the pytest fixture) kills every process the
  lab started, by pid, and undoes the stack, even after a failure.
- Names carry a tag (pid + letter), so parallel runs never collide, and
  objects left by a lab whose process is gone (SIGKILL) are removed by the
  next lab before it records the state it must restore.

Partitions: `link_down(h)` takes the host's bridge port down; `block(h)` adds
its address to a set that a `bridge` nftables table of the lab drops in both
directions. Both are silent: the sender sees no error, only no answer.
(`tc netem` is not available on these kernels.)
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

RANGE = "10.213.0.0/16"
"""Addresses used only by this lab; blackholed in the default namespace."""
LOCK = Path("/run/lbnetlab.lock")
"""Held while a lab picks its /24, so two labs never pick the same one."""
STEP_TIMEOUT = 10.0
_labs = itertools.count()
# Tags are a pid and a letter: lbnb1234a (bridge), lbv21234a (veth), lbnh2-1234a (netns),
# lbnetlab1234a (nft table). The pid lets a later lab tell whether the owner still runs.
_TAGGED = re.compile(r"\blb(?:nb|v\d|nh\d-|netlab)(\d+)([a-z])\b")
_BLACKHOLE = re.compile(r"^blackhole 10\.213\.0\.0/16 metric (\d+)", re.M)


class LabError(RuntimeError):
    """A lab command failed: the command, its exit status and what it said."""


def sh(*argv: str, check: bool = True, timeout: float = STEP_TIMEOUT) -> str:
    """Run one command; its stdout, or LabError with its stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def unavailable() -> str | None:
    """Why the lab cannot run here (None if it can): root, `ip netns`, `nft`."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root (network namespaces need root; run `sudo make netlab`)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed (apt-get install {package})"
    probe = f"lbnh0-{os.getpid()}z"
    try:
        sh("ip", "netns", "add", probe)
    except (LabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    try:
        sh("nft", "list", "tables")
    except (LabError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`nft` does not work here: {exc}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def snapshot() -> dict[str, str]:
    """The default namespace's network state that a lab touches."""
    return {
        "ip netns list": sh("ip", "netns", "list"),
        "ip -o link": sh("ip", "-o", "link"),
        "ip route": sh("ip", "route"),
        "nft list ruleset": sh("nft", "list", "ruleset"),
    }


def _nft_blocks(ruleset: str) -> list[str]:
    """`nft list ruleset` split into its top-level `table …` blocks."""
    return [b for b in re.split(r"(?m)^(?=table )", ruleset) if b.strip()]


def others_removed(state: dict[str, str], tag: str) -> dict[str, str]:
    """The state without objects of other labs (tags other than `tag`): what a lab
    compares before and after, so a lab running in parallel does not count."""
    metric = _metric(tag)

    def foreign(text: str) -> bool:
        for m in _TAGGED.finditer(text):
            if m[1] + m[2] != tag:
                return True
        hole = _BLACKHOLE.search(text)
        return bool(hole and int(hole[1]) != metric)

    out = {}
    for key, text in state.items():
        parts = _nft_blocks(text) if key.startswith("nft") else text.splitlines(True)
        out[key] = "".join(p for p in parts if not foreign(p))
    return out


def _metric(tag: str) -> int:
    """The blackhole route's metric for a tag: unique per lab, fits in 32 bits."""
    return int(tag[:-1]) * 26 + ord(tag[-1]) - 97 + 1000


def remove_stale() -> list[str]:
    """Remove objects of labs whose process is gone; what was removed."""
    removed = []
    state = snapshot()
    dead = {m[1] + m[2] for text in state.values() for m in _TAGGED.finditer(text)
            if not _alive(int(m[1]))}
    for tag in sorted(dead):
        for ns in re.findall(rf"^(lbnh\d-{tag})\b", state["ip netns list"], re.M):
            sh("ip", "netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
        for link in re.findall(rf"^\d+: (lb(?:nb|v\d){tag})[@:]", state["ip -o link"], re.M):
            sh("ip", "link", "del", link, check=False)
            removed.append(f"link {link}")
        if f"table bridge lbnetlab{tag} " in state["nft list ruleset"]:
            sh("nft", "delete", "table", "bridge", f"lbnetlab{tag}", check=False)
            removed.append(f"nft table bridge lbnetlab{tag}")
    for metric in map(int, _BLACKHOLE.findall(state["ip route"])):
        owner = (metric - 1000) // 26
        if metric >= 1000 and not _alive(owner):
            sh("ip", "route", "del", "blackhole", RANGE, "metric", str(metric), check=False)
            removed.append(f"route blackhole {RANGE} metric {metric}")
    return removed


@dataclass(frozen=True)
class Host:
    """One lab host: a namespace with one address, reached through its bridge port."""

    name: str
    """h1, h2, h3."""
    netns: str
    address: str
    port_link: str
    """The veth end in the default namespace (the bridge port): `link_down` takes it down."""


class NetLab:
    """Three (or `hosts`) namespaces on a bridge; use as `with NetLab() as lab:`."""

    def __init__(self, hosts: int = 3) -> None:
        if not 1 <= hosts <= 9:
            raise ValueError("a lab has 1 to 9 hosts")
        self.count = hosts
        self.tag = f"{os.getpid()}{chr(97 + next(_labs) % 26)}"
        self.bridge = f"lbnb{self.tag}"
        self.table = f"lbnetlab{self.tag}"
        self.metric = _metric(self.tag)
        self.hosts: dict[str, Host] = {}
        self.gateway = ""
        """The bridge's address: the default namespace as the hosts see it."""
        self.before: dict[str, str] = {}
        self.stale_removed: list[str] = []
        self._undo: list[tuple[str, Callable[[], object]]] = []
        self._processes: list[subprocess.Popen] = []

    # ------------------------------------------------------------ building

    def __enter__(self) -> NetLab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _did(self, what: str, undo: Sequence[str]) -> None:
        self._undo.append((what, lambda: sh(*undo)))

    def up(self) -> None:
        """Blackhole the range, then build the bridge, the hosts and the nft table."""
        self.stale_removed = remove_stale()
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.before = others_removed(snapshot(), self.tag)
            # First of all: nothing for the range may leave the machine.
            sh("ip", "route", "add", "blackhole", RANGE, "metric", str(self.metric))
            self._did("blackhole route",
                      ["ip", "route", "del", "blackhole", RANGE, "metric", str(self.metric)])
            net = self._free_subnet()
            self.gateway = str(net[1])
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self._did("bridge", ["ip", "link", "del", self.bridge])
            sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.count + 1):
            self._add_host(f"h{i}", str(net[10 + i]), i)
        self._add_table()

    def _free_subnet(self) -> ipaddress.IPv4Network:
        used = set(re.findall(r"\b10\.213\.(\d+)\.", sh("ip", "-o", "addr") + sh("ip", "route")))
        start = os.getpid() % 254
        for k in range(254):
            third = (start + k) % 254 + 1
            if str(third) not in used:
                return ipaddress.IPv4Network(f"10.213.{third}.0/24")
        raise LabError("no free /24 left in 10.213.0.0/16")

    def _add_host(self, name: str, address: str, i: int) -> None:
        netns, port, peer = f"lbnh{i}-{self.tag}", f"lbv{i}{self.tag}", f"lbp{i}{self.tag}"
        sh("ip", "netns", "add", netns)
        self._did(f"netns {netns}", ["ip", "netns", "del", netns])
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", peer)
        self._did(f"veth {port}", ["ip", "link", "del", port])
        sh("ip", "link", "set", peer, "netns", netns)
        sh("ip", "-n", netns, "link", "set", peer, "name", "eth0")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "link", "set", port, "master", self.bridge, "up")
        self.hosts[name] = Host(name, netns, address, port)

    def _add_table(self) -> None:
        t = self.table
        sh("nft", "add", "table", "bridge", t)
        self._did(f"nft table {t}", ["nft", "delete", "table", "bridge", t])
        sh("nft", "add", "set", "bridge", t, "blocked", "{ type ipv4_addr; }")
        # Frames the default namespace sends to a host (output), a host sends to it
        # (input), and host to host (forward).
        for chain, hook in (("outbound", "output"), ("inbound", "input"), ("across", "forward")):
            sh("nft", "add", "chain", "bridge", t, chain,
               f"{{ type filter hook {hook} priority 0; policy accept; }}")
            sh("nft", "add", "rule", "bridge", t, chain, "ip", "saddr", "@blocked", "drop")
            sh("nft", "add", "rule", "bridge", t, chain, "ip", "daddr", "@blocked", "drop")

    # ------------------------------------------------------------ partitions

    def link_down(self, host: str) -> None:
        sh("ip", "link", "set", self.hosts[host].port_link, "down")

    def link_up(self, host: str) -> None:
        sh("ip", "link", "set", self.hosts[host].port_link, "up")

    def block(self, host: str) -> None:
        """Drop every IPv4 frame to or from the host's address (nftables)."""
        sh("nft", "add", "element", "bridge", self.table, "blocked",
           f"{{ {self.hosts[host].address} }}")

    def unblock(self, host: str) -> None:
        sh("nft", "delete", "element", "bridge", self.table, "blocked",
           f"{{ {self.hosts[host].address} }}")

    # ------------------------------------------------------------ processes

    def spawn(self, argv: Sequence[str], host: str | None = None,
              **popen: object) -> subprocess.Popen:
        """Start a process in a host's namespace (or the default one); killed by `down()`.

        `ip netns exec` execs the command itself, so the pid is the command's.
        """
        full = [*argv] if host is None else ["ip", "netns", "exec", self.hosts[host].netns,
                                             *argv]
        process = subprocess.Popen(full, **popen)  # type: ignore[call-overload]
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 3.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                return process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
        return process.wait(10)

    # ------------------------------------------------------------ teardown

    def down(self) -> None:
        """Kill the lab's processes, then undo every step, newest first. Raises LabError
        at the end if a step could not be undone (after trying all of them)."""
        for process in self._processes:
            with contextlib.suppress(Exception):
                self.stop(process)
        self._processes.clear()
        failed = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except (LabError, OSError, subprocess.TimeoutExpired) as exc:
                failed.append(f"{what}: {exc}")
        self.hosts.clear()
        if failed:
            raise LabError("teardown left something behind: " + "; ".join(failed))

    def leftovers(self) -> dict[str, tuple[str, str]]:
        """After `down()`: what differs from the state before `up()`, as (before, now)."""
        now = others_removed(snapshot(), self.tag)
        return {k: (self.before[k], now[k]) for k in now if now[k] != self.before.get(k)}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll every 10 ms until `predicate()` holds; seconds waited. AssertionError on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start

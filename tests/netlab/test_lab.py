"""The lab itself: hosts reachable, the range blackholed, partitions silent and healed,
and everything removed afterwards, also when the test body fails."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netlab.fleet import start_servers
from tests.netlab.lab import RANGE, NetLab, remove_stale, sh, snapshot
from tests.wire import pid_alive

pytestmark = pytest.mark.netns


def ping(address: str, port: int, timeout: float = 2.0) -> dict:
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(b"ping\n")
        return json.loads(sock.makefile().readline())


def test_hosts_are_reachable_and_the_range_cannot_leave(lab: NetLab, tmp_path: Path) -> None:
    routes = sh("ip", "route")
    assert f"blackhole {RANGE} metric {lab.metric}" in routes
    assert lab.gateway.startswith("10.213.") and lab.gateway.endswith(".1")
    ports = start_servers(lab, tmp_path)
    for name, host in lab.hosts.items():
        assert ping(host.address, ports[name])["pong"] == name
        # A host has only its /24: no default route, nothing beyond the bridge.
        inside = sh("ip", "-n", host.netns, "-4", "route")
        assert inside.split()[0] == f"{lab.gateway[:-2]}.0/24" and "default" not in inside
        assert "<LOOPBACK,UP," in sh("ip", "-n", host.netns, "-o", "link", "show", "lo")
    # Anything else in the range hits the blackhole (the kernel refuses to route it,
    # EINVAL) instead of going out by the default route.
    got = subprocess.run(["ip", "route", "get", "10.213.0.7"], capture_output=True, text=True)
    assert got.returncode != 0 and "Invalid argument" in got.stderr, got
    with pytest.raises(OSError) as refused, socket.socket() as sock:
        sock.settimeout(2)
        sock.connect(("10.213.0.7", 9))
    assert refused.value.errno == errno.EINVAL, refused.value  # not a timeout: not sent


def test_teardown_kills_and_removes_everything_when_the_body_fails(tmp_path: Path) -> None:
    before = snapshot()
    net = NetLab()
    with pytest.raises(RuntimeError, match="the test failed"), net:
        start_servers(net, tmp_path)
        pids = [p.pid for p in net._processes]
        names = [h.netns for h in net.hosts.values()]
        assert all(pid_alive(p) for p in pids) and len(pids) == 3
        raise RuntimeError("the test failed")
    assert not [p for p in pids if pid_alive(p)]
    assert not any(n in sh("ip", "netns", "list") for n in names)
    assert net.leftovers() == {}
    after = snapshot()
    for key in before:  # what this test can see, without the filter for parallel labs
        assert net.tag not in after[key], key


def test_objects_of_a_dead_lab_are_removed_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = f"{dead.pid}q"
    metric = dead.pid * 26 + ord("q") - 97 + 1000
    made = [("ip", "netns", "add", f"lbnh1-{tag}"),
            ("ip", "link", "add", f"lbnb{tag}", "type", "bridge"),
            ("ip", "route", "add", "blackhole", RANGE, "metric", str(metric)),
            ("nft", "add", "table", "bridge", f"lbnetlab{tag}")]
    try:
        for argv in made:
            sh(*argv)
        removed = remove_stale()
        assert {f"netns lbnh1-{tag}", f"link lbnb{tag}", f"nft table bridge lbnetlab{tag}",
                f"route blackhole {RANGE} metric {metric}"} <= set(removed)
        state = snapshot()
        assert not any(tag in text for text in state.values())
        assert f"metric {metric}" not in state["ip route"]
    finally:
        sh("ip", "netns", "del", f"lbnh1-{tag}", check=False)
        sh("ip", "link", "del", f"lbnb{tag}", check=False)
        sh("ip", "route", "del", "blackhole", RANGE, "metric", str(metric), check=False)
        sh("nft", "delete", "table", "bridge", f"lbnetlab{tag}", check=False)


@pytest.mark.parametrize("method", ["link", "nft"])
def test_a_partition_is_silent_and_heals(lab: NetLab, tmp_path: Path, method: str) -> None:
    """While cut, an open connection gets no answer and no error, and a new connection
    gets no refusal, just nothing; the other hosts are untouched; after the heal the
    open connection's answer arrives (TCP retransmits it) and new connections work."""
    ports = start_servers(lab, tmp_path)
    h1 = lab.hosts["h1"]
    cut, heal = (lab.link_down, lab.link_up) if method == "link" else (lab.block, lab.unblock)
    with socket.create_connection((h1.address, ports["h1"]), timeout=2) as open_conn:
        open_conn.sendall(b"somma 1 2\n")
        assert json.loads(open_conn.recv(4096))["result"] == 3
        cut("h1")
        try:
            open_conn.settimeout(0.7)
            open_conn.sendall(b"somma 2 3\n")  # buffered: no error for the sender
            with pytest.raises(TimeoutError):
                open_conn.recv(4096)
            with pytest.raises(TimeoutError):
                socket.create_connection((h1.address, ports["h1"]), timeout=0.7)
            assert ping(lab.hosts["h2"].address, ports["h2"])["pong"] == "h2"
        finally:
            heal("h1")
        open_conn.settimeout(10)
        start = time.monotonic()
        assert json.loads(open_conn.recv(4096))["result"] == 5
        assert time.monotonic() - start < 10
    assert ping(h1.address, ports["h1"])["pong"] == "h1"

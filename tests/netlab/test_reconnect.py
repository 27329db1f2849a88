"""What the balancer does with its connection to a silent host (issue 13 §2).

Seen from outside, with `ss` in the default namespace: once `serve` has marked
a partitioned host DOWN, the connection it had to that host must not stay
ESTABLISHED (keepalive / TCP_USER_TIMEOUT, or closing it), `serve` must try to
reconnect while the partition lasts (SYN-SENT sockets towards the host), and
after the heal the host must be UP on a new connection and answer again.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from tests.netlab.fleet import Serve, start_serve, start_servers
from tests.netlab.lab import NetLab, sh

pytestmark = pytest.mark.netns

REQUEST_TIMEOUT = 1.0
HOLD = 3.0
"""Seconds the partition lasts after DOWN: time for the connection to go and for retries."""


def sockets(state: str, address: str, port: int) -> set[int]:
    """Local ports of this namespace's TCP sockets in `state` towards address:port."""
    out = sh("ss", "-tnH", "state", state, "dst", f"{address}:{port}")
    return {int(m[1]) for m in re.finditer(r"\S+:(\d+)\s+\S+:\d+\s*$", out, re.M)}


def answered_by(serve: Serve, count: int) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        sock.sendall(b"".join(b'{"id":%d,"op":"somma","a":1,"b":1}\n' % i
                              for i in range(1, count + 1)))
        lines = sock.makefile("rb")
        got: dict[str, int] = {}
        for _ in range(count):
            answer = json.loads(lines.readline())
            assert answer.get("result") == 2, answer
            got[answer["server"]] = got.get(answer["server"], 0) + 1
    return got


@pytest.mark.parametrize("method", ["link down", "nftables drop"])
def test_a_silent_hosts_connection_is_dropped_retried_and_replaced(
        lab: NetLab, tmp_path: Path, method: str) -> None:
    ports = start_servers(lab, tmp_path)
    serve = start_serve(lab, ports, tmp_path / "serve.log",
                        "--request-timeout", str(REQUEST_TIMEOUT), "--check-interval", "0.2",
                        "--check-timeout", "0.5", "--rise", "2", "--fall", "2")
    h1, port = lab.hosts["h1"].address, ports["h1"]
    old = sockets("established", h1, port)
    assert len(old) == 1, f"serve should hold one connection to h1, has {old}"
    cut, heal = (lab.link_down, lab.link_up) if method == "link down" else \
        (lab.block, lab.unblock)
    cut("h1")
    cut_at = time.monotonic()
    facts: dict[str, object] = {}
    try:
        while serve.change("h1", "DOWN", cut_at) is None:
            assert time.monotonic() - cut_at < REQUEST_TIMEOUT + 5, "h1 never went DOWN"
            time.sleep(0.01)
        down_at = time.monotonic()
        attempts: set[int] = set()
        dropped_after = None
        while time.monotonic() - down_at < HOLD:
            attempts |= sockets("syn-sent", h1, port)
            if dropped_after is None and not old & sockets("established", h1, port):
                dropped_after = time.monotonic() - down_at
            time.sleep(0.05)
        facts = {"dropped after DOWN": dropped_after, "reconnect attempts": len(attempts),
                 "still established": sorted(old & sockets("established", h1, port))}
    finally:
        heal("h1")
    healed = time.monotonic()
    while serve.change("h1", "UP", healed) is None:
        assert time.monotonic() - healed < 10, f"h1 not UP 10 s after the heal; {facts}"
        time.sleep(0.02)
    new = sockets("established", h1, port)
    facts["after heal"] = sorted(new)
    log = "\n".join(line for _, line in serve.lines.lines)
    assert facts["dropped after DOWN"] is not None, (
        f"serve kept its connection to the silent host ESTABLISHED for {HOLD:g}s after "
        f"marking it DOWN: {facts}\n{log}")
    assert facts["dropped after DOWN"] <= REQUEST_TIMEOUT + 1.0, f"{facts}\n{log}"
    assert facts["reconnect attempts"], f"no reconnect attempt during the partition: {facts}"
    assert len(new) == 1 and not new & old, f"h1 should be UP on one new connection: {facts}"
    assert answered_by(serve, 30).get("h1") == 10

"""Where the lab cannot run, the suite is skipped with one line saying why; and the
state comparison ignores labs of other processes, only theirs (no namespaces needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netlab import lab
from tests.netlab.lab import others_removed, unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_not_root_and_missing_tools_are_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable().startswith("not root")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nft" else "/bin/x")
    assert unavailable() == "`nft` not installed (apt-get install nftables)"


def test_a_user_who_cannot_run_it_gets_one_line_why() -> None:
    """Run the lab tests as an ordinary user: all skipped, one line that says why."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/netlab/test_lab.py"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: cannot become an ordinary user")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LBNETLAB_REQUIRE", None)
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    lines = result.stdout.splitlines()
    why = [line for line in lines if line.startswith("netns suite skipped: ")]
    assert why == ["netns suite skipped: not root (network namespaces need root; run "
                   "`sudo make netlab`)"], result.stdout + result.stderr
    assert result.returncode == 0 and " skipped" in lines[-1] and "passed" not in lines[-1]


def test_make_netlab_refuses_instead_of_skipping() -> None:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "netns",
            "tests/netlab/test_lab.py"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: cannot become an ordinary user")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "LBNETLAB_REQUIRE": "1"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "the netns suite cannot run here: not root" in result.stdout + result.stderr


def test_the_comparison_ignores_other_labs_only() -> None:
    mine, other = "4242a", "777b"
    state = {
        "ip netns list": f"lbnh1-{mine} (id: 3)\nlbnh1-{other} (id: 4)\nsomeones-ns\n",
        "ip -o link": f"7: lbnb{other}: <BROADCAST>\n8: lbnb{mine}: <BROADCAST>\n9: br0: x\n",
        "ip route": (f"blackhole 10.213.0.0/16 metric {lab._metric(mine)} \n"
                     f"blackhole 10.213.0.0/16 metric {lab._metric(other)} \n"
                     f"10.213.9.0/24 dev lbnb{other} proto kernel\n"
                     "blackhole 10.213.0.0/16 \n"),
        "nft list ruleset": (f"table bridge lbnetlab{other} {{\n}}\n"
                             f"table bridge lbnetlab{mine} {{\n}}\ntable inet filter {{\n}}\n"),
    }
    kept = others_removed(state, mine)
    assert kept["ip netns list"] == f"lbnh1-{mine} (id: 3)\nsomeones-ns\n"
    assert kept["ip -o link"] == f"8: lbnb{mine}: <BROADCAST>\n9: br0: x\n"
    assert kept["ip route"] == (f"blackhole 10.213.0.0/16 metric {lab._metric(mine)} \n"
                                "blackhole 10.213.0.0/16 \n")
    assert kept["nft list ruleset"] == (f"table bridge lbnetlab{mine} {{\n}}\n"
                                        "table inet filter {\n}\n")

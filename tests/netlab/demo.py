"""Build the lab by hand and keep it up: `sudo .venv/bin/python -m tests.netlab.demo`.

Starts a calculation server in each host, prints the `lbconsole serve` line that
uses them and the commands that partition and heal each host, then waits for
Ctrl-C (or SIGTERM) and removes everything, as the tests do.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.netlab.fleet import start_servers
from tests.netlab.lab import NetLab, unavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netlab.demo", description=__doc__)
    parser.add_argument("--hosts", type=int, default=3, help="hosts h1..hN (1-9, default 3)")
    args = parser.parse_args(argv)
    why = unavailable()
    if why:
        print(f"the lab cannot run here: {why}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="lbnetlab-") as folder, NetLab(args.hosts) as lab:
        ports = start_servers(lab, Path(folder))
        backends = " ".join(f"--backend {n}={h.address}:{ports[n]}" for n, h in lab.hosts.items())
        print(f"lab {lab.tag} up; servers' stderr in {folder}")
        for name, host in lab.hosts.items():
            print(f"  {name} {host.address}:{ports[name]}  (ip netns exec {host.netns} …)")
        print(f"\nlbconsole serve --servers 0 {backends}\n")
        for name, host in lab.hosts.items():
            element = f"'{{ {host.address} }}'"
            print(f"partition {name}: ip link set {host.port_link} down"
                  f"   | heal: ip link set {host.port_link} up")
            print(f"        or: nft add element bridge {lab.table} blocked {element}"
                  f"   | heal: nft delete element bridge {lab.table} blocked {element}")
        print("\nCtrl-C removes the lab.", flush=True)
        stop.wait()
    left = lab.leftovers()
    print("lab removed" + (f", but these changed: {left}" if left else ", nothing left behind"))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())

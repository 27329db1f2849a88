"""Compare `random N` typed into the console with the same batch from `lbconsole client`.

    python -m app.bench.console_vs_client [N] [--rounds 3]

Alternates, round by round: `lbconsole serve --port 0` driven by
`lbconsole client -q` (two processes), then the console (headless, Pilot-driven,
UI ticking, via app/bench/console_batch.py), and prints each rate and the ratio.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LBCONSOLE = [sys.executable, "-m", "app.cli"]
RATE = re.compile(r"\(([\d,]+) req/s\)")


def client_to_serve(n: int, workdir: Path) -> float:
    serve = subprocess.Popen([*LBCONSOLE, "serve", "--port", "0", "--log-file",
                              str(workdir / "serve.log")], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert serve.stdout is not None
        port = serve.stdout.readline().strip().rsplit(":", 1)[1]
        # Wait for the three servers: the balancer answers ping itself.
        for _ in range(200):
            out = subprocess.run([*LBCONSOLE, "client", f"127.0.0.1:{port}", "--json"],
                                 input="ping\n", capture_output=True, text=True, cwd=ROOT)
            if '"servers_up":3' in out.stdout:
                break
        result = subprocess.run([*LBCONSOLE, "client", "-q", f"127.0.0.1:{port}"],
                                input=f"random {n}\n", capture_output=True, text=True,
                                cwd=ROOT, timeout=600)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    return _rate(result.stdout)


def console(n: int) -> tuple[float, str]:
    result = subprocess.run([sys.executable, "-m", "app.bench.console_batch", str(n)],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    peak = next((line for line in result.stdout.splitlines() if "VmHWM" in line), "")
    return _rate(result.stdout), peak


def _rate(text: str) -> float:
    found = RATE.findall(text)
    if not found:
        raise SystemExit(f"no rate in:\n{text}")
    return float(found[-1].replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(1, args.rounds + 1):
            base = client_to_serve(args.n, Path(tmp))
            ui, peak = console(args.n)
            ratios.append(ui / base)
            print(f"round {index}: client->serve {base:,.0f} req/s, console {ui:,.0f} req/s, "
                  f"ratio {ui / base:.2f}  ({peak.strip()})", flush=True)
    print(f"median ratio {statistics.median(ratios):.2f} over {len(ratios)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())

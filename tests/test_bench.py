"""`lbconsole bench` and its load generator: every answer checked, every process stopped."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.bench import bench as bench_module
from app.bench.bench import bench_main
from app.bench.loadgen import POOL_SIZE, build_pool, ping_pong, run_load
from app.bench.procs import settle
from app.bench.report import add_ratios, goals, paired_ratio
from app.cli import build_parser
from backends.server import CalcServer

FIELDS = ("requests", "answered", "errors", "wrong", "duplicates", "missing", "elapsed",
          "req_per_s", "p50_ms", "p99_ms")


def test_pool_expectations_match_what_a_server_answers() -> None:
    lines, expected = build_pool(POOL_SIZE, seed=3)
    server = CalcServer("check")
    for seq, (line, want) in enumerate(zip(lines, expected, strict=True), start=1):
        assert server.answer(line.rstrip(b"\n"), seq) == b'{"id":%d%b}\n' % (seq, want)


async def test_generator_counts_wrong_duplicate_and_missing_answers() -> None:
    """A server that lies once, repeats once and forgets once: each is counted, none hides."""
    calc = CalcServer("liar")

    class Liar(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""
            self.seq = 0

        def data_received(self, data: bytes) -> None:
            *lines, self.buffer = (self.buffer + data).split(b"\n")
            out = []
            for line in lines:
                self.seq += 1
                answer = calc.answer(line, self.seq)
                if self.seq == 3:
                    answer = answer.replace(b'"result":', b'"result":1')
                elif self.seq == 5:
                    out.append(answer)
                elif self.seq == 7:
                    continue
                out.append(answer)
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]

    server = await asyncio.get_running_loop().create_server(Liar, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        totals = await run_load([("127.0.0.1", port)], connections=1, depth=4, requests=20,
                                stall=0.3, timeout=10)
    finally:
        server.close()
    assert (totals.wrong, totals.duplicates, totals.missing) == (1, 1, 1)
    assert totals.answered == 19
    assert totals.error is not None and "stalled" in totals.error
    assert not totals.ok


async def test_ping_pong_checks_every_answer_and_takes_turns() -> None:
    """Two targets, one of them lying once: both measured, the lie counted, not ok."""
    calc = CalcServer("pp")
    served: list[int] = []

    def make(port_index: int) -> type[asyncio.Protocol]:
        class OneAtATime(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.seq = 0

            def data_received(self, data: bytes) -> None:
                for line in data.split(b"\n")[:-1]:
                    self.seq += 1
                    served.append(port_index)
                    answer = calc.answer(line, self.seq)
                    if port_index == 1 and self.seq == 250:
                        answer = answer.replace(b'"result":', b'"result":1')
                    self.transport.write(answer)  # type: ignore[attr-defined]

        return OneAtATime

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(make(i), "127.0.0.1", 0) for i in range(2)]
    targets = [(f"t{i}", ("127.0.0.1", s.sockets[0].getsockname()[1]))
               for i, s in enumerate(servers)]
    try:
        report = await asyncio.to_thread(ping_pong, targets, 300, slice_size=50, warmup=10,
                                         timeout=20, stall=5)
    finally:
        for server in servers:
            server.close()
    t0, t1 = report["targets"]["t0"], report["targets"]["t1"]
    assert t0["answered"] == t1["answered"] == 300
    assert t0["ok"] and t0["wrong"] == 0 and t0["p50_ms"] > 0
    assert t1["wrong"] == 1 and not t1["ok"] and not report["ok"]
    # Taking turns: after the warm-up, runs of exactly one slice per target.
    runs = [len(list(group)) for _, group in itertools.groupby(served[20:])]
    assert max(runs) <= 100 and set(runs) <= {50, 100}


async def test_generator_reports_a_refused_connection() -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    totals = await run_load([("127.0.0.1", port)], requests=10, timeout=5)
    assert totals.error is not None and "cannot connect" in totals.error
    assert totals.missing == 10 and not totals.ok


def test_ratios_pair_the_rounds() -> None:
    # A slow spell in round 2 hits both targets: the pairs see through it.
    a = {"req_per_s": 300.0, "rounds_req_per_s": [500.0, 100.0, 300.0]}
    b = {"req_per_s": 900.0, "rounds_req_per_s": [1000.0, 200.0, 900.0]}
    assert paired_ratio(a, b) == 0.5  # pairs 0.5, 0.5, 0.333; ratio of medians 0.333
    even = {"rounds_req_per_s": [100.0, 200.0, 300.0, 400.0]}
    base = {"rounds_req_per_s": [100.0, 100.0, 100.0, 100.0]}
    assert paired_ratio(even, base) == 2.5
    # Rounds that do not pair up (one target failed a round): medians.
    assert paired_ratio({"req_per_s": 10.0, "rounds_req_per_s": [10.0]}, b) == 10 / 900
    assert paired_ratio({"req_per_s": None}, b) is None


def test_settle_waits_for_a_busy_process_and_not_for_an_idle_one() -> None:
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        time.sleep(0.3)  # both past their start-up
        assert settle(idle.pid, limit=1.0) < 0.5
        assert settle(busy.pid, limit=0.6) >= 0.6
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()


def test_bench_smoke_every_answer_right(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args([
        "bench", "-n", "3000", "--rounds", "2", "-c", "4", "-d", "16",
        "--pingpong-requests", "200",
        "--targets", "direct,serve,serve-leastconn,serve-p2c,console", "--timeout", "30",
        "--json"])
    code = bench_main(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert {"cores", "cpu", "python", "uvloop"} <= set(report["machine"])
    targets = report["targets"]
    ran = ["direct", "serve", "serve-leastconn", "serve-p2c"]
    if targets["console"]["status"] == "skipped":
        assert targets["console"]["reason"] == "headless console not available"
    else:
        ran.append("console")
    for name in ran:
        result = targets[name]
        assert result["status"] == "ok", result
        load = result["load"]
        assert set(FIELDS) <= set(load)
        assert load["answered"] == load["requests"] == 1500  # 3000 over 2 rounds
        assert len(result["rounds_req_per_s"]) == 2
        assert load["wrong"] == load["duplicates"] == load["missing"] == load["errors"] == 0
        pingpong = result["pingpong"]
        assert pingpong["ok"] and pingpong["answered"] == 200, pingpong
        assert pingpong["wrong"] == pingpong["errors"] == 0
        if name != "direct":
            assert pingpong["added_p50_ms"] == round(
                pingpong["p50_ms"] - targets["direct"]["pingpong"]["p50_ms"], 4)
        for key in ("req_per_s", "p50_ms", "p99_ms", "peak_rss_mb", "ratio_direct"):
            assert key in result
    assert targets["serve"]["peak_rss_mb"] is not None
    assert targets["direct"]["peak_rss_mb"] is None
    goals = {g["goal"]: g for g in report["goals"]}
    assert "serve >= 0.50 x direct" in goals
    for name, algorithm in (("serve-leastconn", "leastconn"), ("serve-p2c", "p2c")):
        ratio = targets[name]["ratio_serve"]
        assert ratio is not None and ratio > 0
        assert goals[f"{algorithm} >= 0.85 x serve"]["value"] == round(ratio, 3)
    assert "ratio_serve" not in targets["serve"] and "ratio_serve" not in targets["direct"]


def test_algorithm_targets_start_serve_with_their_algorithm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, list[str]] = {}

    def fake_start(procs: object, name: str, args: list[str], *rest: object) -> str:
        started[name] = args
        return name

    monkeypatch.setattr(bench_module, "start_balancer", fake_start)
    for name in ("serve", "serve-leastconn", "serve-p2c"):
        assert bench_module.start_target(name, None, [], tmp_path) == name  # type: ignore[arg-type]
    assert "--algorithm" not in started["serve"]
    assert started["serve-leastconn"][-2:] == ["--algorithm", "leastconn"]
    assert started["serve-p2c"][-2:] == ["--algorithm", "p2c"]
    # The same command as serve otherwise (per-request log on), so the ratio is the algorithm's.
    assert started["serve-p2c"][:2] == started["serve"][:2] == ["serve", "--log-file"]


def test_algorithm_ratios_pair_with_serve_in_the_same_run() -> None:
    def ok(*rounds: float) -> dict:
        return {"status": "ok", "req_per_s": sorted(rounds)[1], "rounds_req_per_s": list(rounds),
                "pingpong": {}}

    report = {"targets": {"direct": ok(200, 100, 200), "serve": ok(100, 50, 100),
                          "serve-leastconn": ok(90, 45, 90), "serve-p2c": ok(80, 80, 80)}}
    add_ratios(report)
    targets = report["targets"]
    assert targets["serve-leastconn"]["ratio_serve"] == 0.9
    assert targets["serve-p2c"]["ratio_serve"] == 0.8  # pairs 0.8, 1.6, 0.8
    assert targets["serve-p2c"]["ratio_direct"] == 0.4  # pairs 0.4, 0.8, 0.4
    met = {g["goal"]: g["met"] for g in goals(targets)}
    assert met["leastconn >= 0.85 x serve"] is True and met["p2c >= 0.85 x serve"] is False
    del targets["serve"]
    assert {g["goal"]: g["met"] for g in goals(targets)}["p2c >= 0.85 x serve"] is None

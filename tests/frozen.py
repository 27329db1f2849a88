"""A console source with fixed content, so screenshots are the same on every run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.runtime import ServerRow
from app.source import LatencyHistory
from balancer.client import BatchProgress
from balancer.routes import Route
from balancer.stats import BackendStats, BalancerStats

STAMP = "2026-01-15 10:30:00.000 "


def row(name: str, **values: object) -> ServerRow:
    index = int(name[-1])
    base: dict[str, object] = dict(
        name=name, pid=4000 + index, port=41000 + index, managed=True, state="UP",
        reason="first check passed in 1.2 ms", served=0, inflight=0, errors=0,
        redispatched=0, mean_ms=None, p99_ms=None, share=0.0, is_next=index == 1,
        history=(),
    )
    base.update(values)
    return ServerRow(**base)  # type: ignore[arg-type]


def stats(rows: Sequence[ServerRow], **values: object) -> BalancerStats:
    answered = sum(r.served + r.errors for r in rows)
    base: dict[str, object] = dict(
        address="127.0.0.1:5001", uptime=83.0, clients=1, requests=answered, answered=answered,
        errors=sum(r.errors for r in rows), redispatched=0, queued=0, expired=0, late=0,
        refused=0, discarded=0,
        rate=0.0, servers_up=sum(1 for r in rows if r.state == "UP"), backends=(),
    )
    base.update(values)
    return BalancerStats(**base)  # type: ignore[arg-type]


def log(*lines: str) -> list[bytes]:
    return [(STAMP + line + "\n").encode() for line in lines]


def answer(rid: int, op: str, a: int, b: int, result: object, server: str) -> bytes:
    return (f'{{"id":{rid},"op":"{op}","a":{a},"b":{b},"result":{result},'
            f'"server":"{server}"}}\n').encode()


def route(server: str, client: str, rid: int, text: str, origin: str | None = None) -> Route:
    """A routing record as the balancer makes one (text requests go as typed)."""
    return Route(0.0, server, client, int(client.lstrip("c")), str(rid), text.encode(), origin)


@dataclass
class FrozenSource:
    """Implements `ConsoleSource` from fixed data; actions only say what they would do."""

    server_rows: list[ServerRow]
    balancer_stats: BalancerStats
    route_list: list[Route] = field(default_factory=list)
    answer_list: list[tuple[float, bytes, float]] = field(default_factory=list)
    log_list: list[bytes] = field(default_factory=list)
    batch_per_server: dict[str, int] = field(default_factory=dict)
    address: str = "127.0.0.1:5001"
    log_path: str | None = "loadbalancer.log"
    actions: list[tuple[str, str]] = field(default_factory=list)
    history: LatencyHistory = field(default_factory=LatencyHistory)

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> str:
        return self.address

    async def stop(self) -> None:
        return None

    def stats(self) -> BalancerStats:
        return self.balancer_stats

    def rows(self, stats: BalancerStats) -> list[ServerRow]:
        return self.server_rows

    def routes(self) -> Sequence[Route]:
        return self.route_list

    def answers(self) -> Sequence[tuple[float, bytes, float]]:
        return self.answer_list

    def log_lines(self) -> tuple[int, Sequence[bytes]]:
        return len(self.log_list), self.log_list

    def event_lines(self) -> tuple[int, Sequence[bytes]]:
        events = [line for line in self.log_list if b'{"id"' not in line]
        return len(events), events

    def latency(self, stats: BalancerStats) -> LatencyHistory:
        return self.history

    async def request(self, line: str) -> dict:
        return {"id": 1, "op": "somma", "a": 3, "b": 4, "result": 7, "server": "server1"}

    async def batch(self, count: int, progress: BatchProgress) -> BatchProgress:
        progress.started = 100.0
        progress.sent = progress.answered = count
        progress.per_server = Counter(self.batch_per_server)
        progress.finished = 100.25
        return progress

    def resolve(self, which: str | int) -> str:
        names = [r.name for r in self.server_rows]
        if str(which).isdigit():
            index = int(which)
            if 1 <= index <= len(names):
                return names[index - 1]
            raise KeyError(f"no server {index} (there are {len(names)})")
        if which in names:
            return str(which)
        raise KeyError(f"no server named {which!r}")

    async def act(self, action: str, name: str) -> str:
        self.actions.append((action, name))
        return f"{name}: {action} (frozen)"

    async def add_server(self) -> str:
        self.actions.append(("add", ""))
        return "server4 added (frozen)"


# ---------------------------------------------------------------- scenes


def wave(second: int, base: float, swing: float, period: int) -> float:
    """A fixed, repeatable latency curve: a triangle wave, no randomness."""
    phase = second % period
    return round(base + swing * abs(phase - period / 2) / (period / 2), 3)


def latency_minute(down: dict[str, int] | None = None) -> LatencyHistory:
    """Sixty samples a second apart for server1..3; `down` maps a server to the second
    from which it has no samples (it died)."""
    down = down or {}
    history = LatencyHistory()
    for second in range(61):
        backends = []
        for i, name in enumerate(("server1", "server2", "server3")):
            gone = second >= down.get(name, 999)
            p50 = None if gone else wave(second, 0.3 + 0.25 * i, 0.2, 13 + i)
            p99 = None if gone else wave(second, 1.4 + 0.3 * i, 0.9, 17 + 2 * i)
            backends.append(backend(name, p50, p99))
        history.record(1000.0 + second, stats([], backends=tuple(backends)))
    return history


def backend(name: str, p50: float | None, p99: float | None) -> BackendStats:
    return BackendStats(name=name, address="127.0.0.1:0", state="UP", reason="", since=0.0,
                        served=0, errors=0, inflight=0, redispatched=0, late=0, mean_ms=p50,
                        p99_ms=p99, share=0.0, is_next=False, p50_ms=p50)


START_LOG = (
    "listening on 127.0.0.1:5001",
    "server1 added", "server2 added", "server3 added",
    "server1 spawning", "server2 spawning", "server3 spawning",
    "server1 process 4001 ready on 127.0.0.1:41001",
    "server2 process 4002 ready on 127.0.0.1:41002",
    "server3 process 4003 ready on 127.0.0.1:41003",
    "server1 STARTING -> UP: first check passed in 1.2 ms",
    "server2 STARTING -> UP: first check passed in 1.2 ms",
    "server3 STARTING -> UP: first check passed in 1.2 ms",
    "c1 connected from 127.0.0.1:50000",
)


def fresh_start() -> FrozenSource:
    rows = [row(f"server{i}") for i in (1, 2, 3)]
    return FrozenSource(rows, stats(rows, uptime=2.0), log_list=log(*START_LOG))


def server_killed() -> FrozenSource:
    rows = [
        row("server1", served=1204, inflight=12, mean_ms=0.42, p99_ms=1.9, share=0.5,
            is_next=False,
            history=(0, 0, 120, 310, 305, 298, 450, 612)),
        row("server2", pid=None, state="DOWN", reason="connection lost", served=600,
            redispatched=3, mean_ms=0.45, p99_ms=2.1, share=0.25, history=(0, 0, 120, 310,
                                                                            305, 298, 0, 0)),
        row("server3", served=604, inflight=48, mean_ms=0.40, p99_ms=1.7, share=0.25,
            is_next=True,
            history=(0, 0, 120, 310, 305, 298, 450, 611)),
    ]
    routes = [
        route("server1", "c1", 11, "somma 3 4"),
        route("server2", "c1", 12, "3 * 4"),
        route("server3", "c1", 13, "divisione 10 4"),
        route("server1", "c1", 12, "3 * 4", origin="server2"),
        route("server3", "c1", 14, "sottrazione 9 2"),
        route("server1", "c1", 15, "moltiplicazione 6 7"),
    ]
    answers = [
        (0.0, answer(11, "somma", 3, 4, 7, "server1"), 0.00041),
        (0.0, answer(13, "divisione", 10, 4, 2.5, "server3"), 0.00039),
        (0.0, answer(12, "moltiplicazione", 3, 4, 12, "server1"), 0.2512),
        (0.0, answer(14, "sottrazione", 9, 2, 7, "server3"), 0.00044),
        (0.0, b'{"id":15,"error":"division by zero","server":"server1"}\n', 0.00038),
    ]
    logs = log(*START_LOG, "operator: kill server2 (SIGKILL pid 4002)",
               "server2 UP -> DOWN: connection lost",
               "server2: re-dispatching 1 requests in flight (connection lost)",
               "server2 process 4002 killed by SIGKILL (unexpected)")
    return FrozenSource(rows, stats(rows, redispatched=3, rate=1061.0, uptime=95.0),
                        route_list=routes, answer_list=answers, log_list=logs,
                        history=latency_minute(down={"server2": 48}))


def after_batch() -> FrozenSource:
    history = (0, 0, 0, 0, 1200, 1330, 1334, 1290, 1333, 850, 0)
    rows = [
        row("server1", served=334, mean_ms=0.61, p99_ms=2.4, share=334 / 1000,
            is_next=False, history=history),
        row("server2", served=333, mean_ms=0.58, p99_ms=2.2, share=333 / 1000,
            is_next=True, history=history),
        row("server3", served=333, mean_ms=0.66, p99_ms=2.6, share=333 / 1000,
            is_next=False, history=history),
    ]
    ops = ("somma", "sottrazione", "moltiplicazione", "divisione")
    names = ("server1", "server2", "server3")
    routes = [route(names[i % 3], "c2", 990 + i, ops[i % 4]) for i in range(10)]
    answers = [(0.0, answer(990 + i, ops[i % 4], 10 + i, 5, [15 + i, 5 + i, 50 + 5 * i,
                                                            (10 + i) / 5][i % 4],
                            names[i % 3]), 0.0006) for i in range(10)]
    logs = log(*START_LOG, "c2 connected from 127.0.0.1:50002",
               *(f'c2 {a[1].decode().strip()}' for a in answers),
               "c2 closed its side after 1000 requests")
    return FrozenSource(rows, stats(rows, uptime=130.0), route_list=routes, answer_list=answers,
                        log_list=logs, batch_per_server={"server1": 334, "server2": 333,
                                                         "server3": 333})



def lab() -> FrozenSource:
    """Weighted, one server flaky and ejected, one slow with a queue, one remote host."""
    rows = [
        row("server1", weight=3, served=41_230, inflight=9, workers=4, queued=0,
            mean_ms=6.1, p99_ms=19.8, share=0.46, is_next=True, host="127.0.0.1",
            history=(0, 310, 405, 398, 402)),
        row("server2", weight=3, state="EJECTED", served=20_114, errors=0, workers=4,
            injected={"flaky": 0.3}, faults=212, retries=188, ejections=2, mean_ms=5.8,
            p99_ms=21.4, share=0.22, reason="5 server faults in a row (for 20s)",
            host="127.0.0.1", history=(0, 300, 210, 0, 0)),
        row("server3", weight=1, served=12_840, inflight=4, workers=4, speed=0.33,
            latency_ms=20.0, queued=17, mean_ms=48.2, p99_ms=131.0, share=0.14,
            host="127.0.0.1", history=(0, 102, 131, 128, 133)),
        row("edge1", pid=None, managed=False, remote=True, host="10.77.0.2", port=7001,
            served=16_020, inflight=2, mean_ms=7.4, p99_ms=24.9, share=0.18, is_next=False,
            reason="first check passed in 0.9 ms", history=(0, 150, 160, 158, 161)),
    ]
    logs = log(*START_LOG, "operator: algorithm roundrobin -> weighted",
               "operator: weight server1 1 -> 3", "operator: weight server2 1 -> 3",
               "operator: flaky server2 30%", "operator: speed server3 0.33",
               "operator: latency server3 20 ms",
               "server2 UP -> EJECTED: 5 server faults in a row (for 20s)")
    return FrozenSource(rows, stats(rows, rate=1480.0, uptime=310.0, redispatched=40,
                                    algorithm="weighted", retries=188),
                        log_list=logs)


def compare_result() -> dict:
    """A `compare` reply's data as `app.control.compare.compare_data` makes it."""
    def result(rate: float, p50: float, p95: float, p99: float, top: float,
               shares: tuple[float, float, float], errors: int = 0) -> dict:
        names = ("server1", "server2", "server3")
        return {"total": 20_000, "answered": 20_000, "errors": errors, "duplicates": 0,
                "elapsed_s": round(20_000 / rate, 4), "rate": rate, "p50_ms": p50,
                "p95_ms": p95, "p99_ms": p99, "max_ms": top,
                "shares": dict(zip(names, shares, strict=True)),
                "per_server": {n: round(s * 20_000) for n, s in zip(names, shares,
                                                                     strict=True)},
                "error_samples": [], "failure": None}

    return {"count": 20_000, "work": "0-20", "concurrency": 64, "seed": 1, "results": {
        "roundrobin": result(3120.0, 14.2, 88.0, 131.5, 170.2, (0.3334, 0.3333, 0.3333)),
        "weighted": result(3410.0, 12.9, 61.7, 97.0, 140.8, (0.4286, 0.4285, 0.1429)),
        "leastconn": result(4630.0, 10.8, 25.1, 38.4, 61.0, (0.4512, 0.4490, 0.0998)),
        "p2c": result(4490.0, 11.0, 27.9, 42.6, 66.3, (0.4431, 0.4402, 0.1167)),
        "random": result(3050.0, 14.9, 92.4, 140.1, 182.7, (0.3391, 0.3290, 0.3319), 3),
    }}

"""Unit tests of each balancing algorithm's choice, on plain members (pure, no sockets)."""

from __future__ import annotations

import heapq
import random
from collections import Counter

import pytest

from balancer.algorithms import (
    ALGORITHMS,
    LeastConn,
    PowerOfTwo,
    Random,
    RoundRobin,
    WeightedRoundRobin,
    make_algorithm,
    switch_algorithm,
)


class Member:
    def __init__(self, name: str, weight: int = 1) -> None:
        self.name = name
        self.weight = weight
        self.up = True
        self.inflight: list[int] = []

    def __repr__(self) -> str:
        return self.name

    def load(self, n: int) -> None:
        self.inflight = list(range(n))


def members(*names: str) -> list[Member]:
    return [Member(n) for n in names]


def names(alg: object, count: int) -> str:
    picks = [alg.pick() for _ in range(count)]  # type: ignore[attr-defined]
    return "".join(m.name if m else "-" for m in picks)


def up(m: Member) -> bool:
    return m.up


# ---------------------------------------------------------------- round robin


def test_roundrobin_strict_order_and_peek() -> None:
    rr = RoundRobin(members("a", "b", "c"), up)
    assert rr.peek().name == "a"
    assert names(rr, 7) == "abcabca"
    assert rr.peek().name == "b"
    assert rr.picks == 7


def test_roundrobin_skips_down_and_weight_zero_and_keeps_its_place() -> None:
    ms = members("a", "b", "c", "d")
    rr = RoundRobin(ms, up)
    assert names(rr, 2) == "ab"
    ms[2].up = False
    rr.rebuild()
    assert names(rr, 3) == "dab"
    ms[2].up = True
    ms[3].weight = 0
    rr.rebuild()
    assert names(rr, 4) == "cabc"


def test_roundrobin_none_eligible_then_back() -> None:
    ms = members("a", "b")
    rr = RoundRobin(ms, up)
    for m in ms:
        m.up = False
    rr.rebuild()
    assert rr.pick() is None and rr.peek() is None and rr.ring == []
    ms[1].up = True
    rr.rebuild()
    assert names(rr, 2) == "bb"


def test_roundrobin_add_and_remove() -> None:
    ms = members("a", "b")
    rr = RoundRobin(ms, up)
    assert names(rr, 2) == "ab"
    rr.add(Member("c"))
    assert names(rr, 4) == "cabc"
    rr.remove(ms[0])
    assert names(rr, 3) == "bcb"


def test_roundrobin_weights_do_not_change_the_order() -> None:
    ms = members("a", "b")
    ms[0].weight = 5
    assert names(RoundRobin(ms, up), 4) == "abab"


# ---------------------------------------------------------------- weighted


def weighted(*weights: int) -> tuple[WeightedRoundRobin[Member], list[Member]]:
    ms = [Member(chr(ord("a") + i), w) for i, w in enumerate(weights)]
    return WeightedRoundRobin(ms, up), ms


def test_weighted_is_smooth_like_nginx() -> None:
    wrr, _ = weighted(5, 1, 1)
    assert names(wrr, 7) == "aabacaa"
    assert names(wrr, 7) == "aabacaa"


def test_weighted_shares_and_peek() -> None:
    wrr, _ = weighted(3, 3, 1)
    for _ in range(50):
        nxt = wrr.peek()
        assert wrr.pick() is nxt
    counts = Counter(m.name for m in (wrr.pick() for _ in range(700)))
    assert counts == {"a": 300, "b": 300, "c": 100}


def test_weighted_equal_weights_is_round_robin() -> None:
    wrr, _ = weighted(1, 1, 1)
    assert names(wrr, 6) == "abcabc"


def test_weighted_skips_down_and_weight_zero() -> None:
    wrr, ms = weighted(2, 1, 1)
    ms[1].up = False
    ms[2].weight = 0
    wrr.rebuild()
    assert names(wrr, 3) == "aaa"
    ms[1].up = True
    wrr.rebuild()
    assert Counter(names(wrr, 30)) == {"a": 20, "b": 10}


def test_weighted_weight_change_takes_effect_on_rebuild() -> None:
    wrr, ms = weighted(1, 1)
    ms[0].weight = 3
    wrr.rebuild()
    assert Counter(names(wrr, 40)) == {"a": 30, "b": 10}


# ---------------------------------------------------------------- leastconn


def test_leastconn_picks_the_least_loaded() -> None:
    ms = members("a", "b", "c")
    ms[0].load(5)
    ms[1].load(1)
    ms[2].load(3)
    lc = LeastConn(ms, up)
    assert lc.pick() is ms[1]
    assert lc.peek() is None


def test_leastconn_ties_go_in_rotation_order() -> None:
    ms = members("a", "b", "c")
    lc = LeastConn(ms, up)
    # Nothing in flight anywhere: a rotation, not always the first.
    assert names(lc, 6) == "abcabc"
    ms[0].load(2)
    ms[1].load(1)
    ms[2].load(1)
    # b and c tie; the last pick was c, so the scan starts at a and b wins.
    assert lc.pick() is ms[1]
    # Now the scan starts at c: c and b tie at 1, and c comes first.
    assert lc.pick() is ms[2]


def test_leastconn_skips_down_even_if_idle() -> None:
    ms = members("a", "b")
    ms[0].load(9)
    ms[1].up = False
    lc = LeastConn(ms, up)
    assert names(lc, 3) == "aaa"


# ---------------------------------------------------------------- p2c and random


def test_p2c_with_a_seed_prefers_the_less_loaded() -> None:
    ms = members("a", "b", "c")
    ms[0].load(10)
    ms[1].load(10)
    p2c = PowerOfTwo(ms, up, random.Random(7))
    counts = Counter(names(p2c, 3000))
    # c loses only when it is not drawn: a draw of two out of three misses it 1/3 of
    # the time, so about 2/3 of the picks; a and b share the rest.
    assert counts["c"] > 1800
    assert counts["a"] > 400 and counts["b"] > 400
    assert p2c.peek() is None


def test_p2c_never_picks_the_more_loaded_of_two() -> None:
    ms = members("a", "b")
    ms[0].load(1)
    p2c = PowerOfTwo(ms, up, random.Random(1))
    assert names(p2c, 50) == "b" * 50


def test_p2c_is_repeatable_with_a_seed() -> None:
    def run() -> str:
        ms = members("a", "b", "c", "d")
        return names(PowerOfTwo(ms, up, random.Random(42)), 40)

    assert run() == run()


def test_random_covers_eligible_members_only() -> None:
    ms = members("a", "b", "c", "d")
    ms[3].up = False
    ms[2].weight = 0
    alg = Random(ms, up, random.Random(3))
    alg.rebuild()
    counts = Counter(names(alg, 600))
    assert set(counts) == {"a", "b"}
    assert min(counts.values()) > 200


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_skips_ineligible_and_weight_zero(name: str) -> None:
    ms = members("a", "b", "c", "d")
    ms[0].up = False
    ms[1].weight = 0
    alg = make_algorithm(name, ms, up, random.Random(0))
    assert alg.name == name
    assert set(names(alg, 100)) == {"c", "d"}
    for m in ms:
        m.up = False
    alg.rebuild()
    assert alg.pick() is None and alg.ring == []


def test_make_algorithm_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'x' \(use roundrobin, weighted, "
                                         r"leastconn, p2c, random\)"):
        make_algorithm("x", [], up)


@pytest.mark.parametrize("weights", [(5, 1, 1), (3, 3, 1), (1, 2, 3, 4), (256, 1), (7,)])
def test_weighted_cycle_and_per_pick_scoring_agree(
        weights: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    cycled, _ = weighted(*weights)
    assert cycled.cycle
    monkeypatch.setattr(WeightedRoundRobin, "MAX_CYCLE", 0)
    scored, _ = weighted(*weights)
    assert not scored.cycle
    count = 3 * sum(weights) + 2
    peeks = []
    for _ in range(count):
        peeks.append(scored.peek())
        assert scored.pick() is peeks[-1]
    assert names(cycled, count) == "".join(m.name for m in peeks)


@pytest.mark.parametrize("name", list(ALGORITHMS))
@pytest.mark.parametrize("loads", [(0, 0, 0), (5, 0, 2), (3, 3, 9, 1)])
def test_pick_many_is_the_same_as_picking_one_by_one(name: str, loads: tuple[int, ...]) -> None:
    def fleet() -> list[Member]:
        ms = members(*"abcd"[: len(loads)])
        for m, load in zip(ms, loads, strict=True):
            m.load(load)
        return ms

    one_by_one = make_algorithm(name, fleet(), up, random.Random(5))
    singles = []
    for _ in range(40):
        m = one_by_one.pick()
        m.inflight.append(0)  # the core puts each pick in flight before the next
        singles.append(m.name)
    batched = make_algorithm(name, fleet(), up, random.Random(5))
    picked = []
    for count in (25, 15):
        chunk = batched.pick_many(count)
        for m in chunk:
            m.inflight.append(0)
        picked += [m.name for m in chunk]
    assert picked == singles
    assert batched.picks == one_by_one.picks == 40
    assert make_algorithm(name, [], up).pick_many(3) == []


def test_p2c_draws_every_pair_alike() -> None:
    # Equal loads: the first drawn wins, so each member is picked about 1/n of the time;
    # a member more loaded than all the others is never picked.
    ms = members("a", "b", "c", "d")
    counts = Counter(names(PowerOfTwo(ms, up, random.Random(11)), 8000))
    assert all(1700 < counts[m] < 2300 for m in "abcd"), counts
    ms[3].load(1)
    counts = Counter(names(PowerOfTwo(ms, up, random.Random(11)), 3000))
    assert "d" not in counts and min(counts.values()) > 800


# ---------------------------------------------------------------- a simulated fleet


class SimServer:
    """A server with `workers` and a `speed`, queueing the rest in arrival order."""

    def __init__(self, name: str, workers: int, speed: float) -> None:
        self.name, self.workers, self.speed, self.weight = name, workers, speed, 1
        self.inflight: list[int] = []
        self.busy = 0
        self.queue: list[int] = []


def simulate(name: str, count: int = 3000, concurrency: int = 64) -> float:
    """The lab's compare setting, in simulated time: three servers of 4 workers, one 3×
    slower, work uniform 0-20 ms, 64 in flight. Returns the p99 latency in ms."""
    rng = random.Random(1)
    works = [rng.uniform(0, 20) for _ in range(count)]
    fleet = [SimServer(f"s{i}", 4, speed) for i, speed in enumerate((1, 1, 1 / 3))]
    alg = make_algorithm(name, fleet, lambda s: True, random.Random(1))
    events: list[tuple[float, int, SimServer, int]] = []
    clock, sent, started, latencies = 0.0, 0, [0.0] * count, []

    def work(server: SimServer, rid: int) -> None:
        server.busy += 1
        heapq.heappush(events, (clock + works[rid] / server.speed, rid, server, rid))

    def send() -> None:
        nonlocal sent
        rid, sent = sent, sent + 1
        server = alg.pick()
        assert server is not None
        server.inflight.append(rid)
        started[rid] = clock
        if server.busy < server.workers:
            work(server, rid)
        else:
            server.queue.append(rid)

    for _ in range(concurrency):
        send()
    while events:
        clock, _, server, rid = heapq.heappop(events)
        server.busy -= 1
        server.inflight.remove(rid)
        latencies.append(clock - started[rid])
        if server.queue:
            work(server, server.queue.pop(0))
        if sent < count:
            send()
    assert len(latencies) == count
    latencies.sort()
    return latencies[int(0.99 * count) - 1]


def test_with_a_slow_server_leastconn_and_p2c_cut_the_tail() -> None:
    # What `lbconsole compare` shows on real processes, here in simulated time
    # (deterministic): round robin keeps feeding the slow server its third.
    p99 = {name: simulate(name) for name in ("roundrobin", "leastconn", "p2c", "random")}
    assert p99["leastconn"] < 0.6 * p99["roundrobin"], p99
    assert p99["p2c"] < 0.8 * p99["roundrobin"], p99
    assert p99["leastconn"] < p99["p2c"] < p99["random"], p99


def test_switching_live_keeps_members_and_the_rotation_s_place() -> None:
    ms = members("a", "b", "c")
    rr = RoundRobin(ms, up)
    assert names(rr, 2) == "ab"
    lc = switch_algorithm(rr, "leastconn")
    assert isinstance(lc, LeastConn) and lc.members == ms and lc.picks == 2
    assert names(lc, 2) == "ca"
    back = switch_algorithm(lc, "roundrobin")
    assert names(back, 3) == "bca"
    wrr = switch_algorithm(back, "weighted")
    assert isinstance(wrr, WeightedRoundRobin) and names(wrr, 3) == "abc"
    with pytest.raises(ValueError, match="unknown algorithm"):
        switch_algorithm(wrr, "fastest")

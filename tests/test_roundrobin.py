"""Unit tests of the rotation: strict order, skipping, rejoining in place."""

from __future__ import annotations

from balancer.algorithms import RoundRobin


class Member:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True


def names(rr: RoundRobin[Member], count: int) -> list[str]:
    picks = [rr.pick() for _ in range(count)]
    return [m.name if m else "-" for m in picks]


def make(n: int = 3) -> tuple[RoundRobin[Member], list[Member]]:
    members = [Member(str(i)) for i in range(1, n + 1)]
    return RoundRobin(members, lambda m: m.up), members


def test_strict_order() -> None:
    rr, _ = make()
    assert names(rr, 9) == list("123123123")


def test_skips_a_member_that_is_down_and_takes_it_back() -> None:
    rr, members = make()
    assert names(rr, 1) == ["1"]
    members[1].up = False
    rr.rebuild()
    assert names(rr, 4) == list("3131")
    members[1].up = True
    rr.rebuild()
    assert names(rr, 6) == list("231231")


def test_rotation_continues_after_the_member_picked_last() -> None:
    rr, members = make(4)
    assert names(rr, 2) == list("12")
    members[2].up = False
    rr.rebuild()
    assert names(rr, 3) == list("412")


def test_none_eligible_and_peek() -> None:
    rr, members = make(2)
    for m in members:
        m.up = False
    rr.rebuild()
    assert rr.pick() is None and rr.peek() is None
    members[1].up = True
    rr.rebuild()
    assert rr.peek() is members[1]
    assert names(rr, 2) == list("22")


def test_added_member_joins_the_rotation() -> None:
    rr, _ = make(2)
    assert names(rr, 2) == list("12")
    rr.add(Member("3"))
    assert names(rr, 4) == list("3123")

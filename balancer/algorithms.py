"""The balancing algorithms (placeholder: round robin only, until the lab lands)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Strict rotation in configured order over the members that are eligible.

    `ring` holds the eligible members in configured order and `pos` the index of
    the next pick; the balancer's hot loop reads both directly, writes `pos` back
    and adds to `picks`. `rebuild()` runs on every state change and keeps the
    rotation where it was: the next pick is the first eligible member after the
    one picked last, in configured order, so 1,2,3 with 2 down goes 1,3,1,3 and
    with 2 back 1,2,3 again. Before any pick the rotation starts at the first.
    """

    name = "roundrobin"
    inline = True
    """The core picks inline from `ring`/`pos` instead of calling `pick()`."""

    def __init__(self, members: Sequence[T], eligible: Callable[[T], bool]) -> None:
        self.members: list[T] = list(members)
        self.eligible = eligible
        self.ring: list[T] = []
        self.pos = 0
        self.picks_made = 0
        self.rebuild()

    def add(self, member: T) -> None:
        self.members.append(member)
        self.rebuild()

    def remove(self, member: T) -> None:
        self.members.remove(member)
        self.rebuild()

    def pick(self) -> T | None:
        """The next eligible member, or None when there is none."""
        ring = self.ring
        if not ring:
            return None
        pos = self.pos
        member = ring[pos]
        pos += 1
        self.pos = 0 if pos >= len(ring) else pos
        self.picks_made += 1
        return member

    def picks(self, count: int) -> list[T]:
        """The next `count` picks at once (the ring repeated and sliced, in C)."""
        ring = self.ring
        n = len(ring)
        pos = self.pos
        end = pos + count
        if end <= n:
            targets = ring[pos:end]
        else:
            targets = (ring * (end // n + 1))[pos:end]
        self.pos = end % n
        self.picks_made += count
        return targets

    def peek(self) -> T | None:
        """The member the next `pick()` returns."""
        return self.ring[self.pos] if self.ring else None

    def rebuild(self) -> None:
        """Recompute the ring after a state change, keeping the rotation's place."""
        old = self.ring
        last = old[self.pos - 1] if old and self.picks_made else None
        ring = [m for m in self.members if self.eligible(m)]
        self.ring = ring
        self.pos = 0
        if not ring or last is None or last not in self.members:
            return
        after = self.members.index(last)
        for index, member in enumerate(ring):
            if self.members.index(member) > after:
                self.pos = index
                return


def make_algorithm(name: str, members: Sequence[T], eligible: Callable[[T], bool]
                   ) -> RoundRobin[T]:
    if name != "roundrobin":
        raise ValueError(f"unknown algorithm {name!r} (use roundrobin)")
    return RoundRobin(members, eligible)

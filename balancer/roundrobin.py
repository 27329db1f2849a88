"""Round robin over the configured server list, skipping servers that take no traffic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Strict rotation in configured order over the members that are eligible.

    `ring` holds the eligible members in configured order and `pos` the index of
    the next pick; the balancer's hot loop reads both directly. `rebuild()` runs
    on every state change and keeps the rotation where it was: after a member
    leaves or rejoins, the next pick is the first eligible member after the one
    picked last, so 1,2,3 with 2 down goes 1,3,1,3 and with 2 back 1,2,3 again.
    """

    def __init__(self, members: Sequence[T], eligible: Callable[[T], bool]) -> None:
        self.members: list[T] = list(members)
        self.eligible = eligible
        self.ring: list[T] = []
        self.pos = 0
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
        return member

    def peek(self) -> T | None:
        """The member the next `pick()` returns."""
        return self.ring[self.pos] if self.ring else None

    def rebuild(self) -> None:
        """Recompute the ring after a state change, keeping the rotation's place."""
        nxt = self.peek()
        anchor = self.members.index(nxt) if nxt is not None and nxt in self.members else 0
        ring = [m for m in self.members if self.eligible(m)]
        self.ring = ring
        if not ring:
            self.pos = 0
            return
        # Next pick: the first eligible member at or after the one that was due.
        order = {id(m): i for i, m in enumerate(self.members)}
        for index, member in enumerate(ring):
            if order[id(member)] >= anchor:
                self.pos = index
                return
        self.pos = 0

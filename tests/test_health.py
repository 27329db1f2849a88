"""Unit tests of the health state machine (rise/fall, hard failures)."""

from __future__ import annotations

from balancer.health import HealthPolicy, judge
from balancer.model import ServerState

POLICY = HealthPolicy(interval=1.0, rise=2, fall=3, timeout=1.0)
UP, DOWN, STARTING = ServerState.UP, ServerState.DOWN, ServerState.STARTING


def run(state: ServerState, outcomes: str, hard: bool = False) -> list[ServerState]:
    """Apply checks ('+' pass, '-' fail); return the state after each."""
    ok_streak = fail_streak = 0
    states = []
    for outcome in outcomes:
        verdict = judge(state, outcome == "+", ok_streak, fail_streak, POLICY, hard=hard)
        ok_streak, fail_streak = verdict.ok_streak, verdict.fail_streak
        state = verdict.state or state
        states.append(state)
    return states


def test_starting_server_is_up_after_its_first_good_check() -> None:
    assert run(STARTING, "+") == [UP]


def test_up_server_falls_after_fall_failures_in_a_row() -> None:
    assert run(UP, "--+---") == [UP, UP, UP, UP, UP, DOWN]


def test_down_server_rises_after_rise_successes_in_a_row() -> None:
    assert run(DOWN, "+-++") == [DOWN, DOWN, DOWN, UP]


def test_hard_failure_is_immediate() -> None:
    assert run(UP, "-", hard=True) == [DOWN]
    assert run(STARTING, "-", hard=True) == [DOWN]


def test_down_stays_down_while_failing() -> None:
    assert run(DOWN, "-----") == [DOWN] * 5

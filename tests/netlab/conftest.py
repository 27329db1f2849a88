"""Fixtures for the netns suite, and the one line saying why it was skipped.

The suite runs when it can (root, `ip netns` works, `nft` installed) and is
skipped otherwise, with one line in the summary. `make netlab` sets
LBNETLAB_REQUIRE=1: there a lab that cannot run is an error, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.netlab.lab import NetLab, unavailable

_skipped: list[str] = []


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    netns = [item for item in items if item.get_closest_marker("netns")]
    if not netns:
        return
    why = unavailable()
    if why is None:
        return
    if os.environ.get("LBNETLAB_REQUIRE"):
        raise pytest.UsageError(f"the netns suite cannot run here: {why}")
    _skipped.append(why)
    for item in netns:
        item.add_marker(pytest.mark.skip(reason=f"netns suite: {why}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_line(f"netns suite skipped: {_skipped[0]}")


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Three hosts h1..h3 on a bridge; torn down after the test, failed or not, and the
    default namespace's network state checked to be what it was before."""
    net = NetLab()
    net.__enter__()
    try:
        yield net
    finally:
        net.down()
    left = net.leftovers()
    assert not left, f"the lab left changes behind: {left}"

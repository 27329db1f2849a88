"""`make chaos`: every shipped scenario at full size, headless, over real processes; each
must pass its own expect lines (the quick versions run in `make test`)."""

from __future__ import annotations

import pytest

from app.control.scenario_cli import load, run_headless
from app.control.scenario_file import shipped_names

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.mark.parametrize("name", shipped_names())
async def test_shipped_scenario_passes_at_full_size(name: str) -> None:
    report = await run_headless(load(name))
    print(report.text())
    assert report.passed, report.failures()
    assert report.totals["lost"] == 0 and report.totals["duplicates"] == 0

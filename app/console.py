"""The console (work in progress)."""

from __future__ import annotations

from app.runtime import RuntimeConfig


def console_main(config: RuntimeConfig, headless: bool = False) -> int:
    raise SystemExit("console: not built yet")

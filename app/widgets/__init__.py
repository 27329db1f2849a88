"""The console's widgets; `css_paths` finds the stylesheets they are laid out with."""

from __future__ import annotations

from pathlib import Path


def css_paths() -> list[Path]:
    """`styles/*.tcss` from the repository, or the copy the wheel puts in `app/styles`."""
    here = Path(__file__).resolve().parent.parent
    for folder in (here.parent / "styles", here / "styles"):
        found = sorted(folder.glob("*.tcss"))
        if found:
            return found
    return []

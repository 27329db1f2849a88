"""The progress of a running `random N` batch: bar, count, rate and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from app.formatting import count, duration, short_count
from balancer.client import BatchProgress


def progress_text(progress: BatchProgress) -> str:
    errors = f" · {count(progress.errors)} errors" if progress.errors else ""
    eta = progress.eta
    return (f"{count(progress.answered)}/{count(progress.total)} · "
            f"{short_count(progress.rate)} req/s · ETA {duration(eta) if eta else '-'}"
            f"{errors}")


class BatchBar(Horizontal):
    """Visible while a batch runs; fed from the batch's `BatchProgress` on each tick."""

    DEFAULT_CSS = """
    BatchBar { height: 1; display: none; }
    BatchBar.-running { display: block; }
    BatchBar > Label { width: 1fr; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Label("random", id="batch-title")
        yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="batch-progress")
        yield Label("", id="batch-text")

    def show(self, progress: BatchProgress | None) -> None:
        running = progress is not None and not progress.done
        if running != self.has_class("-running"):
            self.set_class(running, "-running")
        if not running:
            return
        assert progress is not None
        self.query_one("#batch-title", Label).update(f"random {count(progress.total)}")
        self.query_one("#batch-progress", ProgressBar).update(
            total=progress.total, progress=progress.answered)
        self.query_one("#batch-text", Label).update(progress_text(progress))

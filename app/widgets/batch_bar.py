"""The progress of a running `random N` batch: bar, count, rate and ETA, on one line."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from app.formatting import count, duration, short_count
from balancer.client import BatchProgress

BAR_WIDTH = 24


def progress_text(progress: BatchProgress, bar_width: int = BAR_WIDTH) -> Text:
    """`random 300,000 ━━━━━━╸━━━━  25%  74.0k/300k · 62.5k req/s · ETA 4s`."""
    done = progress.answered / progress.total if progress.total else 1.0
    filled = done * bar_width
    whole = int(filled)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f" random {count(progress.total)} ", style="bold")
    text.append("━" * whole, style="#5fafff")
    if whole < bar_width:
        text.append("╸" if filled - whole >= 0.5 else " ", style="#5fafff")
        text.append("━" * (bar_width - whole - 1), style="#3a3a3a")
    eta = progress.eta
    text.append(f" {done * 100:3.0f}%  ", style="bold")
    text.append(f"{short_count(progress.answered)}/{short_count(progress.total)} · "
                f"{short_count(progress.rate)} req/s · ETA {duration(eta) if eta else '-'}")
    if progress.errors:
        text.append(f" · {count(progress.errors)} errors", style="bold #ff5f5f")
    return text


def window_title(address: str, progress: BatchProgress | None) -> str:
    """`lbconsole 127.0.0.1:5001`, or while a batch runs `42% random 1.00M · lbconsole`."""
    if progress is None or progress.done:
        return f"lbconsole {address}"
    done = progress.answered / progress.total if progress.total else 1.0
    return f"{done * 100:.0f}% random {short_count(progress.total)} · lbconsole"


class BatchBar(Widget, can_focus=False):
    """Visible while a batch runs; fed from the batch's `BatchProgress` on each tick.

    One line rendered by hand: Textual's ProgressBar and Labels ask for a layout on
    every update, which at ten updates a second costs a full-screen repaint each.
    """

    DEFAULT_CSS = """
    BatchBar { height: 1; display: none; }
    BatchBar.-running { display: block; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = Text()

    def show(self, progress: BatchProgress | None) -> None:
        running = progress is not None and not progress.done
        if running != self.has_class("-running"):
            self.set_class(running, "-running")
        if not running:
            return
        assert progress is not None
        text = progress_text(progress, BAR_WIDTH if self.size.width >= 100 else BAR_WIDTH // 2)
        if text.plain != self.text.plain:
            self.text = text
            self.refresh()

    def render(self) -> Text:
        return self.text

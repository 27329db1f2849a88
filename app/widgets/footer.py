"""The footer: the keys that fit, least important dropped first; `? help` and `q quit` always.

Textual's Footer lays every shown binding side by side and lets the right end
fall off a narrow terminal: at 80 columns that was `? help` and `q quit`, the
two keys a newcomer needs. This one measures first. It drops whole keys in
`FOOTER_DROP_ORDER` until the rest fit, and keeps help and quit on screen even
while the input box has focus (then dimmed: there `?` and `q` are letters).
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

FOOTER_DROP_ORDER: tuple[str, ...] = (
    "command_palette", "save_screenshot", "latency", "next_algorithm", "pause", "add_server",
    "focus_input",
    "server('drain')", "server('restart')", "server('stop')", "select(1)",
)
"""Actions whose keys leave the footer when it is narrow, first to last. `? help` lists
them all; `help`, `quit`, `kill` and `leave input` are never dropped."""

ALWAYS: tuple[tuple[str, str, str, str], ...] = (
    ("question_mark", "?", "help", "help"),
    ("q", "q", "quit", "quit"),
)
"""(key, shown as, description, action): on the footer whatever has focus."""

PALETTE_WIDTH = 12
"""`▏^p palette` docked at the right."""


def item_width(key_display: str, description: str) -> int:
    """Cells a compact footer key takes, with the gap after it."""
    return len(key_display) + (1 + len(description) if description else 0) + 1


def fit(items: list[tuple[str, int]], width: int, palette: bool) -> tuple[set[str], bool]:
    """The actions of `items` ((action, cells), in footer order) to drop, and whether the
    palette key stays, for a footer `width` cells wide."""
    dropped: set[str] = set()
    keep_palette = palette

    def used() -> int:
        return (sum(w for a, w in items if a not in dropped)
                + (PALETTE_WIDTH if keep_palette else 0))

    for action in FOOTER_DROP_ORDER:
        if used() <= width:
            break
        if action == "command_palette":
            keep_palette = False
        elif any(a == action for a, _ in items):
            dropped.add(action)
    return dropped, keep_palette


class ConsoleFooter(Footer):
    """A compact Footer that fits its width (see the module docstring)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self._width = 0

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        app = self.app
        seen: set[str] = set()
        keys: list[FooterKey] = []
        for _node, binding, enabled, tooltip in active.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            keys.append(FooterKey(binding.key, app.get_key_display(binding),
                                  binding.description, binding.action,
                                  disabled=not enabled, tooltip=tooltip))
        for key, display, description, action in ALWAYS:
            if action not in seen:
                keys.append(FooterKey(key, display, description, action, disabled=True,
                                      tooltip=f"Esc first: {key} is typed in the input"))
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            found = active.get(app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, tooltip = found
                palette = FooterKey(binding.key, app.get_key_display(binding),
                                    binding.description, binding.action,
                                    classes="-command-palette", disabled=not enabled,
                                    tooltip=binding.tooltip or binding.description)
        width = self._width or self.size.width or app.size.width
        dropped, keep_palette = fit(
            [(k.action, item_width(k.key_display, k.description)) for k in keys],
            width, palette is not None)
        shown = [k for k in keys if k.action not in dropped]
        self.styles.grid_size_columns = len(shown)
        for key in shown:
            yield key.data_bind(compact=Footer.compact)
        if palette is not None and keep_palette:
            yield palette

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            self.call_after_refresh(self.recompose)

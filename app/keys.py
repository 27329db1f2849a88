"""The console's keys and palette entries, in one place (the App maps them to actions).

Keys that change where the next keys go (`/`, `:`, `?`, Esc) are priority
bindings: they run as the App takes them off its queue, before it forwards the
keys typed behind them (see `ConsoleApp.action_focus_input`).
"""

from __future__ import annotations

from textual.binding import Binding

HINT = "/ to type a request or a command (random 1000, kill 2, help) · ? help · q quit"
MAIN_SCREEN_ACTIONS = {"server", "add_server", "select", "pause", "log_filter", "focus_input",
                       "help", "latency", "next_algorithm", "save_screenshot", "search_history"}
"""Actions of the dashboard's keys: none of them runs behind a modal screen (help, palette)."""

BINDINGS: tuple[Binding, ...] = (
    Binding("1", "select(1)", "select", key_display="1-9"),
    *(Binding(str(i), f"select({i})", f"select server {i}", show=False)
      for i in range(2, 10)),
    Binding("k", "server('kill')", "kill"),
    Binding("s", "server('stop')", "stop"),
    Binding("r", "server('restart')", "restart"),
    Binding("d", "server('drain')", "drain"),
    Binding("a", "add_server", "add"),
    Binding("c", "next_algorithm", "algo"),
    Binding("p", "pause", "pause"),
    Binding("l", "log_filter", "log: events only / all", show=False),
    Binding("g", "latency", "latency"),
    Binding("ctrl+s", "save_screenshot", "screenshot"),
    # Priority: these run when the App takes the key off its queue, before it forwards
    # the keys behind it, and move focus at once (see `action_focus_input`).
    Binding("slash,colon", "focus_input", "input", key_display="/", priority=True),
    Binding("escape", "leave_input", "leave input", priority=True),
    Binding("ctrl+r", "search_history", "search history", show=False),
    Binding("question_mark", "help", "help", priority=True),
    Binding("q", "quit", "quit"),
)
"""Footer order; `1-9` stands for the hidden 2…9."""

PALETTE: tuple[tuple[str, str, str], ...] = (
    ("Kill server", "SIGKILL the selected server (a crash)", "server('kill')"),
    ("Stop server", "stop the selected server gently", "server('stop')"),
    ("Restart server", "restart the selected server", "server('restart')"),
    ("Drain server", "drain the selected server, or undo", "server('drain')"),
    ("Add server", "spawn one more calculation server", "add_server"),
    ("Next algorithm", "cycle the balancing algorithm: algo next (c)", "next_algorithm"),
    ("Pause / resume", "pause the scrolling panels", "pause"),
    ("Latency view", "p50 and p99 per server over the last minute (g)", "latency"),
    ("Save screenshot here", "an SVG of the screen, into the working folder (ctrl+s)",
     "save_screenshot"),
    ("Search history", "find an earlier line of the input box (ctrl+r)", "search_history"),
    ("Help", "keys and commands", "help"),
)
"""(title, help, action) for the command palette: every key's action is there too."""

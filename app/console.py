"""The full-screen console: one dashboard over a live balancer, redrawn ten times a second.

The App is thin: it lays the widgets out, maps keys and typed lines to the
`Operator`, and on a timer pulls one snapshot from its `ConsoleSource` and
hands each widget its part inside `batch_update()`. Widgets diff what they
are given, so nothing is touched per request.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from app import commands as cmd
from app import keys
from app.history import History
from app.operator import Operator, Outcome
from app.runtime import RuntimeConfig, ServerRow
from app.source import ConsoleSource
from app.summary import SessionSummary
from app.widgets import css_paths
from app.widgets.batch_bar import BatchBar, window_title
from app.widgets.command_input import CommandInput
from app.widgets.compare_screen import CompareScreen
from app.widgets.footer import ConsoleFooter
from app.widgets.help_screen import HelpScreen
from app.widgets.latency import LatencyChart
from app.widgets.log_panel import LogPanel
from app.widgets.responses import ResponsesView
from app.widgets.routing import RoutingView
from app.widgets.server_table import ServerTable
from app.widgets.status import StatusBar
from app.widgets.throughput import ThroughputChart
from balancer.stats import BalancerStats

TICK = 0.1
BUSY_RATE = 5_000
"""Answers per second above which lines scroll past faster than anyone can read them.
Then the scrolling panels redraw at 5 Hz and the table's counters at 2.5 Hz, on
different ticks: a DataTable redraws every cell after any `update_cell`, the most
expensive thing on screen. States, the status line and batch progress still change
on every tick."""


@dataclass(frozen=True)
class Panels:
    """The widgets the tick feeds, looked up once."""

    status: StatusBar
    table: ServerTable
    chart: ThroughputChart
    batch: BatchBar
    routing: RoutingView
    responses: ResponsesView
    log: LogPanel
    latency: LatencyChart


class ConsoleApp(App[SessionSummary | None]):
    """Servers, routing, responses, log and an input box over one `ConsoleSource`."""

    TITLE = "lbconsole"
    CSS_PATH = css_paths()  # type: ignore[assignment]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = list(keys.BINDINGS)

    def __init__(self, source: ConsoleSource, *, tick: float = TICK,
                 freeze_gc: bool = False, history: Path | None = None) -> None:
        super().__init__()
        self.history = History(history)
        """The input box's history; kept in the file `history` if given."""
        self.terminal_title = ""
        self.freeze_gc = freeze_gc
        self.source = source
        self.operator = Operator(source)
        self.tick_interval = tick
        self.paused = False
        self.note = ""
        self.scenario_state = ""
        self.stats: BalancerStats | None = None
        self.rows: list[ServerRow] = []
        self.quitting = False
        self.ticks = 0
        self.failure: str | None = None

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield BatchBar(id="batch")
        yield ServerTable(id="servers")
        with Horizontal(id="middle"):
            with Vertical(id="routing-box"):
                yield RoutingView(id="routing")
                yield ThroughputChart(id="throughput")
            yield ResponsesView(id="responses")
        yield LogPanel(id="log")
        yield LatencyChart(id="latency")
        with Horizontal(id="input-row"):
            yield Label("›", id="prompt")
            yield CommandInput(history=self.history, id="input")
        yield Static(keys.HINT, id="message")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.panels = Panels(
            status=self.query_one(StatusBar), table=self.query_one(ServerTable),
            chart=self.query_one(ThroughputChart), batch=self.query_one(BatchBar),
            routing=self.query_one(RoutingView), responses=self.query_one(ResponsesView),
            log=self.query_one(LogPanel), latency=self.query_one(LatencyChart))
        self.set_titles()
        self.query_one("#routing-box").border_subtitle = "answers/s, last minute"
        self.query_one("#latency").border_subtitle = "g: back to the panels"
        if self.source.log_path:
            self.query_one("#log").border_subtitle = self.source.log_path
        self.query_one(ServerTable).focus()
        self.set_interval(self.tick_interval, self.tick)
        self.run_worker(self._start(), group="start")

    def set_titles(self) -> None:
        paused = " · PAUSED" if self.paused else ""
        events = " · events only" if self.query_one(LogPanel).events_only else ""
        titles = {"#servers": "Servers", "#routing-box": f"Routing{paused}",
                  "#responses": f"Responses{paused}", "#log": f"Log{events}{paused}",
                  "#latency": "Latency per server, last minute"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title

    async def _start(self) -> None:
        try:
            await self.source.start()
        except OSError as exc:
            self.failure = (f"lbconsole: cannot listen: {exc.strerror or exc}\n"
                            "another lbconsole may be running; --port 0 picks a free port "
                            "(make run ARGS=\"--port 0\")")
            self.exit(None, return_code=1)
            return
        if self.freeze_gc:
            # Everything built so far (Textual, the widgets) lives as long as the app:
            # keep it out of the collector's way, so its passes under load stay short.
            gc.freeze()
        self.tick()

    # ------------------------------------------------------------ the tick

    def tick(self) -> None:
        """Pull one snapshot and hand each widget its part; widgets skip what is unchanged."""
        source = self.source
        if not source.ready:
            return
        self.stats = stats = source.stats()
        self.rows = rows = source.rows(stats)
        finished = self.operator.finished_batch()
        self.ticks += 1
        busy = stats.rate >= BUSY_RATE
        scroll_turn = not busy or self.ticks % 2 == 0
        counter_turn = not busy or self.ticks % 4 == 1
        w = self.panels
        with self.batch_update():
            w.status.show(stats, servers=len(rows), paused=self.paused, note=self.note)
            scenario = getattr(source, "scenario_progress", None)
            progress = scenario() if scenario is not None else None
            if progress is not None and progress.state != self.scenario_state:
                # Each change of a scenario's state (steps fire, it ends) in the message line.
                self.scenario_state = progress.state
                self.say(Outcome(progress.text(), error=progress.state == "failed"))
            elif progress is not None and self.ticks % 10 == 0:
                self.say(Outcome(progress.text()))
            w.table.show(rows, counters=counter_turn,
                         p50={b.name: b.p50_ms for b in stats.backends},
                         algorithm=stats.algorithm)
            w.chart.show([(r.name, r.history) for r in rows])
            w.batch.show(self.operator.progress)
            self.set_terminal_title(window_title(stats.address, self.operator.progress))
            w.latency.show(source.latency(stats))
            if finished is not None:
                self.say(finished)
            if scroll_turn and not self.paused:
                w.routing.show(source.routes())
                w.responses.show(source.answers())
                w.log.show(*(source.event_lines() if w.log.events_only
                             else source.log_lines()))

    def set_terminal_title(self, text: str) -> None:
        """The terminal's window (or tmux pane) title, written only when it changes.

        The first write saves the title the terminal had, and quitting puts it back.
        """
        if text == self.terminal_title:
            return
        first = not self.terminal_title
        self.terminal_title = text
        driver = self._driver
        if driver is not None and not self.is_headless:
            driver.write(("\x1b[22;2t" if first else "") + f"\x1b]2;{text}\x07")

    def restore_terminal_title(self) -> None:
        driver = self._driver
        if self.terminal_title and driver is not None and not self.is_headless:
            driver.write("\x1b[23;2t")

    def say(self, outcome: Outcome) -> None:
        message = self.query_one("#message", Static)
        message.set_class(outcome.error, "-error")
        message.update(outcome.text)

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_input":
            return isinstance(self.focused, CommandInput)
        if action in keys.MAIN_SCREEN_ACTIONS:
            # Behind a modal screen (help, the palette) the dashboard's keys do nothing, and
            # typed in a box the priority ones (`/`, `:`, `?`) are characters.
            if self.screen is not self.screen_stack[0]:
                return None  # dimmed in the footer; the key goes to the modal screen
            if action in ("focus_input", "help") and self.typing:
                return False  # the key is typed; the footer still shows `? help`
        return True

    @property
    def typing(self) -> bool:
        """Whether keys now go to a text box (the input, the palette's search)."""
        return isinstance(self.focused, Input)

    def action_select(self, number: int) -> None:
        table = self.query_one(ServerTable)
        if table.select_index(number - 1) is None:
            self.say(Outcome(f"no server {number} (there are {table.row_count})", error=True))

    def action_server(self, action: cmd.ServerAction) -> None:
        self.do(cmd.ServerCommand(action, None))

    def action_add_server(self) -> None:
        self.do(cmd.AddServer())

    def action_next_algorithm(self) -> None:
        """`c`: the next balancing algorithm (`algo next`), in `balancer.algorithms` order."""
        self.do(cmd.SetAlgorithm("next"))

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.set_class(self.paused, "-paused")
        self.set_titles()
        self.say(Outcome("paused: the panels stop scrolling (p resumes)" if self.paused
                         else "resumed"))
        self.tick()

    def action_log_filter(self) -> None:
        log = self.query_one(LogPanel)
        log.set_events_only(not log.events_only)
        self.set_titles()
        self.say(Outcome("log: events only (connections, states, actions); l shows all"
                         if log.events_only else "log: every line, as in the file"))
        self.tick()

    def action_latency(self) -> None:
        """Swap the routing, responses and log panels for the latency chart, and back."""
        showing = not self.has_class("-latency")
        self.set_class(showing, "-latency")
        self.say(Outcome("latency: p50 and p99 per server, last minute (g goes back)"
                         if showing else "panels back"))
        self.tick()

    def action_save_screenshot(self) -> None:
        """An SVG of the screen as it is now, into the working folder; says where.

        In a browser (`lbconsole web`) the file is offered as a download instead.
        """
        if self.is_web:
            self.deliver_screenshot()
            self.notify("screenshot sent to the browser as a download", title="Screenshot")
            return
        self.clear_notifications()  # the picture is of the console, not of earlier toasts
        try:
            path = Path(self.save_screenshot(path=os.getcwd())).resolve()
        except OSError as exc:
            self.say(Outcome(f"screenshot not saved: {exc.strerror or exc}", error=True))
            return
        self.notify(str(path), title="Screenshot saved")
        self.say(Outcome(f"screenshot saved to {path}"))

    def action_focus_input(self) -> None:
        """Focus the input box now, not on the next idle turn.

        The driver posts a burst of keys (a fast typist, a paste-like `tmux send-keys`)
        to the App's queue at once, and the App forwards each key to whatever has focus
        when it takes that key off the queue. `Widget.focus()` only schedules the change
        (`call_later`), so the keys behind `/` would still reach the servers table and
        its bindings (`k` kills). This priority binding runs as the App takes `/` off the
        queue, and `set_focus` changes focus before the next key is forwarded. Both
        halves are needed (tests/test_console_keys.py fails without either): a normal
        binding runs only once `/` has bubbled back up from the table, after the App
        has already forwarded the rest of the burst to it.
        """
        self.set_focus(self.query_one(CommandInput))

    def action_leave_input(self) -> None:
        """Esc: back to the servers table, at once for the same reason."""
        self.set_focus(self.query_one(ServerTable))

    def action_search_history(self) -> None:
        """ctrl+r on the dashboard: into the input box, searching the history."""
        box = self.query_one(CommandInput)
        self.set_focus(box)
        box.action_search_history()

    def on_command_input_searched(self, event: CommandInput.Searched) -> None:
        looked = f"'{event.text}'" if event.text else "anything"
        if event.found is None:
            self.say(Outcome(f"history: nothing older with {looked}", error=True))
        else:
            self.say(Outcome(f"history: {looked} → {event.found}   (ctrl+r: older · "
                             "Enter: run · Esc: leave)"))

    def on_command_input_left(self, _: CommandInput.Left) -> None:
        self.set_focus(self.query_one(ServerTable))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Stop every server (answering what is in flight), then leave with a summary."""
        if self.quitting:
            return
        self.quitting = True
        self.note = "stopping servers…"
        self.say(Outcome("stopping servers…"))
        self.tick()
        self.run_worker(self._quit(), group="quit")

    async def _quit(self) -> None:
        try:
            await self.operator.stop()
            await self.source.stop()
        finally:
            summary = None
            if self.source.ready:
                stats = self.source.stats()
                summary = SessionSummary(stats, tuple(self.source.rows(stats)),
                                         self.source.log_path)
            self.restore_terminal_title()
            self.exit(summary)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Screenshot" saves elsewhere (Downloads); ours says where it went.
        yield from (c for c in super().get_system_commands(screen) if c.title != "Screenshot")
        for title, help_text, action in keys.PALETTE:
            yield SystemCommand(title, help_text,
                                lambda action=action: self.run_worker(self.run_action(action)))

    # ------------------------------------------------------------ the input box

    def on_input_submitted(self, event: CommandInput.Submitted) -> None:
        line = event.value
        box = self.query_one(CommandInput)
        box.remember(line.strip())
        box.value = ""
        command = cmd.parse_command(line)
        if command is not None:
            self.do(command)

    def do(self, command: cmd.Command) -> None:
        """Carry out one command; slow ones run as workers and report when done."""
        op = self.operator
        match command:
            case cmd.Invalid(message):
                self.say(Outcome(message, error=True))
            case cmd.Quit():
                self.run_worker(self.action_quit())
            case cmd.ShowHelp():
                self.action_help()
            case cmd.TogglePause():
                self.action_pause()
            case cmd.ClearPanels():
                for panel in (RoutingView, ResponsesView):
                    self.query_one(panel).clear()
                self.query_one(LogPanel).clear()
            case cmd.RunBatch(_, work) if work is not None:
                self.say(Outcome(f"random {command.count:,} work {work.text()}: sending…"))
                self.report(self.control(command))
            case cmd.RunBatch(count):
                self.say(op.start_batch(count))
            case cmd.CancelBatch():
                self.say(op.cancel_batch())
            case cmd.SendRequest(line):
                self.report(op.request(line))
            case cmd.AddServer():
                self.say(Outcome("adding a server…"))
                self.report(op.add_server())
            case cmd.ServerCommand(action, target):
                selected = self.query_one(ServerTable).selected
                if action in ("stop", "restart"):
                    self.say(Outcome(f"{action}: {target or selected}…"))
                self.report(op.server(command, selected))
            case (cmd.SetAlgorithm() | cmd.SetWeight() | cmd.ServerSetting() | cmd.Show()
                  | cmd.Compare()):
                if isinstance(command, cmd.Compare):
                    self.say(Outcome(f"compare: {command.count:,} requests under "
                                     f"{', '.join(command.algorithms)}…"))
                self.report(self.control(command))

    async def control(self, command: cmd.Command) -> Outcome:
        """A command for the runtime, carried out by the one dispatcher (app.control)."""
        from app.control.dispatch import execute

        runtime = getattr(self.source, "runtime", None)
        if runtime is None:
            return Outcome("not available: this console has no live runtime", error=True)
        reply = await execute(runtime, command, selected=self.query_one(ServerTable).selected,
                              origin="the console")
        text = reply.message
        if isinstance(command, cmd.Compare) and reply.data:
            # One line here; the whole table is on the results screen.
            text = "compare: " + ", ".join(
                f"{name} {r['rate']:,.0f} req/s p99 {r['p99_ms'] or 0:.1f} ms"
                for name, r in reply.data["results"].items())
            self.show_compare(reply.data)
        return Outcome(text, error=not reply.ok)

    def show_compare(self, data: dict) -> None:
        """`compare`'s results screen (Esc closes it); replaces one still open."""
        if isinstance(self.screen, CompareScreen):
            self.pop_screen()
        self.push_screen(CompareScreen(data))

    def report(self, work: object) -> None:
        async def run() -> None:
            self.say(await work)  # type: ignore[misc]
            self.tick()

        self.run_worker(run(), group="commands")


def console_main(config: RuntimeConfig, headless: bool = False, engine: str = "builtin",
                 scenario: object = None) -> int:
    """Run the console for real (see `app.console_main`); kept here for callers of old."""
    from app.console_main import console_main as run

    return run(config, headless, engine, scenario)  # type: ignore[arg-type]

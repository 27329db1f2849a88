"""The full-screen console: one dashboard over a live balancer, redrawn ten times a second.

The App is thin: it lays the widgets out, maps keys and typed lines to the
`Operator`, and on a timer pulls one snapshot from its `ConsoleSource` and
hands each widget its part inside `batch_update()`. Widgets diff what they
are given, so nothing is touched per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.console import Console
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from app import commands as cmd
from app.operator import Operator, Outcome
from app.runtime import RuntimeConfig, ServerRow
from app.source import ConsoleSource, LiveSource
from app.summary import SessionSummary, summary_table
from app.widgets.batch_bar import BatchBar
from app.widgets.command_input import CommandInput
from app.widgets.help_screen import HelpScreen
from app.widgets.log_panel import LogPanel
from app.widgets.responses import ResponsesView
from app.widgets.routing import RoutingView
from app.widgets.server_table import ServerTable
from app.widgets.status import StatusBar
from app.widgets.throughput import ThroughputChart
from balancer import eventloop
from balancer.stats import BalancerStats

TICK = 0.1
BUSY_RATE = 5_000
"""Answers per second above which lines scroll past faster than anyone can read them.
Then the scrolling panels redraw at 5 Hz and the table's counters at 2.5 Hz, on
different ticks: a DataTable redraws every cell after any `update_cell`, the most
expensive thing on screen. States, the status line and batch progress still change
on every tick."""
HINT = "/ to type a request or a command (random 1000, kill 2, help) · ? help · q quit"
SERVER_KEYS = {"server", "add_server", "select"}


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


def css_paths() -> list[Path]:
    """`styles/*.tcss` from the repository, or the copy the wheel puts in `app/styles`."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "styles", here / "styles"):
        found = sorted(folder.glob("*.tcss"))
        if found:
            return found
    return []


class ConsoleApp(App[SessionSummary | None]):
    """Servers, routing, responses, log and an input box over one `ConsoleSource`."""

    TITLE = "lbconsole"
    CSS_PATH = css_paths()  # type: ignore[assignment]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "select(1)", "select", key_display="1-9"),
        *(Binding(str(i), f"select({i})", f"select server {i}", show=False)
          for i in range(2, 10)),
        Binding("k", "server('kill')", "kill"),
        Binding("s", "server('stop')", "stop"),
        Binding("r", "server('restart')", "restart"),
        Binding("d", "server('drain')", "drain"),
        Binding("a", "add_server", "add"),
        Binding("p", "pause", "pause"),
        Binding("l", "log_filter", "log: events only / all", show=False),
        Binding("slash", "focus_input", "input"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, source: ConsoleSource, *, tick: float = TICK,
                 freeze_gc: bool = False) -> None:
        super().__init__()
        self.freeze_gc = freeze_gc
        self.source = source
        self.operator = Operator(source)
        self.tick_interval = tick
        self.paused = False
        self.note = ""
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
        with Horizontal(id="input-row"):
            yield Label("›", id="prompt")
            yield CommandInput(id="input")
        yield Static(HINT, id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.panels = Panels(
            status=self.query_one(StatusBar), table=self.query_one(ServerTable),
            chart=self.query_one(ThroughputChart), batch=self.query_one(BatchBar),
            routing=self.query_one(RoutingView), responses=self.query_one(ResponsesView),
            log=self.query_one(LogPanel))
        self.set_titles()
        self.query_one("#routing-box").border_subtitle = "answers/s, last minute"
        if self.source.log_path:
            self.query_one("#log").border_subtitle = self.source.log_path
        self.query_one(ServerTable).focus()
        self.set_interval(self.tick_interval, self.tick)
        self.run_worker(self._start(), group="start")

    def set_titles(self) -> None:
        paused = " · PAUSED" if self.paused else ""
        events = " · events only" if self.query_one(LogPanel).events_only else ""
        titles = {"#servers": "Servers", "#routing-box": f"Routing{paused}",
                  "#responses": f"Responses{paused}", "#log": f"Log{events}{paused}"}
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
            w.table.show(rows, counters=counter_turn)
            w.chart.show([(r.name, r.history) for r in rows])
            w.batch.show(self.operator.progress)
            if finished is not None:
                self.say(finished)
            if scroll_turn and not self.paused:
                w.routing.show(source.routes())
                w.responses.show(source.answers())
                w.log.show(*(source.event_lines() if w.log.events_only
                             else source.log_lines()))

    def say(self, outcome: Outcome) -> None:
        message = self.query_one("#message", Static)
        message.set_class(outcome.error, "-error")
        message.update(outcome.text)

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The help screen is modal: keys behind it must not kill servers.
        return not (action in SERVER_KEYS and isinstance(self.screen, HelpScreen))

    def action_select(self, number: int) -> None:
        table = self.query_one(ServerTable)
        if table.select_index(number - 1) is None:
            self.say(Outcome(f"no server {number} (there are {table.row_count})", error=True))

    def action_server(self, action: cmd.ServerAction) -> None:
        self.do(cmd.ServerCommand(action, None))

    def action_add_server(self) -> None:
        self.do(cmd.AddServer())

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

    def action_focus_input(self) -> None:
        self.query_one(CommandInput).focus()

    def on_command_input_left(self, _: CommandInput.Left) -> None:
        self.query_one(ServerTable).focus()

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
            self.exit(summary)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action, text in (("kill", "SIGKILL the selected server (a crash)"),
                             ("stop", "stop the selected server gently"),
                             ("restart", "restart the selected server"),
                             ("drain", "drain the selected server, or undo")):
            yield SystemCommand(f"{action.capitalize()} server", text,
                                lambda a=action: self.action_server(a))
        yield SystemCommand("Add server", "spawn one more calculation server",
                            self.action_add_server)
        yield SystemCommand("Pause / resume", "pause the scrolling panels", self.action_pause)
        yield SystemCommand("Help", "keys and commands", self.action_help)

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

    def report(self, work: object) -> None:
        async def run() -> None:
            self.say(await work)  # type: ignore[misc]
            self.tick()

        self.run_worker(run(), group="commands")


# ---------------------------------------------------------------- entry point


def _listening(address: str) -> None:
    # Textual captures sys.stdout while the app runs; scripts read the real one.
    out = sys.__stdout__
    if out is not None:
        out.write(f"listening on {address}\n")
        out.flush()


async def _run(app: ConsoleApp, source: LiveSource, headless: bool) -> SessionSummary | None:
    loop = asyncio.get_running_loop()
    quit_signals = (signal.SIGTERM, signal.SIGINT) if headless else (signal.SIGTERM,)
    for sig in quit_signals:
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(app.action_quit()))
    try:
        return await app.run_async(headless=headless)
    finally:
        for sig in quit_signals:
            loop.remove_signal_handler(sig)
        await source.stop()


def console_main(config: RuntimeConfig, headless: bool = False, engine: str = "builtin") -> int:
    if engine == "haproxy":  # a real HAProxy in the data path (app/engines)
        from app.engines.source import HaproxySource

        source = HaproxySource(config, on_listening=_listening if headless else None)
    else:
        source = LiveSource(config, on_listening=_listening if headless else None)
    app = ConsoleApp(source, freeze_gc=True)
    try:
        summary = eventloop.run(_run(app, source, headless))
    finally:
        source.kill_now()
    if app.failure:
        print(app.failure, file=sys.stderr)
    if summary is not None:
        with contextlib.suppress(OSError):
            Console().print(summary_table(summary))
    return app.return_code or 0

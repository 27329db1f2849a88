"""Running a scenario on a live Runtime: timed steps, background loads, checks, a report.

`ScenarioRun(scenario, runtime).run()` fires each step at its time. Steps
that share a time run in the file's order; each time has its own task, so a
slow command (a restart) never delays a later step. Load steps (`random N
[work …]`) are seeded batches (`batch.make_batch`) sent in the background by
`batch.run_measured`, every answer recorded; every other step goes through
`dispatch.execute`, exactly as `lbconsole ctl` would. Once the last step has
fired and the loads are done (bounded by the scenario's timeout) the expect
lines are checked, each for up to its `within`, and a `ScenarioReport` is
returned.

The console polls `progress()` (a frozen `ScenarioProgress`) for the current
phase, the next step and, at the end, the report; `serve --scenario` and
`lbconsole scenario` use `on_event` to show each step as it fires. The same
seed sends the same requests: load step N of a scenario with seed S is
`make_batch(count, work, seed=S * 1000 + N)` (`load_lines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.control import grammar as g
from app.control.batch import make_batch, run_measured
from app.control.dispatch import connect_host, execute
from app.control.scenario_file import Scenario, Step
from app.control.scenario_report import (
    Recorder,
    ScenarioProgress,
    ScenarioReport,
    StepRecord,
    percentiles_of,
)
from balancer.model import Backend, ServerState

if TYPE_CHECKING:
    from app.runtime import Runtime

POLL = 0.1
FAULTS = ("kill", "stop", "freeze", "flaky", "resets", "blackhole")
"""Step words that break a server: detect_s counts from the first of them."""


def load_seed(seed: int, step: int) -> int:
    return seed * 1000 + step


def load_lines(scenario: Scenario, step: Step) -> list[bytes]:
    """The exact request lines load step `step` sends (ids 1..N)."""
    command = step.command
    assert isinstance(command, g.RunBatch)
    return make_batch(command.count, command.work, seed=load_seed(scenario.seed, step.number))


def request_lists(scenario: Scenario) -> list[list[bytes]]:
    """Every load step's request lines, in step order."""
    return [load_lines(scenario, s) for s in scenario.steps if s.is_load]


@dataclass
class _Load:
    step: Step
    count: int
    digest: str
    answered: int = 0
    errors: int = 0
    duplicates: int = 0
    failure: str | None = None
    cancelled: bool = False
    timed_out: bool = False
    task: asyncio.Task | None = None

    def as_dict(self) -> dict[str, Any]:
        work = self.step.command.work if isinstance(self.step.command, g.RunBatch) else None
        return {"step": self.step.number, "count": self.count,
                "work": work.text() if work else None,
                "concurrency": self.step.concurrency, "digest": self.digest,
                "answered": self.answered, "errors": self.errors,
                "duplicates": self.duplicates, "failure": self.failure,
                "cancelled": self.cancelled, "timed_out": self.timed_out}


class ScenarioRun:
    """One run of `scenario` on `runtime` (which must be started and listening)."""

    def __init__(self, scenario: Scenario, runtime: Runtime,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.scenario = scenario
        self.runtime = runtime
        self.on_event = on_event
        self.records = [StepRecord(s.number, s.at, s.do, s.phase) for s in scenario.steps]
        self.loads: list[_Load] = []
        self.transitions: list[tuple[float, str, str, str, str]] = []
        self.state = "starting"
        self.started = 0.0
        self.recorder = Recorder(time.perf_counter())
        self.report: ScenarioReport | None = None
        self._baseline: dict[str, dict[str, int]] = {}
        self._counters: dict[str, int] = {}
        self._last: str | None = None
        self._stopped: str | None = None
        self._timed_out: str | None = None
        self._timers: list[asyncio.Future] = []
        self._wake = asyncio.Event()
        self._lines: dict[int, list[bytes]] = {}

    # ------------------------------------------------------------ reading

    def elapsed(self) -> float:
        return time.perf_counter() - self.started if self.started else 0.0

    def progress(self) -> ScenarioProgress:
        now = self.elapsed()
        pending = [r for r in self.records if r.fired is None]
        nxt = pending[0] if pending and self.state == "running" else None
        phases = self.scenario.phases()
        phase = next((p.label for p in reversed(phases) if p.start <= now), None)
        return ScenarioProgress(
            name=self.scenario.name, state=self.state, elapsed_s=now,
            length_s=self.scenario.length, steps_done=len(self.records) - len(pending),
            steps_total=len(self.records),
            next_step=f"at {nxt.at:.2f}s: {nxt.do}" if nxt else None,
            next_in_s=max(0.0, nxt.at - now) if nxt else None, phase=phase,
            sent=sum(load.count for load in self.loads), answered=len(self.recorder),
            errors=sum(load.errors for load in self.loads), last=self._last,
            report=self.report)

    def _say(self, text: str) -> None:
        self.runtime.log.event(f"scenario {self.scenario.name}: {text}")
        if self.on_event is not None:
            self.on_event(text)

    # ------------------------------------------------------------ running

    async def run(self) -> ScenarioReport:
        """Fire every step, wait for the loads, check; the report (never raises for
        what a scenario or its servers do)."""
        scenario, runtime = self.scenario, self.runtime
        # Drawn before the clock starts (and off the loop, which may be a live balancer's).
        self._lines = await asyncio.to_thread(
            lambda: {s.number: load_lines(scenario, s) for s in scenario.steps if s.is_load})
        listeners = runtime.balancer.listeners
        listeners.append(self._on_change)
        self._take_baseline()
        self.started = time.perf_counter()
        self.recorder = Recorder(self.started)
        self.state = "running"
        self._say(f"started ({len(scenario.steps)} steps, seed {scenario.seed}"
                  + (f", scale {scenario.scale:g}" if scenario.scale != 1 else "") + ")")
        groups: dict[float, list[int]] = {}
        for index, step in enumerate(scenario.steps):
            groups.setdefault(step.at, []).append(index)
        self._timers = [asyncio.ensure_future(self._fire_group(at, indexes))
                        for at, indexes in groups.items()]
        try:
            await asyncio.gather(*self._timers, return_exceptions=True)
            if self._stopped is None:
                self.state = "waiting for load"
            await self._wait_loads()
            rest = scenario.duration - self.elapsed()
            if rest > 0 and self._stopped is None:
                await self._sleep(rest)
        except asyncio.CancelledError:
            self.stop("cancelled")
            with contextlib.suppress(ValueError):
                listeners.remove(self._on_change)
            self.state = "stopped"
            raise
        end = self.elapsed()
        self.state = "checking"
        report = self._build(end, self._stopped or self._timed_out)
        if self._stopped is None:
            await self._check(report)
        else:
            report.expects = [{"number": e.number, "check": e.check.text, "within_s": e.within,
                               "passed": False, "detail": "not checked: the run was stopped"}
                              for e in scenario.expects]
        with contextlib.suppress(ValueError):
            listeners.remove(self._on_change)
        self.report = report
        self.state = "passed" if report.passed else (
            "stopped" if self._stopped else "failed")
        self._say(f"{'PASSED' if report.passed else 'FAILED'} after {report.duration_s:.1f}s"
                  + ("" if report.passed else ": " + "; ".join(report.failures())))
        return report

    def stop(self, reason: str = "stopped by the operator") -> None:
        """End the run early: no more steps, loads cancelled; `run()` still returns a
        report (marked stopped, its checks not made)."""
        if self._stopped is None:
            self._stopped = reason
        for task in self._timers:
            task.cancel()
        self._cancel_loads(timed_out=False)
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _fire_group(self, at: float, indexes: list[int]) -> None:
        due = self.started + at
        for _ in range(100):  # the loop's timers may wake a little early: never fire early
            delay = due - time.perf_counter()
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        for index in indexes:
            await self._fire(self.scenario.steps[index], self.records[index])

    async def _fire(self, step: Step, record: StepRecord) -> None:
        record.fired = self.elapsed()
        command = step.command
        target = getattr(command, "target", None)
        if isinstance(target, str):
            with contextlib.suppress(KeyError):
                record.server = self.runtime.resolve(target)
        if isinstance(command, g.RunBatch):
            self._start_load(step)
            record.ok = True
            record.message = (f"load of {command.count:,} requests started, "
                              f"{step.concurrency} in flight")
        else:
            reply = await execute(self.runtime, command, origin="scenario",
                                  seed=load_seed(self.scenario.seed, step.number))
            record.ok = reply.ok
            record.message = reply.message.splitlines()[0][:200] if reply.message else ""
        self._last = f"step {step.number} {step.do}: {record.message}"
        self._say(f"step {step.number} at {record.fired:.2f}s (due {step.at:.2f}s): "
                  f"{step.do} -> {'' if record.ok else 'FAILED: '}{record.message}")

    def _start_load(self, step: Step) -> None:
        lines = self._lines.get(step.number) or load_lines(self.scenario, step)
        load = _Load(step, len(lines), hashlib.sha256(b"".join(lines)).hexdigest()[:16])
        self.loads.append(load)
        load.task = asyncio.ensure_future(self._run_load(load, lines))
        self.runtime.batches.add(load.task)

    async def _run_load(self, load: _Load, lines: list[bytes]) -> None:
        recorder = self.recorder

        def observe(now: float, latency_ms: float, answer: dict[str, Any]) -> None:
            load.answered += 1
            if "error" in answer:
                load.errors += 1
            recorder.observe(now, latency_ms, answer)

        runtime = self.runtime
        try:
            result = await run_measured(connect_host(runtime), runtime.balancer.port, lines,
                                        load.step.concurrency, observe=observe)
        except asyncio.CancelledError:
            load.cancelled = not load.timed_out
            return
        except OSError as exc:
            load.failure = f"cannot connect: {exc.strerror or exc}"
            return
        finally:
            runtime.batches.discard(asyncio.current_task())  # type: ignore[arg-type]
        load.errors = result.errors
        load.duplicates = result.duplicates
        load.failure = result.failure
        self._say(f"load of step {load.step.number} done: {result.summary()}")

    async def _wait_loads(self) -> None:
        """Until every load is done, or the scenario's timeout (then they are cancelled,
        and what they had not answered counts as lost)."""
        tasks = [load.task for load in self.loads if load.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.scenario.timeout)
        if pending:
            self._cancel_loads(timed_out=True)
            await asyncio.gather(*pending, return_exceptions=True)
            self._timed_out = f"loads not done {self.scenario.timeout:g}s after the last step"

    def _cancel_loads(self, timed_out: bool) -> None:
        for load in self.loads:
            if load.task is not None and not load.task.done():
                load.timed_out = timed_out
                load.task.cancel()

    # ------------------------------------------------------------ counters

    def _on_change(self, backend: Backend, old: ServerState, new: ServerState,
                   reason: str) -> None:
        self.transitions.append((self.elapsed(), backend.name, old.value, new.value, reason))

    _KEYS = ("served", "errors", "faults", "retries", "ejections", "redispatched")

    def _take_baseline(self) -> None:
        stats = self.runtime.stats()
        self._baseline = {b.name: {k: getattr(b, k) for k in self._KEYS} for b in stats.backends}
        self._counters = {"retries": stats.retries, "redispatched": stats.redispatched,
                          "late": stats.late}

    def server_values(self) -> dict[str, dict[str, Any]]:
        """Per server, now: its state and what changed since the start."""
        stats = self.runtime.stats()
        out: dict[str, dict[str, Any]] = {}
        for b in stats.backends:
            base = self._baseline.get(b.name, {})
            row: dict[str, Any] = {"state": b.state}
            row.update({k: getattr(b, k) - base.get(k, 0) for k in self._KEYS})
            mine = [t for t in self.transitions if t[1] == b.name]
            row["down"] = sum(1 for t in mine if t[3] == "DOWN")
            row["ejected"] = sum(1 for t in mine if t[3] == "EJECTED")
            row["recovered"] = self._recovered(mine)
            row["share"] = round(b.share, 4)
            row["detect_s"] = self._detect(b.name, mine)
            out[b.name] = row
        return out

    @staticmethod
    def _recovered(mine: list[tuple[float, str, str, str, str]]) -> int:
        """Times it came UP again after being DOWN or EJECTED (through STARTING or not)."""
        count, broken = 0, False
        for _, _, _, new, _ in mine:
            if new in ("DOWN", "EJECTED"):
                broken = True
            elif new == "UP" and broken:
                count, broken = count + 1, False
        return count

    def _detect(self, name: str, mine: list[tuple[float, str, str, str, str]]) -> float | None:
        broke = next((r.fired for r in self.records if r.server == name and r.fired is not None
                      and r.do.split()[0].lower() in FAULTS), None)
        if broke is None:
            return None
        found = next((t[0] for t in mine if t[0] >= broke and t[3] in ("DOWN", "EJECTED")),
                     None)
        return None if found is None else round(found - broke, 3)

    def _build(self, end: float, stopped: str | None) -> ScenarioReport:
        s = self.scenario
        for load in self.loads:
            # A load cancelled before its task ran never saw its CancelledError.
            if load.task is not None and load.task.cancelled() and not load.timed_out:
                load.cancelled = True
        stats = self.runtime.stats()
        unanswered = [load.count - load.answered for load in self.loads]
        lost = sum(n for n, load in zip(unanswered, self.loads, strict=True)
                   if not load.cancelled)
        faults = sum(1 for f in self.recorder.flags if f & 2)
        totals: dict[str, Any] = {
            "sent": sum(load.count for load in self.loads), "answered": len(self.recorder),
            "lost": lost,
            "cancelled": sum(n for n, load in zip(unanswered, self.loads, strict=True)
                             if load.cancelled),
            "duplicates": sum(load.duplicates for load in self.loads),
            "wrong": self.recorder.wrong,
            "errors": sum(load.errors for load in self.loads), "server_faults": faults,
            "retried": sum(1 for f in self.recorder.flags if f & 4),
            "retries": stats.retries - self._counters.get("retries", 0),
            "redispatched": stats.redispatched - self._counters.get("redispatched", 0),
            "late": stats.late - self._counters.get("late", 0),
            **percentiles_of(self.recorder),
            "rate": round(len(self.recorder) / end, 1) if end > 0 else 0.0,
            "elapsed_s": round(end, 3),
            "steps_failed": sum(1 for r in self.records if r.ok is False),
        }
        return ScenarioReport(
            name=s.name, description=s.description, source=s.source, seed=s.seed, scale=s.scale,
            duration_s=end, steps=self.records, phases=self.recorder.phase_rows(s.phases(), end),
            totals=totals, servers=self.server_values(),
            loads=[load.as_dict() for load in self.loads], chart=self.recorder.chart(end),
            stopped=stopped)

    async def _check(self, report: ScenarioReport) -> None:
        """Each expect line, re-read (server values refreshed) until it passes or its
        `within` is over."""
        began = time.perf_counter()
        results: dict[int, dict[str, Any]] = {}
        while True:
            values = report.values()
            for expect in self.scenario.expects:
                if expect.number in results and results[expect.number]["passed"]:
                    continue
                outcome = expect.check.evaluate(values)
                results[expect.number] = {"number": expect.number, "check": expect.check.text,
                                          "within_s": expect.within, "passed": outcome.passed,
                                          "detail": outcome.detail}
            waited = time.perf_counter() - began
            open_ = [e for e in self.scenario.expects if not results[e.number]["passed"]
                     and e.within > waited]
            if not open_:
                break
            await asyncio.sleep(POLL)
            report.servers = self.server_values()
        report.expects = [results[e.number] for e in self.scenario.expects]

"""What a scenario's run measured, and its report: per phase, over time, and its checks.

`Recorder` keeps one row per answer (when it was sent and answered, its
latency, whether it was an error, a server fault, a retried request), fed by
`batch.run_measured`'s observer. `ScenarioReport` is the finished run as plain
data: `text()` for a terminal, `as_dict()` for `--json`, and `values()` the
flat table the expect lines are checked against (`lost`, `server2.ejections`,
`phase.leastconn.p99_ms`, …).

A request belongs to the phase it was *sent* in (so a phase's p99 is about
the requests the balancer routed under that phase's faults and algorithm);
throughput counts the answers that *arrived* during the phase, and the chart
bins answers by arrival.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from app.control.batch import percentile
from app.control.expect import Value
from app.control.scenario_file import Phase
from balancer.protocol import compute

ERROR, FAULT, RETRIED = 1, 2, 4
BARS = " ▁▂▃▄▅▆▇█"
CHART_BINS = 60


class Recorder:
    """Every first answer of every load, in arrival order (times in s since the start)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.sent = array("d")
        self.arrived = array("d")
        self.latency = array("d")
        self.flags = bytearray()
        self.wrong = 0
        """Answers whose result is not the arithmetic of their operands."""
        self.wrong_samples: list[str] = []

    def observe(self, now: float, latency_ms: float, answer: dict[str, Any]) -> None:
        arrived = now - self.started
        self.arrived.append(arrived)
        self.sent.append(arrived - latency_ms / 1000)
        self.latency.append(latency_ms)
        flags = 0
        if "error" in answer:
            flags = ERROR | (FAULT if answer.get("fault") == "server" else 0)
        elif "result" in answer:
            op, a, b = answer.get("op"), answer.get("a"), answer.get("b")
            if (not isinstance(op, str) or not isinstance(a, int | float)
                    or not isinstance(b, int | float) or compute(op, a, b) != answer["result"]):
                self.wrong += 1
                if len(self.wrong_samples) < 5:
                    self.wrong_samples.append(str(answer)[:160])
        attempts = answer.get("attempts")
        if isinstance(attempts, int) and attempts > 1:
            flags |= RETRIED
        self.flags.append(flags)

    def __len__(self) -> int:
        return len(self.flags)

    def phase_rows(self, phases: list[Phase], end: float) -> list[dict[str, Any]]:
        """Per phase: answers to requests sent in it, their latency percentiles, errors,
        server faults and retried requests; answers per second that arrived in it."""
        starts = [p.start for p in phases]
        bounds = [*starts, max(end, starts[-1] if starts else 0.0)]
        members: list[list[int]] = [[] for _ in phases]
        for index, sent in enumerate(self.sent):
            slot = min(len(phases) - 1, max(0, bisect_right(starts, sent) - 1))
            members[slot].append(index)
        rows = []
        for number, phase in enumerate(phases):
            start, stop = bounds[number], bounds[number + 1]
            picked = members[number]
            latencies = sorted(self.latency[i] for i in picked)
            arrived = sum(1 for t in self.arrived if start <= t < stop) if stop > start else 0
            duration = max(0.0, stop - start)
            rows.append({
                "number": phase.number, "label": phase.label, "start_s": round(start, 3),
                "end_s": round(stop, 3), "duration_s": round(duration, 3),
                "answered": len(picked),
                "errors": sum(1 for i in picked if self.flags[i] & ERROR),
                "server_faults": sum(1 for i in picked if self.flags[i] & FAULT),
                "retried": sum(1 for i in picked if self.flags[i] & RETRIED),
                "rate": round(arrived / duration, 1) if duration > 0 else 0.0,
                **_percentiles(latencies),
            })
        return rows

    def chart(self, end: float, bins: int = CHART_BINS) -> dict[str, Any]:
        """Answers per second, p99 and errors per time bin, by arrival."""
        width = max(end, 1e-3) / bins
        lat: list[list[float]] = [[] for _ in range(bins)]
        errors = [0] * bins
        for index, t in enumerate(self.arrived):
            slot = min(bins - 1, max(0, int(t / width)))
            lat[slot].append(self.latency[index])
            if self.flags[index] & ERROR:
                errors[slot] += 1
        return {"bin_s": round(width, 4),
                "rate": [round(len(b) / width, 1) for b in lat],
                "p99_ms": [_round(percentile(sorted(b), 0.99)) for b in lat],
                "errors": errors}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _percentiles(ordered: list[float]) -> dict[str, float | None]:
    return {"p50_ms": _round(percentile(ordered, 0.5)), "p95_ms": _round(percentile(ordered, 0.95)),
            "p99_ms": _round(percentile(ordered, 0.99)),
            "max_ms": _round(ordered[-1] if ordered else None)}


def percentiles_of(recorder: Recorder) -> dict[str, float | None]:
    return _percentiles(sorted(recorder.latency))


def sparkline(values: list[float | None] | list[float] | list[int]) -> str:
    """One character per value, scaled to the largest; blank for none."""
    top = max((v for v in values if v is not None), default=0) or 0
    out = []
    for v in values:
        if v is None or top <= 0:
            out.append(" ")
        else:
            out.append(BARS[max(1 if v > 0 else 0, min(8, math.ceil(v / top * 8)))])
    return "".join(out)


@dataclass(frozen=True)
class ScenarioProgress:
    """What the console shows while a scenario runs (poll `ScenarioRun.progress()`)."""

    name: str
    state: str
    """"running", "waiting for load", "checking", "passed", "failed" or "stopped"."""
    elapsed_s: float
    length_s: float
    """When the last step is due (or the scenario's duration), s after the start."""
    steps_done: int
    steps_total: int
    next_step: str | None
    """`at 2.00s: flaky 2 30%`, or None when every step has fired."""
    next_in_s: float | None
    phase: str | None
    """The label of the phase now running."""
    sent: int
    """Requests of the loads started so far."""
    answered: int
    errors: int
    last: str | None
    """The latest step's outcome."""
    report: ScenarioReport | None = None
    """The report, once the run is over."""

    def text(self) -> str:
        """One line for a status bar: where the run is and what comes next."""
        parts = [f"scenario {self.name}: {self.state}",
                 f"{self.elapsed_s:.1f}s of {self.length_s:.1f}s",
                 f"step {self.steps_done}/{self.steps_total}"]
        if self.next_step:
            parts.append(f"next {self.next_step}")
        if self.phase:
            parts.append(f"phase {self.phase}")
        if self.sent:
            parts.append(f"{self.answered:,}/{self.sent:,} answered, {self.errors:,} errors")
        return " · ".join(parts)


@dataclass
class StepRecord:
    number: int
    at: float
    do: str
    phase: str | None
    fired: float | None = None
    ok: bool | None = None
    message: str = ""
    server: str | None = None
    """The server the step acted on, when it acted on one."""

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at_s": self.at, "do": self.do, "phase": self.phase,
                "fired_s": None if self.fired is None else round(self.fired, 3),
                "ok": self.ok, "message": self.message, "server": self.server}


@dataclass
class ScenarioReport:
    """A finished run, as plain data (what `--json` prints and the console shows)."""

    name: str
    description: str
    source: str
    seed: int
    scale: float
    duration_s: float
    steps: list[StepRecord]
    phases: list[dict[str, Any]]
    totals: dict[str, Any]
    servers: dict[str, dict[str, Any]]
    loads: list[dict[str, Any]]
    chart: dict[str, Any]
    expects: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    """Why the run stopped early (cancelled, timed out), or None."""

    @property
    def passed(self) -> bool:
        return (self.stopped is None and all(e["passed"] for e in self.expects)
                and all(s.ok for s in self.steps))

    def failures(self) -> list[str]:
        out = [f"step {s.number} ({s.do}) failed: {s.message}" for s in self.steps if not s.ok]
        out += [f"expect {e['number']} failed: {e['check']} ({e['detail']})"
                for e in self.expects if not e["passed"]]
        if self.stopped:
            out.append(f"stopped: {self.stopped}")
        return out

    def values(self) -> dict[str, Value]:
        """The flat table of names the expect lines read."""
        table: dict[str, Value] = {k: v for k, v in self.totals.items()
                                   if isinstance(v, int | float | str) or v is None}
        for name, row in self.servers.items():
            for key, value in row.items():
                table[f"{name}.{key}"] = value
        for row in self.phases:
            for key, value in row.items():
                if key not in ("number", "label", "start_s", "end_s"):
                    table[f"phase.{row['label']}.{key}"] = value
                    table[f"phase.{row['number']}.{key}"] = value
        return table

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "seed": self.seed, "scale": self.scale, "passed": self.passed,
                "duration_s": round(self.duration_s, 3), "stopped": self.stopped,
                "steps": [s.as_dict() for s in self.steps], "phases": self.phases,
                "totals": self.totals, "servers": self.servers, "loads": self.loads,
                "expects": self.expects, "chart": self.chart, "failures": self.failures()}

    def text(self) -> str:
        """The report for a terminal: steps, phases, chart, checks, verdict."""
        t = self.totals
        lines = [f"scenario {self.name}: {self.description}".rstrip(": "),
                 f"seed {self.seed}, scale {self.scale:g}, ran {self.duration_s:.1f}s", "",
                 "injected:"]
        for s in self.steps:
            fired = "  -  " if s.fired is None else f"{s.fired:5.2f}s"
            mark = {True: "ok", False: "FAILED", None: "not run"}[s.ok]
            lines.append(f"  {s.number:>2}  at {s.at:5.2f}s  fired {fired}  {s.do:<28} "
                         f"{mark}: {s.message}"[:160].rstrip())
        lines += ["", _phase_table(self.phases), "", *self._chart_lines(), ""]
        p99 = "-" if t.get("p99_ms") is None else f"{t['p99_ms']:.1f}"
        lines.append(f"totals: sent {t['sent']:,}, answered {t['answered']:,}, "
                     f"lost {t['lost']:,}, duplicates {t['duplicates']:,}, wrong {t['wrong']:,}, "
                     f"errors {t['errors']:,} (server faults {t['server_faults']:,}), "
                     f"retries {t['retries']:,}, re-dispatched {t['redispatched']:,}, "
                     f"p99 {p99} ms")
        servers = ", ".join(f"{n} {r['state']} (ejected {r['ejected']}, down {r['down']})"
                            for n, r in self.servers.items())
        lines += [f"servers: {servers}", "", "expect:"]
        for e in self.expects:
            within = f" within {e['within_s']:g}s" if e.get("within_s") else ""
            lines.append(f"  {'PASS' if e['passed'] else 'FAIL'}  {e['check']}{within}   "
                         f"({e['detail']})")
        if not self.expects:
            lines.append("  (none)")
        lines.append("")
        lines.append("PASSED" if self.passed else "FAILED: " + "; ".join(self.failures()))
        return "\n".join(lines)

    def _chart_lines(self) -> list[str]:
        chart = self.chart
        rates, p99s, errors = chart["rate"], chart["p99_ms"], chart["errors"]
        if not rates:
            return []
        marks = [" "] * len(rates)
        for s in self.steps:
            if s.fired is not None and chart["bin_s"] > 0:
                slot = min(len(marks) - 1, int(s.fired / chart["bin_s"]))
                marks[slot] = str(s.number % 10) if marks[slot] == " " else "+"
        top_rate = max(rates, default=0)
        top_p99 = max((v for v in p99s if v is not None), default=0)
        return [f"over time (one column per {chart['bin_s']:.2f}s; digits: steps):",
                f"  steps    |{''.join(marks)}|",
                f"  req/s    |{sparkline(rates)}| max {top_rate:,.0f}",
                f"  p99 ms   |{sparkline(p99s)}| max {top_p99:,.1f}",
                f"  errors   |{''.join('x' if e else ' ' for e in errors)}| "
                f"total {sum(errors):,}"]


def _phase_table(phases: list[dict[str, Any]]) -> str:
    head = ["phase", "from", "to", "answered", "req/s", "p50 ms", "p99 ms", "max ms",
            "errors", "retried"]
    rows = [head]
    for p in phases:
        rows.append([f"{p['number']} {p['label']}" if p["label"] != str(p["number"])
                     else str(p["number"]), f"{p['start_s']:.2f}s", f"{p['end_s']:.2f}s",
                     f"{p['answered']:,}", f"{p['rate']:,.0f}",
                     *("-" if p[k] is None else f"{p[k]:.1f}"
                       for k in ("p50_ms", "p99_ms", "max_ms")),
                     f"{p['errors']:,}", f"{p['retried']:,}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  " + "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                       zip(r[1:], widths[1:], strict=True)]) for r in rows)

"""What `lbconsole bench` prints: the table, the CPU breakdown and the performance goals."""

from __future__ import annotations

RSS_LIMIT_MB = 150.0


def paired_ratio(a: dict, b: dict) -> float | None:
    """How fast target `a` is against `b`: the median over rounds of their rates in
    the same round (a round runs every target within seconds, so a slow spell of
    the machine hits both sides of a pair); the ratio of their medians when the
    rounds do not pair up."""
    ra, rb = a.get("rounds_req_per_s") or [], b.get("rounds_req_per_s") or []
    if ra and len(ra) == len(rb) and all(ra) and all(rb):
        ratios = sorted(x / y for x, y in zip(ra, rb, strict=True))
        middle = len(ratios) // 2
        return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    rate_a, rate_b = a.get("req_per_s"), b.get("req_per_s")
    return rate_a / rate_b if rate_a and rate_b else None


def add_ratios(report: dict) -> None:
    """`ratio_direct` on every measured target; `ratio_serve` (against serve's
    roundrobin, same run) on the other algorithms' targets."""
    targets = report["targets"]
    for key, base in (("ratio_direct", "direct"), ("ratio_serve", "serve")):
        against = targets.get(base, {})
        for name, result in targets.items():
            if result.get("status") != "ok" or against.get("status") != "ok":
                continue
            if key == "ratio_serve" and not name.startswith("serve-"):
                continue
            value = paired_ratio(result, against)
            result[key] = None if value is None else round(value, 3)


def goals(targets: dict[str, dict]) -> list[dict]:
    """The performance issue's targets, each met, missed, or not measured (None)."""

    def ok(name: str) -> dict | None:
        result = targets.get(name)
        return result if result is not None and result.get("status") == "ok" else None

    out: list[dict] = []

    def at_least(label: str, value: float | None, limit: float) -> None:
        out.append({"goal": label, "value": None if value is None else round(value, 3),
                    "limit": limit, "met": None if value is None else value >= limit})

    def ratio(a: str, b: str) -> float | None:
        ta, tb = ok(a), ok(b)
        return paired_ratio(ta, tb) if ta and tb else None

    at_least("serve >= 0.50 x direct", ratio("serve", "direct"), 0.50)
    at_least("serve >= 0.55 x haproxy", ratio("serve", "haproxy"), 0.55)
    at_least("serve-nolog >= 0.50 x direct", ratio("serve-nolog", "direct"), 0.50)
    at_least("console >= 0.80 x serve", ratio("console", "serve"), 0.80)
    at_least("leastconn >= 0.85 x serve", ratio("serve-leastconn", "serve"), 0.85)
    at_least("p2c >= 0.85 x serve", ratio("serve-p2c", "serve"), 0.85)

    serve, haproxy = ok("serve"), ok("haproxy")
    added = serve and serve["pingpong"].get("added_p50_ms")
    added_h = haproxy and haproxy["pingpong"].get("added_p50_ms")
    value = added / added_h if added is not None and added_h else None
    out.append({"goal": "ping-pong added p50: serve <= 2 x haproxy",
                "value": None if value is None else round(value, 3), "limit": 2.0,
                "met": None if value is None else value <= 2.0})
    for name in ("serve", "serve-nolog", "console"):
        result = ok(name)
        rss = result.get("peak_rss_mb") if result else None
        out.append({"goal": f"peak RSS {name} < {RSS_LIMIT_MB:g} MB", "value": rss,
                    "limit": RSS_LIMIT_MB, "met": None if rss is None else rss < RSS_LIMIT_MB})
    return out


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"lbconsole bench: {s['requests']:,} requests per target in {s.get('rounds', 1)} rounds,"
        f" {s['connections']} connections x {s['depth']} in flight, {s['servers']} calculation"
        " servers shared by every target",
        f"machine: {m['cores']} cores, {m['cpu']}, {m['implementation']} {m['python']}, "
        f"uvloop {'on' if m['uvloop'] else 'off'}"
        + (f", HAProxy {m['haproxy']}" if m.get("haproxy") else ", no HAProxy"),
        "",
        f"{'target':<15} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8} "
        f"{'x direct':>9} {'x serve':>8}   {'ping-pong p50 ms':>16} {'added':>7}",
    ]
    for name, r in report["targets"].items():
        if r["status"] != "ok":
            lines.append(f"{name:<15} {r['status']}: {r.get('reason', '')}")
            continue
        pp = r["pingpong"]
        lines.append(
            f"{name:<15} {_num(r['req_per_s'], ',.0f'):>10} {_num(r['p50_ms'], '.3f'):>8} "
            f"{_num(r['p99_ms'], '.3f'):>8} {_num(r['peak_rss_mb'], '.1f'):>8} "
            f"{_num(r.get('ratio_direct'), '.2f'):>9} {_num(r.get('ratio_serve'), '.2f'):>8}"
            f"   {_num(pp.get('p50_ms'), '.3f'):>16} "
            f"{_num(pp.get('added_p50_ms'), '+.3f') if name != 'direct' else '-':>7}")
    if report.get("error"):
        lines.append(f"stopped: {report['error']}")
    if s.get("rounds", 1) > 1:
        lines += ["", "req/s of each round (the targets took turns; the table shows the median "
                  "round; a ratio", "is the median of the two targets' ratios round by round):"]
        for name, r in report["targets"].items():
            if r.get("rounds_req_per_s"):
                lines.append(f"  {name:<15} " + "  ".join(
                    _num(x, ",.0f") for x in r["rounds_req_per_s"]))
    lines += ["", "CPU during each load run, in cores busy (and microseconds per request):"]
    for name, r in report["targets"].items():
        if r["status"] != "ok":
            continue
        parts = [f"generator {_num(r['generator_cpu_cores'], '.2f')} "
                 f"({_num(r['generator_cpu_us_per_req'], '.2f')} us)"]
        if r.get("balancer_cpu_cores") is not None:
            parts.append(f"balancer {_num(r['balancer_cpu_cores'], '.2f')} "
                         f"({_num(r['balancer_cpu_us_per_req'], '.2f')} us)")
        each = "+".join(_num(c, ".2f") for c in r["servers_cpu_cores"])
        parts.append(f"servers {each} ({_num(r['servers_cpu_us_per_req'], '.2f')} us)")
        parts.append(f"other processes {_num(r.get('others_cpu_cores'), '.2f')}")
        lines.append(f"  {name:<15} " + ", ".join(parts))
    busiest = max((r.get("others_cpu_cores") or 0.0 for r in report["targets"].values()),
                  default=0.0)
    if busiest > 0.25:
        lines.append(f"  warning: other processes used up to {busiest:.2f} cores during a run; "
                     "the figures are noisy")
    direct = report["targets"].get("direct", {})
    if direct.get("status") == "ok":
        lines.append("  " + limit_of_direct(direct, m["cores"]))
    notes = [r["note"] for r in report["targets"].values() if r.get("note")]
    lines += ["", f"ping-pong: 1 request in flight on 1 connection per target, "
                  f"{s['pingpong_requests']:,} each; all targets alive at once, taking turns in "
                  f"slices of {s.get('pingpong_slice', 1)},", "  so the machine's noise hits "
                  "them alike; added = a target's p50 minus direct's"]
    lines += [f"note: {n}" for n in notes]
    lines += ["", "goals:"]
    for g in report.get("goals", []):
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[g["met"]]
        lines.append(f"  [{mark}] {g['goal']}: {_num(g['value'], 'g')}")
    lines.append("")
    lines.append("result: " + ("every answer checked and right" if report.get("ok")
                               else "FAILED (see above)"))
    return "\n".join(lines)


def limit_of_direct(direct: dict, cores: int | None) -> str:
    """Which side limits `direct`: the generator or the servers, by their CPU per request."""
    gen = direct.get("generator_cpu_us_per_req")
    srv = direct.get("servers_cpu_us_per_req")
    gen_cores = direct.get("generator_cpu_cores") or 0.0
    srv_cores = sum(c or 0.0 for c in direct.get("servers_cpu_cores", []))
    if not gen or not srv:
        return "direct: CPU figures unavailable"
    busy = gen_cores + srv_cores
    who = "the servers" if srv > gen else "the generator"
    text = (f"direct is limited by {who}: servers {srv:.2f} us CPU per request vs generator "
            f"{gen:.2f} us; {busy:.2f} of {cores} cores busy")
    if gen_cores >= 0.9:
        text = f"direct is limited by the generator (it uses {gen_cores:.2f} of one core)"
    return text

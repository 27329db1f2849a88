"""Small pure helpers that turn numbers, payloads and answers into console text."""

from __future__ import annotations

import re
import zlib

import orjson

from balancer.protocol import describe

SERVER_COLOURS: tuple[str, ...] = (
    "#5fafff",  # blue
    "#ffaf5f",  # orange
    "#87d75f",  # green
    "#d787ff",  # violet
    "#5fd7d7",  # cyan
    "#ffd75f",  # yellow
    "#ff87af",  # pink
    "#afaf87",  # khaki
)
"""One colour per server, never red: red means an error or DOWN."""

STATE_STYLES: dict[str, str] = {
    "UP": "bold #5fd75f",
    "STARTING": "bold #ffd75f",
    "DOWN": "bold #ff5f5f",
    "DRAINING": "bold #d787ff",
    "STOPPED": "bold #8a8a8a",
    "EJECTED": "bold #ff8700",
}

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def server_colour(name: str) -> str:
    """A stable colour per server name: serverN takes the Nth, others hash to one."""
    match = _TRAILING_NUMBER.search(name)
    index = int(match[1]) - 1 if match else zlib.crc32(name.encode())
    return SERVER_COLOURS[index % len(SERVER_COLOURS)]


def fault_badges(injected: dict[str, object], speed: float = 1.0,
                 latency_ms: float = 0.0) -> tuple[str, ...]:
    """`flaky 30%`, `resets 10%`, `blackhole`, `slow ×0.33`, `+20 ms`: what `heal` clears."""
    badges = []
    for name in ("flaky", "resets"):
        share = injected.get(name)
        if isinstance(share, int | float) and share > 0:
            badges.append(f"{name} {share * 100:.3g}%")
    if injected.get("blackhole"):
        badges.append("blackhole")
    if speed != 1.0:
        badges.append(f"{'slow' if speed < 1 else 'fast'} ×{speed:.3g}")
    if latency_ms:
        badges.append(f"+{latency_ms:.4g} ms")
    return tuple(badges)


def count(value: int) -> str:
    return f"{value:,}"


def short_count(value: float) -> str:
    """`950`, `12.3k`, `1.25M`: rates and totals in a narrow space."""
    if value < 1_000:
        return f"{value:.0f}"
    if value < 1_000_000:
        return f"{value / 1_000:.1f}k" if value < 100_000 else f"{value / 1_000:.0f}k"
    return f"{value / 1_000_000:.2f}M"


def ms(value: float | None) -> str:
    """A latency in milliseconds with about three significant digits."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def uptime(seconds: float) -> str:
    """`0:03:05`: uptime as a clock."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def payload_text(payload: bytes) -> str:
    """What a request sent to a server asks: `somma 3 4` (text is sent as typed,
    JSON without its id)."""
    if payload[:1] != b"{":
        return payload.decode("utf-8", "replace").strip()
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace").strip()
    if not isinstance(obj, dict):
        return str(obj)
    if isinstance(obj.get("text"), str):
        return obj["text"]
    parts = [str(obj.get("op", "?"))]
    if "a" in obj or "b" in obj:
        parts += [str(obj.get("a")), str(obj.get("b"))]
    return " ".join(parts)


def answer_text(line: bytes) -> tuple[str, bool, str]:
    """(`#12 somma 3 4 = 7`, is_error, server) from an answer line."""
    try:
        answer = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line.decode("utf-8", "replace").strip(), True, ""
    if not isinstance(answer, dict):
        return str(answer), True, ""
    server = str(answer.pop("server", "") or "")
    return describe(answer), "error" in answer, server

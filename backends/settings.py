"""The live settings of a calculation server: capacity, speed, latency and faults.

One definition shared by the server (command-line options and control orders),
the supervisor (which validates an operator's change before sending it, and
re-applies the settings when it restarts a server) and `lbconsole server`.
Validation raises ValueError with a message worth showing to an operator.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

MAX_WORK_MS = 60_000.0
"""Longest simulated work a request may ask for, and the longest fixed latency."""

MAX_WORKERS = 100_000
MAX_SPEED = 1000.0

KNOWN = ("workers", "speed", "latency_ms", "flaky", "resets", "blackhole", "heal")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What a server is told to be; `heal` puts everything but `workers` back to these defaults."""

    workers: int | None = None
    """At most this many requests in work at once; None: unlimited."""
    speed: float = 1.0
    """Work takes work_ms / speed."""
    latency_ms: float = 0.0
    """Fixed extra delay before every answer (pings included)."""
    flaky: float = 0.0
    """Share of calculation requests answered with an injected server fault."""
    resets: float = 0.0
    """Share of calculation requests on which the server closes the connection instead."""
    blackhole: bool = False
    """Read nothing and answer nothing, on every connection, while staying up."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def faults(self) -> dict[str, object]:
        """The active faults only, e.g. {"flaky": 0.3}."""
        active: dict[str, object] = {}
        if self.flaky:
            active["flaky"] = self.flaky
        if self.resets:
            active["resets"] = self.resets
        if self.blackhole:
            active["blackhole"] = True
        return active

    def healed(self) -> ServerSettings:
        """No faults, normal speed, no added latency; the worker count stays."""
        return ServerSettings(workers=self.workers)

    def changed(self, changes: Mapping[str, object]) -> ServerSettings:
        """These settings with `changes` applied (heal first); raises ValueError."""
        clean = validate(changes)
        base = self.healed() if clean.pop("heal", False) else self
        return replace(base, **clean)  # type: ignore[arg-type]


def _number(name: str, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def validate(changes: Mapping[str, object]) -> dict[str, object]:
    """Check one change set; returns it with numbers normalised. Raises ValueError."""
    clean: dict[str, object] = {}
    for key, value in changes.items():
        if key not in KNOWN:
            raise ValueError(f"unknown setting {str(key)[:30]!r} (known: {', '.join(KNOWN)})")
        if key == "workers":
            if value is None:
                clean[key] = None
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not (
                    1 <= value <= MAX_WORKERS):
                raise ValueError(f"workers must be a whole number from 1 to {MAX_WORKERS} "
                                 f"(or none for unlimited), got {value!r}")
            clean[key] = value
        elif key == "speed":
            speed = _number(key, value, "a number above 0 (1 is normal, 0.5 half as fast)")
            if not 0 < speed <= MAX_SPEED:
                raise ValueError(f"speed must be above 0 and at most {MAX_SPEED:g}, got {value!r}")
            clean[key] = speed
        elif key == "latency_ms":
            latency = _number(key, value, "a number of milliseconds")
            if not 0 <= latency <= MAX_WORK_MS:
                raise ValueError(f"latency_ms must be from 0 to {MAX_WORK_MS:g} ms, got {value!r}")
            clean[key] = latency
        elif key in ("flaky", "resets"):
            share = _number(key, value, "a fraction from 0 to 1 (0.3 for 30%)")
            if not 0 <= share <= 1:
                raise ValueError(f"{key} must be a fraction from 0 to 1 (0.3 for 30%), "
                                 f"got {value!r}")
            clean[key] = share
        else:  # blackhole, heal
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            clean[key] = value
    return clean


# ---------------------------------------------------------------- command line


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --speed, --latency, --flaky, --resets, --blackhole."""
    parser.add_argument("--workers", type=int, default=None, metavar="K",
                        help="at most K requests in work at once (default: unlimited)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="F",
                        help="work takes work_ms / F (default 1; 0.5 is half as fast)")
    parser.add_argument("--latency", type=float, default=None, metavar="MS",
                        help="fixed extra delay before every answer, in ms (default 0)")
    parser.add_argument("--flaky", type=float, default=0.0, metavar="P",
                        help="answer this share (0..1) of requests with an injected server fault")
    parser.add_argument("--resets", type=float, default=0.0, metavar="P",
                        help="close the connection on this share (0..1) of requests")
    parser.add_argument("--blackhole", action="store_true",
                        help="start silent: read and answer nothing until healed")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The settings the options ask for; raises ValueError (for parser.error)."""
    latency = args.latency
    if latency is None:
        latency = (getattr(args, "delay", 0.0) or 0.0) * 1000.0
    return ServerSettings().changed({
        "workers": args.workers, "speed": args.speed, "latency_ms": latency,
        "flaky": args.flaky, "resets": args.resets, "blackhole": args.blackhole,
    })


def settings_arguments(settings: ServerSettings) -> list[str]:
    """The command-line options that start a server with these settings."""
    args: list[str] = []
    if settings.workers is not None:
        args += ["--workers", str(settings.workers)]
    if settings.speed != 1.0:
        args += ["--speed", repr(settings.speed)]
    if settings.latency_ms:
        args += ["--latency", repr(settings.latency_ms)]
    if settings.flaky:
        args += ["--flaky", repr(settings.flaky)]
    if settings.resets:
        args += ["--resets", repr(settings.resets)]
    if settings.blackhole:
        args.append("--blackhole")
    return args

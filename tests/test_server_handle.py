"""CalcServer.handle, the one path every front (lines, HTTP) calls: in-process, on a real loop."""

from __future__ import annotations

import asyncio

import pytest

from backends.calc import CalcServer
from backends.settings import ServerSettings


class Recorder:
    def __init__(self) -> None:
        self.got: list[bytes | None] = []
        self.arrived = asyncio.Event()

    def __call__(self, answer: bytes | None) -> None:
        self.got.append(answer)
        self.arrived.set()


class FakeConnection:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pause(self) -> None:
        self.paused += 1

    def resume(self) -> None:
        self.resumed += 1


async def test_plain_requests_reply_at_once() -> None:
    calc, reply = CalcServer("h"), Recorder()
    calc.handle(b"somma 3 4", 1, reply)
    calc.handle(b'{"id": "x", "op": "div", "a": 1, "b": 0}', 2, reply)
    assert reply.got == [b'{"id":1,"op":"somma","a":3,"b":4,"result":7}\n',
                         b'{"id":"x","error":"division by zero","op":"divisione","a":1,"b":0}\n']


async def test_work_replies_later_and_the_loop_stays_free() -> None:
    calc, slow, fast = CalcServer("h"), Recorder(), Recorder()
    calc.handle(b'{"op": "somma", "a": 1, "b": 1, "work_ms": 50}', 1, slow)
    calc.handle(b'{"op": "somma", "a": 2, "b": 2, "work_ms": 0}', 2, fast)
    assert slow.got == [] and fast.got == [b'{"id":2,"op":"somma","a":2,"b":2,"result":4}\n']
    assert (calc.work.busy, calc.outstanding) == (1, 1)
    await asyncio.wait_for(slow.arrived.wait(), 5)
    assert slow.got == [b'{"id":1,"op":"somma","a":1,"b":1,"result":2}\n']
    assert (calc.work.busy, calc.outstanding) == (0, 0)


async def test_a_reset_replies_none() -> None:
    calc, reply = CalcServer("h", seed=1, settings=ServerSettings(resets=1.0)), Recorder()
    calc.handle(b"somma 1 1", 1, reply)
    calc.handle(b"ping", 2, reply)
    assert reply.got[0] is None and b'"pong":"h"' in reply.got[1]  # type: ignore[operator]
    assert calc.resets_injected == 1


async def test_blackhole_pauses_registered_connections_and_holds_answers() -> None:
    calc, reply, conn = CalcServer("h"), Recorder(), FakeConnection()
    calc.connections.add(conn)
    calc.handle(b'{"op": "somma", "a": 1, "b": 1, "work_ms": 20}', 1, reply)
    calc.configure({"blackhole": True})
    assert conn.paused == 1
    calc.handle(b"somma 2 2", 2, reply)  # bytes a front had already read
    await asyncio.sleep(0.1)
    assert reply.got == [] and len(calc.held) == 2
    calc.configure({"heal": True})
    assert conn.resumed == 1 and calc.held == [] and calc.outstanding == 0
    # In the order they came due: the plain one at once, the worked one 20 ms later.
    assert [a and a[:8] for a in reply.got] == [b'{"id":2,', b'{"id":1,']


async def test_latency_applies_to_handle_too() -> None:
    calc, reply = CalcServer("h", settings=ServerSettings(latency_ms=30)), Recorder()
    calc.handle(b"ping", 1, reply)
    assert reply.got == []
    await asyncio.wait_for(reply.arrived.wait(), 5)
    assert b'"latency_ms":30.0' in reply.got[0]  # type: ignore[operator]


@pytest.mark.parametrize("line", [b"somma 3 4", b"divisione 10 4", b"divisione 9 3",
                                  b"moltiplicazione 12 0", b"sottrazione 1 9", b"divisione 5 0",
                                  b"add 1 2", b"* 2 3", b"3 * 4", b"somma 1.5 2",
                                  b"somma 99999999999999999 1"])
def test_fast_and_full_paths_give_the_same_bytes(line: bytes) -> None:
    """The plain fast path and the full path (taken when a setting applies) agree."""
    plain = CalcServer("p").answer(line, 7)
    full = CalcServer("f", settings=ServerSettings(latency_ms=5)).answer(line, 7)
    assert plain == full


def test_settings_refuse_bad_values_with_a_message() -> None:
    calc = CalcServer("h")
    with pytest.raises(ValueError, match="resets must be a fraction"):
        calc.configure({"resets": -0.1})
    with pytest.raises(ValueError, match="speed must be a number"):
        calc.configure({"speed": float("nan")})
    assert calc.settings == ServerSettings()


async def test_work_is_found_behind_leading_spaces() -> None:
    calc, reply = CalcServer("h"), Recorder()
    calc.handle(b'  {"op": "somma", "work_ms": 30}', 1, reply)
    assert reply.got == [] and calc.work.busy == 1
    await asyncio.wait_for(reply.arrived.wait(), 5)
    assert b'"result"' in reply.got[0]  # type: ignore[operator]

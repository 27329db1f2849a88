"""Fuzzing CalcServer.handle: whatever the line and the settings, exactly one reply, no raise."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.calc import CalcServer
from backends.settings import ServerSettings

TOKENS = [b"somma", b"divisione", b"*", b"/", b"1", b"0", b"-7", b"3.5", b"1e999", b"ping",
          b"x", b"{", b"}", b"\xff", b"\t", b"work_ms"]

objects = st.fixed_dictionaries(
    {"op": st.sampled_from(["somma", "divisione", "ping", "bogus", 3])},
    optional={
        "id": st.one_of(st.integers(-5, 5), st.text(max_size=5), st.none(), st.booleans()),
        "a": st.one_of(st.integers(-9, 9), st.floats(allow_nan=False), st.text(max_size=4)),
        "b": st.one_of(st.integers(-9, 9), st.just(0), st.floats(allow_nan=False)),
        # Valid work stays short (the test waits for it); past 60000 is refused at once.
        "work_ms": st.one_of(st.floats(-10, 30, allow_nan=False),
                             st.sampled_from([-3, 0, 5, 25, 60_001, 70_000]),
                             st.text(max_size=3), st.booleans(), st.none()),
    },
).map(orjson.dumps)

lines = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from(TOKENS), max_size=6).map(b" ".join),
    objects,
)

server_settings = st.builds(
    ServerSettings,
    workers=st.one_of(st.none(), st.integers(1, 3)),
    speed=st.sampled_from([0.5, 1.0, 50.0]),
    latency_ms=st.sampled_from([0.0, 0.0, 2.0]),
    flaky=st.sampled_from([0.0, 0.5, 1.0]),
    resets=st.sampled_from([0.0, 0.3]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(lines, min_size=1, max_size=8), server_settings, st.integers(0, 3))
def test_every_line_gets_exactly_one_reply(batch: list[bytes], config: ServerSettings,
                                           seed: int) -> None:
    async def run() -> None:
        calc = CalcServer("fuzz", seed=seed, settings=config)
        got: dict[int, list[bytes | None]] = {}
        for seq, line in enumerate(batch, start=1):
            calc.handle(line, seq, lambda answer, seq=seq: got.setdefault(seq, []).append(answer))
        for _ in range(500):
            if calc.outstanding == 0:
                break
            await asyncio.sleep(0.01)
        assert calc.outstanding == 0 and (calc.work.busy, calc.work.queued) == (0, 0)
        assert sorted(got) == list(range(1, len(batch) + 1))
        for answers in got.values():
            assert len(answers) == 1
            if answers[0] is not None:
                assert answers[0].startswith(b'{"id":') and answers[0].endswith(b"\n")
                orjson.loads(answers[0])

    asyncio.run(run())

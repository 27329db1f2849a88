"""A server lbconsole did not start: it can be drained and stopped, never signalled."""

from __future__ import annotations

import pytest

from tests.conftest import RuntimeFactory
from tests.serverproc import calc_server  # noqa: F401  (fixture)
from tests.wire import Wire, pid_alive, wait_state


async def test_a_remote_server_is_served_stopped_and_resumed_but_never_signalled(
    make_runtime: RuntimeFactory, calc_server,  # noqa: F811
) -> None:
    far = await calc_server()
    runtime = await make_runtime(servers=1, backends=(("far", "127.0.0.1", far.port),))
    rows = {r.name: r for r in runtime.rows()}
    assert not rows["far"].managed and rows["far"].pid is None
    assert runtime.balancer.backend("far").remote
    for action in (runtime.kill, runtime.freeze):
        with pytest.raises(KeyError, match="not a process lbconsole started"):
            action("far")
    wire = await Wire.open(runtime.balancer.port)
    await wire.send("somma 1 1", "somma 2 2")
    assert {a["server"] for a in await wire.answers(2)} == {"far", "server1"}
    message = await runtime.stop_server("far")
    assert "out of service" in message and pid_alive(far.pid)
    assert runtime.balancer.backend("far").state.value == "STOPPED"
    await wire.send("somma 1 1", "somma 2 2")
    assert {a["server"] for a in await wire.answers(2)} == {"server1"}
    assert "back in service" in await runtime.restart("far")
    await wait_state(runtime, "far", "UP")
    assert pid_alive(far.pid)
    await wire.close()

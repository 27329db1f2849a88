"""End-to-end smoke: three real servers behind the balancer answer over real TCP."""

from __future__ import annotations

from app.runtime import Runtime
from balancer.client import Client


async def test_three_servers_answer_in_round_robin(runtime: Runtime) -> None:
    client = await Client.connect("127.0.0.1", runtime.balancer.port)
    answers = [await client.request("somma 3 4") for _ in range(6)]
    await client.close()
    assert [a["result"] for a in answers] == [7] * 6
    servers = [a["server"] for a in answers]
    assert servers[:3] == servers[3:]
    assert sorted(servers[:3]) == ["server1", "server2", "server3"]

"""`lbconsole --headless`: the contract the benchmark relies on."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from balancer.client import Client
from tests.wire import pid_alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_headless_prints_the_port_first_serves_and_stops_cleanly(
        tmp_path: Path, sig: signal.Signals) -> None:
    log_file = tmp_path / "lb.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "--headless", "--port", "0", "--log-file",
        str(log_file), "--servers", "2", "--check-interval", "0.2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        assert match, first
        client = await Client.connect("127.0.0.1", int(match[1]))
        for _ in range(400):
            if (await client.request("ping"))["servers_up"] == 2:
                break
            await asyncio.sleep(0.05)
        answers = [await client.request("somma 3 4", timeout=20) for _ in range(4)]
        await client.close()
        assert [a["result"] for a in answers] == [7] * 4
        assert {a["server"] for a in answers} == {"server1", "server2"}
        pids: list[int] = []
        for _ in range(100):  # the log is written by a thread, every 0.1 s
            pids = [int(p) for p in re.findall(r"process (\d+) ready", log_file.read_text())]
            if len(pids) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(pids) == 2
        process.send_signal(sig)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert not [pid for pid in pids if pid_alive(pid)]
        rest = (await process.stdout.read()).decode()
        assert "server1" in rest  # the summary table
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

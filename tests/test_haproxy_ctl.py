"""`lbconsole ctl` driving `lbconsole serve --engine haproxy`, checked against HAProxy itself.

What a stranger's script does with the README: start serve, send HTTP
keep-alive requests, drain and kill through `lbconsole ctl`, switch the
algorithm during a batch, and read HAProxy's own `show stat` on the runtime
API path serve printed (no lbconsole code between the test and HAProxy).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.httpwire import HttpWire
from tests.test_haproxy_cli import Serve, _env, admin, serve  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy not on PATH (apt-get install haproxy)")


def ctl(running: Serve, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "ctl", "--socket", running.ctl,
                           *words], capture_output=True, text=True, timeout=60, env=_env())


def haproxy_status(running: Serve) -> dict[str, str]:
    """Each server's status word in HAProxy's own `show stat` (field 17)."""
    rows = [line.split(",") for line in admin(running.admin, "show stat").splitlines()
            if line.startswith("servers,")]
    return {r[1]: r[17] for r in rows if r[1] != "BACKEND"}


def haproxy_pid(running: Serve) -> int:
    info = admin(running.admin, "show info")
    return int(next(line for line in info.splitlines() if line.startswith("Pid:")).split()[1])


def sent(running: Serve) -> int:
    """Requests HAProxy gave its servers (the stot of each server row)."""
    return sum(int(line.split(",")[7]) for line in
               admin(running.admin, "show stat").splitlines()
               if line.startswith("servers,server"))


def servers_answering(running: Serve, count: int) -> list[str]:
    wire = HttpWire(running.port)
    try:
        answers = [wire.request(f"somma {i} 1") for i in range(count)]
    finally:
        wire.close()
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    return [a.json["server"] for a in answers]


def wait_for(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_ctl_drain_shows_in_haproxys_show_stat_and_the_rotation_skips_it(
        serve: Serve) -> None:  # noqa: F811
    done = ctl(serve, "drain", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "server2 draining: takes nothing new"
    assert haproxy_status(serve)["server2"] == "DRAIN"
    assert set(servers_answering(serve, 6)) == {"server1", "server3"}
    shown = json.loads(ctl(serve, "show", "servers").stdout)
    assert {s["name"]: s["state"] for s in shown["servers"]}["server2"] == "DRAINING"
    again = ctl(serve, "drain", "server2")  # a second drain undoes it
    assert again.returncode == 0 and "back in the rotation" in again.stdout, again.stderr
    assert haproxy_status(serve)["server2"] == "UP"
    assert sorted(servers_answering(serve, 3)) == ["server1", "server2", "server3"]


def test_ctl_kill_is_a_sigkill_and_haproxy_marks_the_server_down(serve: Serve) -> None:  # noqa: F811
    shown = json.loads(ctl(serve, "show", "servers").stdout)
    pid = {s["name"]: s["pid"] for s in shown["servers"]}["server1"]
    done = ctl(serve, "kill", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"server1 killed (SIGKILL to pid {pid})"
    wait_for(lambda: haproxy_status(serve)["server1"] == "DOWN", "HAProxy to mark server1 DOWN")
    wait_for(lambda: f"server1 process {pid} killed by SIGKILL" in serve.log.read_text(),
             "the log to say how server1 died")
    assert set(servers_answering(serve, 6)) == {"server2", "server3"}
    shown = json.loads(ctl(serve, "show", "servers").stdout)
    row = {s["name"]: s for s in shown["servers"]}["server1"]
    assert row["state"] == "DOWN" and row["pid"] is None and "L4CON" in row["reason"]


def test_ctl_algo_leastconn_during_a_keep_alive_batch_loses_no_request(
        serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    before = haproxy_pid(serve)
    script = tmp_path / "script"
    script.write_text("random 30000\nexit\n")
    with script.open() as stdin:
        client = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "client", "--http", "-q",
             f"127.0.0.1:{serve.port}"],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:

        wait_for(lambda: sent(serve) >= 1000, "the batch to be under way", 30)
        done = ctl(serve, "algo", "leastconn")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("algorithm leastconn: haproxy restarted")
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
    assert client.returncode == 0, err
    assert out.startswith("random 30000: 30000 answers, 0 errors"), out
    # The path serve printed now reaches the new HAProxy, and it answered part of the
    # batch: the switch came while the batch ran.
    assert haproxy_pid(serve) != before
    assert sent(serve) > 0, "the batch ended before the switch"
    assert set(haproxy_status(serve).values()) == {"UP"}
    shown = json.loads(ctl(serve, "show", "stats").stdout)
    assert shown["algorithm"] == "leastconn"
    assert servers_answering(serve, 3)


def test_ctl_algo_p2c_is_refused_naming_haproxys_algorithms(serve: Serve) -> None:  # noqa: F811
    before = haproxy_pid(serve)
    done = ctl(serve, "algo", "p2c")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "p2c is not an HAProxy algorithm" in done.stderr
    assert all(name in done.stderr for name in ("roundrobin", "leastconn", "random"))
    assert haproxy_pid(serve) == before
    shown = json.loads(ctl(serve, "show", "stats").stdout)
    assert shown["algorithm"] == "roundrobin"


def test_ctl_requests_and_batches_go_over_http(serve: Serve) -> None:  # noqa: F811
    one = ctl(serve, "somma", "3", "4")
    assert one.returncode == 0 and one.stdout.startswith("#1 somma 3 4 = 7"), one.stderr
    batch = ctl(serve, "random", "300")
    assert batch.returncode == 0, batch.stderr
    assert batch.stdout.startswith("random 300: 300 answers, 0 errors"), batch.stdout
    assert "server1 100 / server2 100 / server3 100" in batch.stdout
    measured = ctl(serve, "random", "10", "work", "0-5")
    assert measured.returncode == 1 and "need the built-in engine" in measured.stderr
    compare = ctl(serve, "compare", "100")
    assert compare.returncode == 1 and "compare needs the built-in engine" in compare.stderr

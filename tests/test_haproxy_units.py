"""The HAProxy engine's pieces on their own: config, `show stat` CSV, request log lines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.engines.haproxy_api import parse_stat
from app.engines.haproxy_config import LOG_FORMAT, HaproxySettings, ServerEntry, render
from app.engines.haproxy_log import RequestLogReader, parse_request
from app.engines.haproxy_view import console_state, describe
from balancer.log import RequestLog


def settings(tmp_path: Path, **overrides: object) -> HaproxySettings:
    options: dict[str, object] = {
        "bind": "127.0.0.1:1", "socket_path": str(tmp_path / "admin.sock"),
        "servers": (ServerEntry("server1", "127.0.0.1", 4001),
                    ServerEntry("server2", "127.0.0.1", None)),
        "check_interval": 0.25, "rise": 4, "fall": 5, "queue_timeout": 7.0}
    options.update(overrides)
    return HaproxySettings(**options)  # type: ignore[arg-type]


def test_config_carries_the_console_settings(tmp_path: Path) -> None:
    text = render(settings(tmp_path))
    for needed in ("mode http", "balance roundrobin", "option httpchk GET /ping",
                   "retry-on conn-failure empty-response response-timeout",
                   "option redispatch 1", "timeout queue 7000ms",
                   f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin",
                   "log stdout format raw local0", f'log-format "{LOG_FORMAT}"',
                   "server server1 127.0.0.1:4001 check inter 250ms rise 4 fall 5 observe layer4"):
        assert needed in text, needed
    # A server that is not running starts disabled, so HAProxy never sends it traffic.
    assert next(line for line in text.splitlines() if "server2" in line).endswith("disabled")


def test_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        render(settings(tmp_path, algorithm="fastest"))


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not on PATH")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(render(settings(tmp_path, algorithm="leastconn", threads=1)))
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr


STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,\
wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,\
lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,last_chk,addr,
lbconsole,FRONTEND,,,1,2,4096,10,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,5,,,,,,,
servers,server1,0,0,2,3,,120,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,40,0,,1,3,1,,120,,2,0,,9,L7OK,200,\
1,,127.0.0.1:4001,
servers,server2,0,0,0,1,,60,0,0,,0,,3,1,4,2,DOWN,1,1,0,2,1,3,3,,1,3,2,,60,,2,0,,5,L4CON,,0,\
Connection refused,127.0.0.1:4002,
servers,BACKEND,0,0,2,3,410,180,0,0,0,0,,3,1,4,2,UP,2,2,0,,1,40,0,,1,3,0,,180,,1,0,,9,,,,,,
"""


def test_show_stat_csv_gives_the_server_rows() -> None:
    rows = parse_stat(STAT)
    assert [(r.backend, r.server) for r in rows] == [("servers", "server1"),
                                                      ("servers", "server2")]
    one, two = rows
    assert (one.status, one.current, one.total, one.check_status) == ("UP", 2, 120, "L7OK")
    assert (two.status, two.errors_connect, two.retries, two.redispatches) == ("DOWN", 3, 4, 2)
    assert two.last_check == "Connection refused" and two.address == "127.0.0.1:4002"
    assert describe(two) == "haproxy DOWN, check L4CON (Connection refused)"


@pytest.mark.parametrize(("status", "state"), [
    ("UP", "UP"), ("UP 1/3", "UP"), ("DOWN", "DOWN"), ("DOWN 1/2", "DOWN"),
    ("DRAIN", "DRAINING"), ("NOLB", "DRAINING"), ("MAINT", "STOPPED"),
    ("MAINT (resolution)", "STOPPED"), ("no check", "UP"), ("", "STARTING")])
def test_haproxy_status_in_the_console_words(status: str, state: str) -> None:
    assert console_state(status) == state


def test_request_log_lines_are_parsed_and_counted(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "lb.log")
    reader = RequestLogReader(log)
    lines = [b"lbreq 127.0.0.1:5000 server1 200 0 0 1 2 0 ---- 140\n",
             b"lbreq 127.0.0.1:5000 server2 400 0 0 0 1 0 ---- 120\n",
             b"lbreq 127.0.0.1:5000 server3 200 0 0 0 9 +1 ---- 140\n",
             b"lbreq 127.0.0.1:5001 <NOSRV> 503 10000 -1 -1 10000 0 sQ-- 200\n",
             b"Server servers/server2 is DOWN, reason: Layer4 connection problem\n"]
    for line in lines:
        reader.feed(line)
    assert reader.requests == 4 and reader.unserved == 1 and reader.redispatched == 1
    assert reader.server("server1").served == 1 and reader.server("server2").errors == 1
    assert reader.server("server3").redispatched == 1
    assert reader.messages[-1].startswith("Server servers/server2 is DOWN")
    parsed = parse_request(lines[2])
    assert parsed is not None and parsed.total_ms == 9 and parsed.retries == 1
    assert parse_request(b"lbreq garbage\n") is None
    log.flush()
    text = b"".join(log.pieces) + b"".join(log.recent)
    assert text.count(b" -> ") == 4 and b"127.0.0.1:5000 -> server3 200 in 9 ms" in text
    assert b"haproxy: Server servers/server2 is DOWN" in text


def test_show_stat_proxies_rows_on_request() -> None:
    rows = {r.server: r for r in parse_stat(STAT, proxies=True)}
    assert set(rows) == {"FRONTEND", "server1", "server2", "BACKEND"}
    assert rows["FRONTEND"].current == 1 and rows["server1"].queued == 0

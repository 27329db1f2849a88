"""The lab's options (--algorithm, --weight, --admin-socket) and the socket's default path."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from app.cli import build_parser, main
from app.config import runtime_config
from app.control.socket import default_socket_path


def config(*argv: str):  # type: ignore[no-untyped-def]
    return runtime_config(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    c = config()
    assert c.algorithm == "roundrobin" and c.weights == {} and c.admin_socket == ""
    assert c.admin_socket_path(5001) == "loadbalancer.sock"
    assert c.balancer_config().algorithm == "roundrobin"


@pytest.mark.parametrize("prefix", [(), ("serve",)])
def test_algorithm_weights_and_socket(prefix: tuple[str, ...]) -> None:
    c = config(*prefix, "--algorithm", "leastconn", "--weight", "server1=3",
               "--weight", "server3=0", "--admin-socket", "/run/x.sock")
    assert c.algorithm == "leastconn"
    assert c.weights == {"server1": 3, "server3": 0}
    assert c.balancer_config().weights == {"server1": 3, "server3": 0}
    assert c.admin_socket_path(5001) == "/run/x.sock"
    assert config(*prefix, "--admin-socket", "-").admin_socket_path(5001) is None


def test_weights_for_outside_backends() -> None:
    c = config("--backend", "127.0.0.1:7000", "--weight", "backend1=5")
    assert c.weights == {"backend1": 5}


@pytest.mark.parametrize(("argv", "says"), [
    (["--weight", "server1"], "expected NAME=W"),
    (["--weight", "server1=257"], "expected NAME=W"),
    (["--weight", "server1=-1"], "expected NAME=W"),
    (["--weight", "=3"], "expected NAME=W"),
    (["--weight", "server1=x"], "expected NAME=W"),
    (["--weight", "server9=1"], "there is no server 'server9'"),
    (["serve", "--weight", "server4=1"], "the servers are server1, server2, server3"),
    (["--algorithm", "fastest"], "invalid choice: 'fastest'"),
])
def test_bad_options_are_usage_errors(argv: list[str], says: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_default_socket_path_is_per_instance() -> None:
    assert default_socket_path("loadbalancer.log", 5001) == "loadbalancer.sock"
    assert default_socket_path("/var/log/lb/a.log", 5001) == "/var/log/lb/a.sock"
    assert default_socket_path("plain", 5001) == "plain.sock"
    assert default_socket_path("odd.sock", 5001) == "odd.sock.sock"
    assert default_socket_path("/var/log/a.log", 5002, with_port=True) == "/var/log/a-5002.sock"
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    assert default_socket_path(None, 5002) == f"{folder}/lbconsole-{os.getuid()}-5002.sock"


def test_the_control_plane_never_loads_textual() -> None:
    # ctl, serve's socket and scenarios import these; none of them may pull in the UI.
    code = ("import sys, app.control.grammar, app.control.dispatch, app.control.socket, "
            "app.control.ctl, app.control.compare, app.control.batch, balancer.algorithms; "
            "sys.exit('textual' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0

"""`--backend [NAME=]HOST:PORT`: parsing, default names, clear errors, and the runtime
registering each backend under its name."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cli import build_parser
from app.config import parse_backend, runtime_config
from tests.conftest import RuntimeFactory


def backends_of(*argv: str) -> tuple[tuple[str, str, int], ...]:
    return runtime_config(build_parser().parse_args(["serve", *argv])).backends


def test_names_are_optional_and_default_to_their_place() -> None:
    got = backends_of("--backend", "10.0.0.5:6001", "--backend", "h2=10.0.0.6:6002",
                      "--backend", "calc.example.org:7000", "--backend", "v6=[::1]:5001")
    assert got == (("backend1", "10.0.0.5", 6001), ("h2", "10.0.0.6", 6002),
                   ("backend3", "calc.example.org", 7000), ("v6", "::1", 5001))
    config = runtime_config(build_parser().parse_args(["serve", "--backend", "a=h:1"]))
    assert config.servers == 0  # outside backends alone: spawn nothing


@pytest.mark.parametrize(("spec", "why"), [
    ("10.0.0.5", "expected [NAME=]HOST:PORT"),
    (":6001", "expected [NAME=]HOST:PORT"),
    ("h1=", "expected [NAME=]HOST:PORT"),
    ("10.0.0.5:0", "bad port '0'"),
    ("10.0.0.5:65536", "bad port '65536'"),
    ("10.0.0.5:http", "bad port 'http'"),
    ("999.1.1.1:5001", "bad host '999.1.1.1'"),
    ("bad_host!:5001", "bad host 'bad_host!'"),
    ("::1:5001", "write IPv6 addresses in brackets"),
    ("[::zz]:5001", "bad IPv6 address"),
    ("1h=10.0.0.5:5001", "bad backend name '1h'"),
    ("a b=10.0.0.5:5001", "bad backend name 'a b'"),
    ("server2=10.0.0.5:5001", "reserved for servers lbconsole spawns"),
])
def test_bad_specs_get_a_clear_error(spec: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_backend(spec)
    assert why in str(info.value)


def test_a_name_used_twice_is_refused_by_the_command_line() -> None:
    for argv in (["--backend", "h=a:1", "--backend", "h=b:2"],
                 ["--backend", "a:1", "--backend", "backend1=b:2"]):
        result = subprocess.run([sys.executable, "-m", "app.cli", "serve", *argv],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert "argument --backend: two backends are named" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_bad_backend_is_a_usage_error_not_a_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--backend", "x:0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "bad port '0' in 'x:0'" in result.stderr and "Traceback" not in result.stderr


names = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True).filter(
    lambda n: not n.startswith("server"))
hosts = st.one_of(st.ip_addresses(v=4).map(str),
                  st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True))


@given(name=st.none() | names, host=hosts, port=st.integers(1, 65535))
def test_what_is_written_is_what_is_parsed(name: str | None, host: str, port: int) -> None:
    spec = f"{name}={host}:{port}" if name else f"{host}:{port}"
    assert parse_backend(spec) == (name, host, port)


async def test_the_runtime_registers_backends_by_name(make_runtime: RuntimeFactory) -> None:
    runtime = await make_runtime(wait_up=False, servers=1,
                                 backends=(("far", "127.0.0.1", 9), ("near", "127.0.0.1", 10)))
    assert [b.name for b in runtime.balancer.backends] == ["far", "near", "server1"]
    assert runtime.balancer.backend("near").port == 10

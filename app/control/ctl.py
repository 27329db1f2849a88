"""`lbconsole ctl COMMAND…`: send one command to a running lbconsole's runtime socket.

Prints the answer's message, or for `show servers` / `show stats` its data as
one JSON object (`--json` prints the whole answer line). `ctl -` reads one
command per line from stdin, for scripts. Exit status 0 when
the command was carried out, 1 with a message on stderr when it was refused or
nothing answers at the socket, 2 for a usage error. Blocking and tiny on
purpose: it runs once and leaves.
"""

from __future__ import annotations

import os
import socket
import sys

import orjson

from app.control.grammar import Invalid, Show, parse_command

DEFAULT_SOCKET = "loadbalancer.sock"
"""Where `lbconsole serve` puts its socket with the default log file, in its directory."""
ENV_SOCKET = "LBCONSOLE_SOCKET"


def socket_path(given: str | None) -> str:
    return given or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET


def send(path: str, line: str, timeout: float) -> bytes:
    """One command out, one answer line back; OSError with an operator's message."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise OSError(f"no admin socket at {path} (is lbconsole running? "
                          "--socket PATH or $LBCONSOLE_SOCKET names another)") from None
        except ConnectionRefusedError:
            raise OSError(f"nothing listens on {path} (a socket left by a stopped "
                          "lbconsole?)") from None
        except PermissionError:
            raise OSError(f"permission denied on {path} (it belongs to another user)") from None
        sock.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
        answer = b"".join(chunks)
        if not answer:
            raise OSError(f"{path} closed the connection without an answer")
        return answer.splitlines()[0]
    except TimeoutError:
        raise OSError(f"no answer from {path} within {timeout:g}s (--timeout S)") from None
    finally:
        sock.close()


def ctl_main(path: str | None, words: list[str], raw: bool = False,
             timeout: float = 300.0) -> int:
    """`ctl COMMAND…`, or `ctl -`: one command per line from stdin (blank lines and
    `#` comments skipped), each answered in turn; status 1 if any was refused."""
    where = socket_path(path)
    if words == ["-"]:
        status = 0
        for text in sys.stdin:
            line = text.strip()
            if line and not line.startswith("#"):
                status = max(status, _one(where, line, raw, timeout))
        return status
    return _one(where, " ".join(words).strip(), raw, timeout)


def _one(where: str, line: str, raw: bool, timeout: float) -> int:
    command = parse_command(line)
    if command is None:
        print("usage: lbconsole ctl COMMAND…   (e.g. lbconsole ctl show servers; "
              "lbconsole ctl help; lbconsole ctl - reads commands from stdin)",
              file=sys.stderr)
        return 2
    if isinstance(command, Invalid):
        print(f"lbconsole ctl: {command.message}", file=sys.stderr)
        return 1
    try:
        answer = send(where, line, timeout)
        reply = orjson.loads(answer)
        ok, message, data = bool(reply["ok"]), str(reply["message"]), reply.get("data")
    except OSError as exc:
        print(f"lbconsole ctl: {exc}", file=sys.stderr)
        return 1
    except (orjson.JSONDecodeError, KeyError, TypeError):
        print(f"lbconsole ctl: not an lbconsole answer from {where}", file=sys.stderr)
        return 1
    out = sys.stdout
    if raw:
        out.write(answer.decode("utf-8", "replace") + "\n")
    elif ok and isinstance(command, Show) and data is not None:
        out.write(orjson.dumps(data).decode() + "\n")
    elif ok:
        out.write(message + "\n")
    out.flush()
    if not ok:
        print(f"lbconsole ctl: {message}", file=sys.stderr)
        return 1
    return 0

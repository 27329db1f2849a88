"""A bare HTTP/1.1 peer for tests: blocking sockets, no project code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class HttpWire:
    """One keep-alive connection: write raw requests, read whole responses in order."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def post(self, body: bytes | str, *, close: bool = False) -> None:
        raw = body.encode() if isinstance(body, str) else body
        head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(raw)
        self.send(head + (b"Connection: close\r\n" if close else b"") + b"\r\n" + raw)

    def get(self, path: str) -> None:
        self.send(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the peer")
        self.buffer += chunk

    def read(self) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(status, headers, body)

    def request(self, body: bytes | str) -> Response:
        self.post(body)
        return self.read()

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the peer closes the connection (after what it still had to say)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except ConnectionResetError:  # closed with our unread request in its buffer
            return True
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_READY = re.compile(r"^ready (\S+) (\S+):(\d+) pid (\d+)")
_HTTP = re.compile(r"^http (\S+) (\S+):(\d+)")


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    http_port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def start_server(name: str = "server1", *extra: str, timeout: float = 15.0) -> ServerProcess:
    """`python -m backends.server --http-port 0`, waiting for its two ready lines."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backends.server", "--name", name, "--port", "0",
         "--http-port", "0", "--exit-on-stdin-eof", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        ready = _READY.match(proc.stdout.readline().decode())
        http = _HTTP.match(proc.stdout.readline().decode())
        assert ready and http and time.monotonic() < deadline, "server did not start"
    except BaseException:
        proc.kill()
        proc.wait(5)
        raise
    return ServerProcess(name, proc, int(ready[3]), int(http[3]))


class AsyncHttpWire:
    """The same peer on asyncio streams, for tests whose event loop runs the engine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> AsyncHttpWire:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def post(self, body: str) -> None:
        raw = body.encode()
        self.writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                          % (len(raw), raw))

    async def read(self, timeout: float = 10.0) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return Response(int(lines[0].split()[1]), headers, body)

    async def request(self, body: str, timeout: float = 10.0) -> Response:
        self.post(body)
        return await self.read(timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

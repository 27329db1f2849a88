"""The line front of a calculation server: one TCP connection speaking the wire protocol.

Splits what it reads into lines, numbers the non-blank ones 1, 2, 3… (the id of
an answer whose request carried none) and hands each to `CalcServer.answer`.
Immediate answers of one chunk leave in one write; answers with work or
latency come later through `reply`, so they may leave out of order (ids match
them). A black hole pauses reading; bytes already read wait in the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from backends.calc import CalcServer
from balancer.protocol import MAX_LINE, error_line

_LINGER_RESET = struct.pack("ii", 1, 0)


class LineConnection(asyncio.Protocol):
    """One client connection (usually the balancer's)."""

    __slots__ = ("buffer", "closing", "paused", "pending", "seq", "server", "transport")

    def __init__(self, server: CalcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.seq = 0
        self.pending = 0
        """Answers this connection still owes (in work, delayed, held)."""
        self.closing = False
        """Close once `pending` reaches 0 (the peer half-closed, or a line was too long)."""
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        if self.server.settings.blackhole:
            self.pause()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def eof_received(self) -> bool:
        if self.pending == 0:
            return False  # answers already computed have been written; close once they drain
        self.closing = True
        return True

    # ------------------------------------------------------------ black hole

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
                if b"\n" in self.buffer:
                    asyncio.get_running_loop().call_soon(self.data_received, b"")

    # ------------------------------------------------------------ requests

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        if self.paused or self.transport is None:
            # Read before the pause took hold (one read at most): kept whole for the heal.
            self.buffer = data
            return
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        out = []
        seq = self.seq
        answer = self.server.answer
        reply = self.reply
        for line in lines:
            if not line or line == b"\r":
                continue
            seq += 1
            if len(line) > MAX_LINE:
                out.append(error_line(seq, f"line too long (limit {MAX_LINE} bytes)"))
                self._finish(out, close=True)
                return
            data = answer(line, seq, reply)
            if data is not None:
                out.append(data)
            elif self.transport is None:
                return  # an injected reset
            else:
                self.pending += 1
        self.seq = seq
        if len(self.buffer) > MAX_LINE:
            out.append(error_line(seq + 1, f"line too long (limit {MAX_LINE} bytes)"))
            self._finish(out, close=True)
            return
        if out:
            self._finish(out, close=False)

    def _finish(self, out: list[bytes], close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if close:
            self.closing = True
        if self.server.special:
            self.pending += 1
            self.server.send(self.reply, b"".join(out))
            return
        transport.write(b"".join(out))
        if self.closing and self.pending == 0:
            transport.close()

    def reply(self, data: bytes | None) -> None:
        """An answer that comes due (work, latency, held), or None: reset the connection."""
        transport = self.transport
        if data is None:
            self.reset()
            return
        self.pending -= 1
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if self.closing and self.pending == 0:
            transport.close()

    def reset(self) -> None:
        """Close at once with an RST, dropping what was not sent: a connection reset."""
        transport, self.transport = self.transport, None
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

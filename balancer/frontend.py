"""One client connection to the balancer: reading, parsing, flow control, writing.

`data_received` cuts the chunk into complete lines and turns them into
requests for the core: the client's answer prefix (`{"id":7`) and the line for
the server. Plain text lines (the common case, found by one `translate` over
the chunk) are forwarded as typed; anything else takes `_prepare`, which parses
JSON exactly, answers `ping` itself, and stops at `exit` or an over-long line.
Either way the requests go to `Core.dispatch`, the one path. Blank lines are
skipped: they take no id and no room under the in-flight cap.
"""

from __future__ import annotations

import asyncio

from balancer.core import Core
from balancer.protocol import (
    EXIT_WORDS,
    MAX_LINE,
    PING_WORD,
    ProtocolError,
    Request,
    error_line,
    id_error,
    json_id,
    loads_exact,
    parse_object,
)

# Bytes that can only make plain text requests. A chunk with any other byte
# (braces of JSON, CR, tabs, non-ASCII, or x/q/g, which `exit`, `quit` and
# `ping` need) takes the careful path; `translate` finds out in one C pass.
_PLAIN = bytes(sorted(set(
    b"abcdefhijklmnoprstuvwyzABCDEFHIJKLMNOPRSTUVWYZ0123456789+-*/.,;:=()_ \n"
)))

OPEN, CLOSING, CLOSED = "open", "closing", "closed"

LINGER = 2.0
"""Seconds a closed connection keeps reading (and dropping) what the client sends."""


class FlowControl:
    """Why reading from a client is paused; reading resumes when no reason is left.

    Reasons: "inflight" (the client has its cap of requests in flight), "writer"
    (it does not read its answers), "closing" (after `exit`, EOF or an over-long
    line: nothing more is read). Every method is idempotent.
    """

    __slots__ = ("reasons", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        if not self.reasons and not self.transport.is_closing():
            self.transport.resume_reading()

    def paused(self, reason: str) -> bool:
        return reason in self.reasons


class ClientConnection(asyncio.Protocol):
    """A client of the balancer: its requests in, its answers out, in order of events."""

    def __init__(self, core: Core, number: int) -> None:
        self.core = core
        self.number = number
        self.tag = b"c%d " % number
        self.name = f"c{number}"
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.state = OPEN
        self.alive = False
        self.buffer = b""
        self.seq = 0
        """Requests seen (blank lines are not); a request without an id gets this number."""
        self.pending = 0
        """Requests sent on to servers (or queued for one) and not yet answered."""
        self.requests = 0
        self.max_inflight = core.config.max_inflight
        self.held_prefixes: list[bytes] = []
        self.held_lines: list[bytes] = []
        """Requests read past the in-flight cap, sent as answers free room."""
        self._held_scheduled = False
        self.out: list[bytes] = []
        self.logged = 0
        """How many answers at the head of `out` are in the log already."""
        self.final: bytes | None = None
        """The last line before closing: goodbye, or the over-long line's error."""
        self.how = "closed its side"

    # ------------------------------------------------------------ lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        core = self.core
        limit = core.config.max_clients
        if len(core.clients) >= limit or core.closing:
            core.refused_clients += 1
            why = "shutting down" if core.closing else f"too many clients (limit {limit})"
            core.log.event(f"{self.name} refused from {self.peer}: {why}")
            transport.write(error_line(None, f"{why}, try again later"))  # type: ignore[attr-defined]
            transport.close()
            return
        self.alive = True
        self.flow = FlowControl(self.transport)
        core.clients.add(self)
        high = core.config.write_buffer_limit
        self.transport.set_write_buffer_limits(high=high, low=high // 4)
        core.log.event(f"{self.name} connected from {self.peer}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.alive:
            return
        self.alive = False
        self.state = CLOSED
        self._log_out()
        self.core.discarded += len(self.out)
        self.out.clear()
        self.core.clients.discard(self)
        why = "closed" if exc is None else f"lost ({exc})"
        dropped = f", {self.pending} answers still in flight discarded" if self.pending else ""
        self.core.log.event(f"{self.name} disconnected from {self.peer}: {why} after "
                            f"{self.requests} requests{dropped}")

    def eof_received(self) -> bool:
        if self.state is CLOSED:
            return False  # lingering after our last line: now close
        # A half-close means `exit` without the goodbye: the unterminated last line
        # is a request like any other, then everything in flight is answered.
        if self.state is OPEN:
            if self.buffer:
                self.data_received(b"\n")
            if self.state is OPEN:
                self._close_after(None, "closed its side")
        return True

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        if self.flow is not None:
            self.flow.pause("writer")

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.resume("writer")

    # ------------------------------------------------------------ requests

    def data_received(self, data: bytes) -> None:
        if self.state is not OPEN:
            return
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        if lines:
            # One C pass over the chunk decides whether any line needs a closer look
            # (JSON, CR, leading blanks, exit/quit/ping, an over-long line); its
            # unfinished last line can only make that likelier, never hide a case.
            if (data.translate(None, _PLAIN) or data[:1] == b" " or b"\n " in data
                    or (len(data) > MAX_LINE and max(map(len, lines)) > MAX_LINE)):
                prefixes, lines = self._prepare(lines)
            else:
                if b"" in lines:
                    lines = [line for line in lines if line]
                seq = self.seq
                self.seq = seq + len(lines)
                if len(lines) == 1:
                    prefixes = [b'{"id":%d' % self.seq]  # cheaper than the comprehension
                else:
                    prefixes = [b'{"id":%d' % n for n in range(seq + 1, self.seq + 1)]
            self._send(prefixes, lines)
        if self.state is OPEN and len(self.buffer) > MAX_LINE:
            self._too_long()

    def _send(self, prefixes: list[bytes], lines: list[bytes]) -> None:
        """Requests to the core, as many as the in-flight cap allows; the rest wait."""
        if self.held_lines:
            prefixes = self.held_prefixes + prefixes
            lines = self.held_lines + lines
            self.held_prefixes, self.held_lines = [], []
        room = self.max_inflight - self.pending
        if len(lines) > room:
            room = max(room, 0)
            self.held_prefixes, self.held_lines = prefixes[room:], lines[room:]
            del prefixes[room:], lines[room:]
        if lines:
            self.requests += len(lines)
            self.core.dispatch(self, prefixes, lines)
        if (self.held_lines or self.pending >= self.max_inflight) and self.flow is not None:
            self.flow.pause("inflight")

    def _prepare(self, lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """The careful path: ids and forwarded lines for the requests among `lines`,
        answering here what the balancer answers itself (errors, ping, exit)."""
        prefixes: list[bytes] = []
        forward: list[bytes] = []
        for line in lines:
            if len(line) > MAX_LINE:
                self._too_long()
                break
            stripped = line.strip()
            if not stripped:
                continue
            self.seq += 1
            seq = self.seq
            lowered = stripped.lower()
            if lowered in EXIT_WORDS:
                self._exit(seq)
                break
            if lowered == PING_WORD:
                self.core.answer_locally(self, self.core.pong_line(seq), error=False)
                continue
            if stripped[:1] not in (b"{", b"["):
                # Text goes to the server as typed; the server parses and validates it.
                prefixes.append(b'{"id":%d' % seq)
                forward.append(stripped)
                continue
            prepared = self._json(stripped, seq)
            if prepared is None:
                continue
            if prepared is EXIT_WORDS:
                break
            prefixes.append(prepared[0])
            forward.append(prepared[1])
        return prefixes, forward

    def _json(self, text: bytes, seq: int) -> tuple[bytes, bytes] | frozenset | None:
        """A JSON request: (prefix, canonical line for the server); None when answered
        here; EXIT_WORDS after an exit. Parsed exactly: big integers stay integers."""
        core = self.core
        obj = loads_exact(text)
        if isinstance(obj, ProtocolError):
            core.answer_locally(self, error_line(seq, obj.message), error=True)
            return None
        if not isinstance(obj, dict):
            core.answer_locally(self, error_line(seq, "a JSON request must be an object"),
                                error=True)
            return None
        rid = obj.get("id")
        if rid is None:
            rid = seq
        else:
            problem = id_error(rid)
            if problem is not None:
                core.answer_locally(self, error_line(seq, problem), error=True)
                return None
        op = obj.get("op")
        if isinstance(op, str) and op.lower() in ("exit", "quit"):
            self._exit(rid)
            return EXIT_WORDS
        parsed = parse_object(obj, rid)
        if isinstance(parsed, ProtocolError):
            core.answer_locally(self, error_line(rid, parsed.message), error=True)
            return None
        if not isinstance(parsed, Request):
            # Every form of ping is answered here: no client reads a server's pong.
            core.answer_locally(self, core.pong_line(rid), error=False)
            return None
        # Without its id the request means the same on any server connection, where
        # the server numbers it by its line, so a re-dispatch resends it as it is.
        return b'{"id":' + json_id(rid), parsed.wire()

    # ------------------------------------------------------------ closing

    def _exit(self, rid: object) -> None:
        self._close_after(b'{"id":%b,"goodbye":true}\n' % json_id(rid), "said goodbye")

    def _too_long(self) -> None:
        self.seq += 1
        self.core.local_errors += 1
        self._close_after(error_line(self.seq, f"line too long (limit {MAX_LINE} bytes); "
                                               "closing"), "sent a line too long")

    def _close_after(self, final: bytes | None, how: str) -> None:
        """Read nothing more; answer every request read so far, then `final`, then close."""
        self.state = CLOSING
        self.final = final
        self.how = how
        self.buffer = b""
        if self.flow is not None:
            self.flow.pause("closing")
        if not self.out:
            self.core.dirty_clients.append(self)
        self.core.schedule_flush()

    # ------------------------------------------------------------ answers

    def answered(self, origin: str | None) -> None:
        """Log the answer just queued with where its request was first sent; the
        answers queued before it are logged first, so the log keeps their order."""
        log = self.core.log
        out = self.out
        if log.log_requests:
            if len(out) - 1 > self.logged:
                log.lines(self.tag, out[self.logged:-1])
            log.line(self.tag + b"(re-dispatched from %b) " % origin.encode(), out[-1])
        self.logged = len(out)

    def _log_out(self) -> None:
        """Log the queued answers not logged yet: every answer is logged once, as it
        leaves (or is dropped), `stamp + tag` joined between them in one C call."""
        out = self.out
        if len(out) > self.logged and self.core.log.log_requests:
            self.core.log.lines(self.tag, out[self.logged:] if self.logged else out)
        self.logged = 0

    def flush(self) -> None:
        """Write queued answers in one call; finish closing once nothing is owed."""
        out = self.out
        if out:
            self._log_out()
        transport = self.transport
        if transport is None or not self.alive:
            self.core.discarded += len(out)
            out.clear()
            return
        if self.state is CLOSING and self.pending <= 0 and not self.held_lines:
            if self.final is not None:
                out.append(self.final)
            if out:
                transport.write(b"".join(out))
                out.clear()
            self.alive = False
            self.state = CLOSED
            self.core.clients.discard(self)
            self.core.log.event(f"{self.name} {self.how} after {self.requests} requests")
            self._linger(transport)
            return
        if out:
            transport.write(b"".join(out))
            out.clear()
        flow = self.flow
        if flow is not None and flow.paused("inflight") \
                and self.pending <= self.core.config.resume_inflight:
            if self.held_lines:
                if not self._held_scheduled:
                    self._held_scheduled = True
                    asyncio.get_running_loop().call_soon(self._send_held)
            else:
                flow.resume("inflight")

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close gently: send FIN, then read and drop what the client still sends
        until it closes too (at most LINGER s). Closing with unread bytes would
        send a reset, and a reset can destroy the last answers before the client
        reads them."""
        if not transport.can_write_eof() or transport.is_closing():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:
            transport.close()
            return
        if transport.is_reading() is False:
            transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER, transport.close)

    def _send_held(self) -> None:
        self._held_scheduled = False
        if self.alive and self.held_lines:
            self._send([], [])
        if self.alive and not self.held_lines and self.flow is not None \
                and self.pending < self.max_inflight:
            self.flow.resume("inflight")
            if self.state is CLOSING and self.pending <= 0:
                self.flush()

"""One client connection to the balancer: the other half of the hot path.

`data_received` splits the chunk into lines and hands each request to the next
server in the rotation, queued for one write per server per loop iteration.
Text requests are forwarded verbatim (the server parses and validates them and
numbers them by their line on its connection, which is the id the balancer
matches the answer by); JSON requests are forwarded without their id. Lines
that need it (JSON, `exit`, `ping`, blanks, CR) take the careful path.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson

from balancer.protocol import EXIT_WORDS, MAX_LINE, PING_WORD, error_line, json_id, valid_id

if TYPE_CHECKING:
    from balancer.balancer import Balancer

# Bytes that can only make plain text requests. A chunk with any other byte
# (braces of JSON, CR, tabs, non-ASCII, or x/q/g, which `exit`, `quit` and
# `ping` need) takes the careful path; `translate` finds out in one C pass.
_PLAIN = bytes(sorted(set(
    b"abcdefhijklmnoprstuvwyzABCDEFHIJKLMNOPRSTUVWYZ0123456789+-*/.,;:=()_ \n"
)))

_SKIP = 0
_STOP = 1


class ClientConnection(asyncio.Protocol):
    """A client of the balancer: its pending count, output queue and backpressure."""

    def __init__(self, balancer: Balancer, number: int) -> None:
        self.balancer = balancer
        self.number = number
        self.tag = b"c%d " % number
        self.name = f"c{number}"
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.seq = 0
        """Request lines seen; a request without an id gets this number."""
        self.pending = 0
        """Requests dispatched or queued and not yet answered."""
        self.max_inflight = balancer.config.max_inflight
        self.requests = 0
        """Requests sent on to servers (or queued for one)."""
        self.out: list[bytes] = []
        self.logged = 0
        """How many answers at the head of `out` are in the log already (see `flush`)."""
        self.alive = False
        self.exiting = False
        self.goodbye_id: object = None
        """The id of the `exit` request to answer with goodbye; None for a half-close."""
        self.paused_by_inflight = False
        self.paused_by_writer = False
        self.held: list[bytes] = []
        """Complete lines read past the in-flight cap, dispatched as answers free room."""
        self.held_careful = False
        self.half_closed = False
        self._held_scheduled = False

    # ------------------------------------------------------------ lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        balancer = self.balancer
        if len(balancer.clients) >= balancer.config.max_clients:
            balancer.refused_clients += 1
            balancer.log.event(f"{self.name} refused from {self.peer}: too many clients "
                               f"(limit {balancer.config.max_clients})")
            transport.write(error_line(None, f"too many clients (limit "
                                             f"{balancer.config.max_clients}), try again later"))
            transport.close()
            return
        self.alive = True
        balancer.clients.add(self)
        limit = balancer.config.write_buffer_limit
        self.transport.set_write_buffer_limits(high=limit, low=limit // 4)
        balancer.log.event(f"{self.name} connected from {self.peer}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.alive:
            return
        self.alive = False
        self._log_out()
        self.out.clear()
        balancer = self.balancer
        balancer.clients.discard(self)
        why = "closed" if exc is None else f"lost ({exc})"
        dropped = f", {self.pending} answers still in flight discarded" if self.pending else ""
        balancer.log.event(f"{self.name} disconnected from {self.peer}: {why} after "
                           f"{self.requests} requests{dropped}")

    def eof_received(self) -> bool:
        # A half-close is an implicit `exit`: answer what is in flight, then close.
        self.half_closed = True
        if not self.exiting and not self.held:
            self.exiting = True
            self.flush()
        return True

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        self.paused_by_writer = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_by_writer = False
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if self.paused_by_writer or self.exiting or self.transport is None:
            return
        if self.paused_by_inflight and self.pending > self.balancer.config.resume_inflight:
            return
        self.paused_by_inflight = False
        if self.held:
            # Dispatch what was already read before asking the socket for more.
            if not self._held_scheduled:
                self._held_scheduled = True
                asyncio.get_running_loop().call_soon(self._dispatch_held)
            return
        if self.half_closed or self.transport.is_reading():
            return
        self.transport.resume_reading()

    def _dispatch_held(self) -> None:
        self._held_scheduled = False
        if self.alive and self.held and not self.exiting:
            self.data_received(b"")
        if not self.held:
            self._maybe_resume()

    # ------------------------------------------------------------ requests

    def data_received(self, data: bytes) -> None:
        # The lone plain request (ping-pong, a person typing): one whole line,
        # nothing buffered or held, nothing else to write this iteration. It is
        # written to the next server at once, as received, in as few steps as
        # possible: at one request in flight the balancer's latency is its
        # Python work. Anything else takes the general loop below.
        if (
            data.find(b"\n") == len(data) - 1
            and not self.buffer
            and 1 < len(data) <= MAX_LINE
            and data[:1] != b" "
            and not data.translate(None, _PLAIN)
            and not self.held
            and self.alive
            and not self.exiting
        ):
            balancer = self.balancer
            rr = balancer.rr
            ring = rr.ring
            if ring and not balancer.flush_scheduled and self.pending + 1 < self.max_inflight:
                pos = rr.pos
                backend = ring[pos]
                pos += 1
                rr.pos = pos if pos < len(ring) else 0
                rr.picks += 1
                self.seq = seq = self.seq + 1
                backend.sent = number = backend.sent + 1
                now = time.monotonic()
                line = data[:-1]
                backend.inflight[number] = (self, b'{"id":%d' % seq, line, now, None)
                self.pending += 1
                self.requests += 1
                balancer.requests += 1
                if balancer.routes_budget > 0 or now >= balancer.routes_window_end:
                    balancer.note_route(backend, number, now)
                backend.send(line, data)
                return
        if self.exiting or not self.alive:
            return
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        # One scan of the whole chunk decides whether any line needs a closer
        # look (JSON, CR, leading blanks, exit/quit/ping, an over-long line);
        # plain text lines are then forwarded verbatim with no per-line test.
        careful = (
            len(data) > MAX_LINE
            or data.translate(None, _PLAIN) != b""
            or data[:1] == b" "
            or b"\n " in data
        )
        balancer = self.balancer
        if self.held:
            lines[:0] = self.held
            careful = careful or self.held_careful
            self.held = []
        room = self.max_inflight - self.pending
        if len(lines) > room:
            # Past the in-flight cap: keep the rest (already read) for later and
            # stop reading, so a client cannot make us hold more than the cap.
            room = max(room, 0)
            self.held = lines[room:]
            self.held_careful = careful
            del lines[room:]
            self.paused_by_inflight = True
            if self.transport is not None:
                self.transport.pause_reading()
        rr = balancer.rr
        ring = rr.ring
        n = len(ring)
        pos = rr.pos
        seq = self.seq
        now = time.monotonic()
        count = 0
        for line in lines:
            if not line:
                continue
            if careful:
                prepared = self._prepare(line, seq + 1)
                if prepared is _SKIP:
                    continue
                seq += 1
                if prepared is _STOP:
                    break
                if prepared is None:
                    continue
                prefix, line = prepared
            else:
                seq += 1
                prefix = b'{"id":%d' % seq
            count += 1
            if n:
                backend = ring[pos]
                pos += 1
                if pos == n:
                    pos = 0
                number = backend.sent + 1
                backend.sent = number
                backend.inflight[number] = (self, prefix, line, now, None)
                backend.out.append(line)
            else:
                balancer.enqueue((self, prefix, line, now, None))
        self.seq = seq
        if count:
            rr.pos = pos
            rr.picks += count
            self.pending += count
            self.requests += count
            balancer.requests += count
            if count == 1 and n and not balancer.flush_scheduled:
                # A lone request and nothing else to write this iteration: no
                # batching to gain, so send it now and save a loop iteration.
                balancer.flush_backend(backend)
            else:
                dirty = balancer.dirty_backends
                for backend in ring:
                    if backend.out and not backend.dirty:
                        backend.dirty = True
                        dirty.append(backend)
                if not balancer.flush_scheduled:
                    balancer.schedule_flush()
            if self.pending >= self.max_inflight and self.transport is not None:
                self.paused_by_inflight = True
                self.transport.pause_reading()
        if self.exiting or self.half_closed or len(self.buffer) > MAX_LINE:
            self._after_chunk()

    def _after_chunk(self) -> None:
        """The rare endings of a chunk: an over-long line, a half-close, an exit."""
        if len(self.buffer) > MAX_LINE and not self.exiting:
            self.seq += 1
            self._too_long(self.seq)
        if self.half_closed and not self.held:
            self.exiting = True
        if self.exiting:
            self.flush()

    def _prepare(self, line: bytes, seq: int) -> tuple[bytes, bytes] | int | None:
        """The careful path for one line: returns (client id prefix, line to forward),
        _SKIP for a blank line, _STOP after `exit`, or None when answered here."""
        if len(line) > MAX_LINE:
            self._too_long(seq)
            return _STOP
        stripped = line.strip()
        if not stripped:
            return _SKIP
        lowered = stripped.lower()
        if lowered in EXIT_WORDS:
            self._begin_exit(seq)
            return _STOP
        if lowered == PING_WORD:
            self._answer(self.balancer.pong_line(seq))
            return None
        if stripped[:1] not in (b"{", b"["):
            # Text goes to the server as typed; the server parses and validates it.
            return b'{"id":%d' % seq, stripped
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            reason = str(exc).split(":", 1)[0][:80]
            self._answer(error_line(seq, f"malformed JSON: {reason}"))
            return None
        if not isinstance(obj, dict):
            self._answer(error_line(seq, "a JSON request must be an object"))
            return None
        rid = obj.pop("id", None)
        if rid is None:
            prefix = b'{"id":%d' % seq
            rid = seq
        elif valid_id(rid):
            prefix = b'{"id":' + json_id(rid)
        else:
            self._answer(error_line(seq, "id must be an integer or a string"))
            return None
        op = obj.get("op")
        if isinstance(op, str) and op.lower() in ("exit", "quit"):
            self._begin_exit(rid)
            return _STOP
        if isinstance(op, str) and op.lower() == "ping":
            self._answer(self.balancer.pong_line(rid))
            return None
        # Without its id the request means the same on any server connection,
        # where the server numbers it by its line, so a re-dispatch resends it as is.
        try:
            return prefix, orjson.dumps(obj)
        except TypeError:
            self._answer(error_line(rid, "number out of range"))
            return None

    def _too_long(self, seq: int) -> None:
        self._answer(error_line(seq, f"line too long (limit {MAX_LINE} bytes); closing"))
        self.buffer = b""
        self.held = []
        self.exiting = True
        self.goodbye_id = None
        if self.transport is not None:
            self.transport.pause_reading()
        self.flush()

    def _answer(self, line: bytes) -> None:
        """Queue an answer the balancer made itself (an error, a pong, goodbye);
        it is written with the others at the end of the loop iteration."""
        balancer = self.balancer
        if not self.out:
            balancer.dirty_clients.append(self)
            if not balancer.flush_scheduled:
                balancer.schedule_flush()
        self.out.append(line)
        if b'"error"' in line[:40]:
            balancer.local_errors += 1

    def _begin_exit(self, rid: object) -> None:
        self.exiting = True
        self.goodbye_id = rid
        self.buffer = b""
        self.held = []
        if self.transport is not None:
            self.transport.pause_reading()

    # ------------------------------------------------------------ answers

    def log_tag(self, origin: str | None) -> bytes:
        """The tag of this client's answer in the log, with where its request was
        first sent when it was re-dispatched."""
        if origin is None:
            return self.tag
        return self.tag + b"(re-dispatched from %b) " % origin.encode()

    def log_redispatched(self, origin: str) -> None:
        """Log the answer just queued, with where its request was first sent; the
        answers queued before it are logged first, so the log keeps their order."""
        log = self.balancer.log
        out = self.out
        if log.log_requests:
            if len(out) - 1 > self.logged:
                log.lines(self.tag, out[self.logged : -1])
            log.line(self.log_tag(origin), out[-1])
        self.logged = len(out)

    def _log_out(self) -> None:
        """Log the queued answers not logged yet: every answer is logged once, as it
        leaves (or is dropped), `stamp + tag` joined between them in one C call."""
        out = self.out
        if len(out) > self.logged and self.balancer.log.log_requests:
            self.balancer.log.lines(self.tag, out[self.logged :] if self.logged else out)
        self.logged = 0

    def flush(self) -> None:
        """Write queued answers in one call; finish an `exit` once nothing is pending."""
        out = self.out
        if out:
            self._log_out()
        transport = self.transport
        if transport is None or not self.alive:
            # The client has gone: its answers are dropped, and counted.
            self.balancer.discarded += len(out)
            out.clear()
            return
        if self.exiting and self.pending <= 0:
            if self.goodbye_id is not None:
                out.append(b'{"id":%b,"goodbye":true}\n' % json_id(self.goodbye_id))
            if out:
                transport.write(b"".join(out))
                out.clear()
            self.alive = False
            self.balancer.clients.discard(self)
            how = "said goodbye" if self.goodbye_id is not None else "closed its side"
            self.balancer.log.event(f"{self.name} {how} after {self.requests} requests")
            transport.close()
            return
        if out:
            transport.write(b"".join(out))
            out.clear()
        if self.paused_by_inflight and self.pending <= self.balancer.config.resume_inflight:
            self._maybe_resume()

"""The load generator's HTTP/1.1 keep-alive side, for the `haproxy-http` bench target.

The same pool, the same checks, the same latency samples as the line protocol
(`loadgen.LoadConnection`), but each request is a `POST /` and answers are
matched by their order on the connection (HTTP answers pipelined requests in
order), not by id: the id in an answer is the server's own count on HAProxy's
connection to it. Headers are found case-insensitively (HAProxy sends them in
lower case).
"""

from __future__ import annotations

import time

from app.bench.loadgen import POOL_SIZE, LoadConnection, LoadError, _PingConnection


def http_requests(lines: list[bytes]) -> list[bytes]:
    """Each request line (with its newline) as an HTTP/1.1 POST."""
    return [b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n%b"
            % (len(line) - 1, line[:-1]) for line in lines]


def split_responses(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole (status, body) responses at the start of `data`, and the rest."""
    out = []
    start = 0
    while True:
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            break
        head = data[start:end].lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise LoadError("an HTTP answer without Content-Length")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop > 0 else len(head)])
        if len(data) < end + 4 + length:
            break
        out.append((int(head[9:12]), data[end + 4 : end + 4 + length]))
        start = end + 4 + length
    return out, data[start:]


class HttpLoadConnection(LoadConnection):
    """One keep-alive connection of the generator; its run's blob holds HTTP requests."""

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.buffer:
            data = self.buffer + data
        try:
            responses, self.buffer = split_responses(data)
        except (LoadError, ValueError) as exc:
            self.lost = str(exc)
            if self.transport is not None:
                self.transport.close()
            return
        run = self.run
        expected, mask, base = run.expected, POOL_SIZE - 1, self.base
        shift = run.sample_shift
        smask = (1 << shift) - 1
        sent_at = self.sent_at
        k = self.answered
        for status, body in responses:
            k += 1
            if k > self.sent:  # an answer to nothing we sent
                self._bad(body)
                k -= 1
                continue
            self.seen[k] = 1
            if not k & smask:
                j = k >> shift
                sent_at[j] = now - sent_at[j]
            line = body.rstrip(b"\n")
            cut = line.find(b",", 6)
            if status == 200 and line.startswith(expected[(base + k) & mask], cut) \
                    and line[-1:] == b"}":
                continue
            if line.startswith(b',"error":', cut):
                self.errors += 1
            else:
                self._bad(line)
        fresh = k - self.answered
        if fresh:
            self.answered += fresh
            run.answered += fresh
            run.last_answer = now
            if self.answered >= self.quota:
                run.connection_done()
            else:
                self.send(fresh)


class HttpPingConnection(_PingConnection):
    """`_PingConnection` over HTTP keep-alive: one POST, one response, checked."""

    def __init__(self, address: tuple[str, int], stall: float, lines: list[bytes],
                 fields: list[bytes]) -> None:
        super().__init__(address, stall, http_requests(lines), fields)

    def run(self, count: int, latencies: list[float] | None) -> None:
        sock, requests, fields = self.sock, self.lines, self.fields
        clock = time.perf_counter
        mask = POOL_SIZE - 1
        for _ in range(count):
            k = self.sent + 1
            started = clock()
            try:
                sock.sendall(requests[k & mask])
                while True:
                    responses, rest = split_responses(self.buffer)
                    if responses:
                        break
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise LoadError(f"{self.address} closed the connection after "
                                        f"{self.sent} answers")
                    self.buffer += chunk
            except OSError as exc:  # TimeoutError included
                self.error = f"{self.address}: {exc.strerror or exc or 'timed out'}"
                raise LoadError(self.error) from None
            ended = clock()
            self.buffer = rest
            self.sent = k
            status, body = responses[0]
            line = body.rstrip(b"\n")
            cut = line.find(b",", 6)
            if status != 200 or not line.startswith(fields[k & mask], cut):
                if line.startswith(b',"error":', cut):
                    self.errors += 1
                else:
                    self.wrong += 1
                    if len(self.bad_lines) < 5:
                        self.bad_lines.append(line[:200].decode("utf-8", "replace"))
            if latencies is not None:
                latencies.append(ended - started)

"""`lbconsole client [HOST:PORT]`: the original terminal client, also scriptable from a pipe.

Reads commands line by line (`somma 3 4`, `3 * 4`, `random 50`, `exit`) and
prints each answer. Requests from a pipe are pipelined and their answers
printed in input order; `random N` runs a batch and ends with a summary line
(counts and latency percentiles). `random N work A-B` / `work exp:M` is parsed
by the console's own grammar and sends JSON requests carrying `work_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import deque

import orjson

from app.config import parse_address
from app.control.batch import make_batch
from app.control.grammar import Invalid, RunBatch, Work, parse_command
from app.engines.http_client import HttpClient, run_http_batch
from balancer import eventloop
from balancer.client import POOL_SIZE, Client, ClientError, run_batch
from balancer.protocol import describe

HELP = """requests:  somma 3 4 | sottrazione 9 2 | moltiplicazione 6 7 | divisione 10 4
           add/sub/mul/div, infix 3 * 4, no operands: the server draws them
           {"id": 7, "op": "somma", "a": 3, "b": 4}
commands:  random N   send N random requests pipelined, then a summary
           random N work A-B | work exp:M   each carries work_ms: uniform A-B ms,
                      or exponential with mean M ms
           ping       ask the balancer how many servers are UP
           exit       finish what is in flight and leave"""


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """Read stdin in a thread (works the same for a terminal and a pipe)."""
    try:
        for line in sys.stdin.buffer:
            loop.call_soon_threadsafe(queue.put_nowait, line)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)


class TerminalClient:
    def __init__(self, host: str, port: int, *, quiet: bool, raw: bool, window: int,
                 http: bool = False) -> None:
        self.host, self.port = host, port
        self.http = http
        """HTTP keep-alive (`--http`, for `--engine haproxy`) instead of the line protocol."""
        self.quiet, self.raw, self.window = quiet, raw, max(1, window)
        self.client: Client | HttpClient | None = None
        self.pending: deque[asyncio.Future[dict]] = deque()
        self.out = sys.stdout
        self.interactive = sys.stdin.isatty()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, answer: dict) -> None:
        self.out.write((orjson.dumps(answer).decode() if self.raw else describe(answer)) + "\n")

    def show_done(self) -> None:
        """Print finished answers in the order their requests were typed."""
        while self.pending and self.pending[0].done():
            future = self.pending.popleft()
            exc = future.exception()
            if exc is not None:
                raise exc if isinstance(exc, ClientError) else ClientError(str(exc))
            self.show(future.result())
        self.out.flush()

    async def settle(self) -> None:
        while self.pending:
            await asyncio.wait([self.pending[0]])
            self.show_done()

    def prompt(self) -> None:
        if self.interactive:
            self.out.write("> ")
            self.out.flush()

    async def run(self) -> int:
        try:
            self.client = await (HttpClient if self.http else Client).connect(self.host,
                                                                               self.port)
        except ClientError as exc:
            print(f"lbconsole client: {exc}", file=sys.stderr)
            return 1
        if self.interactive:
            self.say(f"connected to {self.host}:{self.port}. Type a request, 'random N', "
                     "'help' or 'exit'.")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        threading.Thread(target=_stdin_lines, args=(loop, queue), daemon=True).start()
        self.prompt()
        try:
            while True:
                raw = await queue.get()
                if raw is None:
                    await self.settle()
                    with contextlib.suppress(ClientError, asyncio.TimeoutError, TimeoutError):
                        await self.client.exit(timeout=10)
                    return 0
                if not await self.handle(raw.decode("utf-8", "replace").strip()):
                    return 0
                if self.interactive:
                    await self.settle()
                    self.prompt()
        except ClientError as exc:
            print(f"lbconsole client: {exc}", file=sys.stderr)
            return 1
        finally:
            await self.client.close()

    async def handle(self, line: str) -> bool:
        """One input line; False when the session is over."""
        assert self.client is not None
        if not line:
            return True
        words = line.split()
        command = words[0].lower()
        if command in ("exit", "quit") and len(words) == 1:
            await self.settle()
            answer = await self.client.exit()
            if answer is not None and self.interactive:
                self.say("goodbye")
            return False
        if command == "help" and len(words) == 1:
            self.say(HELP)
            return True
        if command == "random":
            await self.settle()
            batch = parse_command(line)
            if isinstance(batch, RunBatch):
                await self.batch(batch.count, batch.work)
            elif isinstance(batch, Invalid):
                self.say(batch.message)
            return True
        self.pending.append(self.client.send(line))
        if len(self.pending) >= self.window:
            await asyncio.wait([self.pending[0]])
        self.show_done()
        return True

    async def batch(self, count: int, work: Work | None = None) -> None:
        def print_chunk(chunk: bytes) -> None:
            if self.raw:
                self.out.write(chunk.decode("utf-8", "replace"))
                return
            lines = []
            for line in chunk.splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    lines.append(describe(orjson.loads(line)))
            self.out.write("\n".join(lines) + "\n")

        # With work: a pool of JSON requests without ids (answers carry line numbers).
        lines = None if work is None else make_batch(min(count, POOL_SIZE), work, seed=None,
                                                     ids=False)
        if self.http:
            progress = await run_http_batch(self.host, self.port, count, window=self.window,
                                            on_chunk=None if self.quiet else print_chunk)
        else:
            progress = await run_batch(self.host, self.port, count, window=self.window,
                                       on_chunk=None if self.quiet else print_chunk, lines=lines)
        self.out.flush()
        label = f"random {count}" + ("" if work is None else f" work {work.text()}")
        self.say(f"{label}: {progress.summary()}")


def client_main(address: str, *, quiet: bool = False, raw: bool = False,
                window: int = 1024, http: bool = False) -> int:
    try:
        host, port = parse_address(address)
    except Exception as exc:  # argparse.ArgumentTypeError and friends
        print(f"lbconsole client: {exc}", file=sys.stderr)
        return 2
    try:
        return eventloop.run(TerminalClient(host, port, quiet=quiet, raw=raw,
                                            window=window, http=http).run())
    except BrokenPipeError:
        return 0

"""HAProxy as a supervised child: started in the foreground (`-db`), stopped by pid.

The child gets the listening socket as an inherited fd, its own session (a
Ctrl-C in the terminal is ours to handle) and PR_SET_PDEATHSIG, so it dies
with us even if we are SIGKILLed. Its stdout (the raw request log and state
messages) is handed line by line to a callback; its stderr is kept for the
reason when it fails. `stop()` is SIGTERM, then SIGKILL, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable

PACKAGE = "haproxy"
"""The Debian/Ubuntu package that provides the binary."""

_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031
LOG_PIPE_BYTES = 1 << 20
"""HAProxy drops a log line rather than wait when its stdout pipe is full
(`DroppedLogs` in `show info`): a 1 MB pipe gives our reader slack."""


class HaproxyMissing(Exception):
    """No haproxy on PATH."""

    def __init__(self) -> None:
        super().__init__(f"haproxy not found on PATH: install it (apt-get install {PACKAGE}) "
                         "or use --engine builtin")


class HaproxyFailed(OSError):
    """HAProxy refused its configuration or exited during start-up (an OSError, as
    ApiError is)."""


def find_haproxy() -> str:
    """The haproxy binary, or HaproxyMissing."""
    path = shutil.which("haproxy")
    if path is None:
        raise HaproxyMissing
    return path


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM when we die.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class HaproxyProcess:
    """One `haproxy -db -f CONFIG` child."""

    def __init__(self, config_path: str, pass_fds: tuple[int, ...] = (),
                 on_line: Callable[[bytes], None] | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
        self.config_path = config_path
        self.pass_fds = pass_fds
        self.on_line = on_line
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.stderr: deque[str] = deque(maxlen=50)
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def check(self) -> None:
        """`haproxy -c`: HaproxyFailed with HAProxy's words if the file is refused."""
        binary = find_haproxy()
        proc = await asyncio.create_subprocess_exec(
            binary, "-c", "-q", "-f", self.config_path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise HaproxyFailed(f"haproxy refused the configuration: "
                                f"{out.decode('utf-8', 'replace').strip()[-500:]}")

    async def start(self) -> int:
        """Start the child; its pid. Raises HaproxyMissing or HaproxyFailed (OSError)."""
        binary = find_haproxy()
        self.stopping = False
        self.stderr.clear()
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, LOG_PIPE_BYTES)
        try:
            self.process = await asyncio.create_subprocess_exec(
                binary, "-db", "-f", self.config_path, stdin=asyncio.subprocess.DEVNULL,
                stdout=write_end, stderr=asyncio.subprocess.PIPE,
                pass_fds=self.pass_fds, start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            os.close(read_end)
            raise HaproxyFailed(f"cannot start haproxy: {exc.strerror or exc}") from None
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()
        stdout = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout),
                                     os.fdopen(read_end, "rb", buffering=0))
        self._tasks = [loop.create_task(self._read_stdout(self.process, stdout)),
                       loop.create_task(self._read_stderr(self.process))]
        return self.process.pid

    async def _read_stdout(self, process: asyncio.subprocess.Process,
                           stdout: asyncio.StreamReader) -> None:
        on_line = self.on_line
        rest = b""
        while True:
            chunk = await stdout.read(1 << 16)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if on_line is not None:
                for line in lines:
                    on_line(line + b"\n")
        code = await process.wait()
        if self.on_exit is not None and process is self.process:
            self.on_exit(code)

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            line = await process.stderr.readline()
            if not line:
                break
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def reason(self) -> str:
        """HAProxy's last alerts, to explain why it stopped."""
        alerts = [line for line in self.stderr if "ALERT" in line]
        return " | ".join((alerts or list(self.stderr))[-3:])

    async def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM by pid, SIGKILL after `timeout`; the exit code."""
        process = self.process
        if process is None:
            return None
        self.stopping = True
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 1.0)
        return process.returncode

    def soft_stop(self) -> None:
        """SIGUSR1: stop accepting, finish the requests in progress, then exit (the
        configuration's `hard-stop-after` bounds how long)."""
        self.stopping = True
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]

    def kill_now(self) -> None:
        """Last resort from a synchronous context: SIGKILL by pid."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                process.kill()

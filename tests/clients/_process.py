"""A child process driven line by line: the one piece of plumbing both client drivers share.

Why a thread per stream: the drivers are synchronous (pytest calls them directly), yet the
clients print asynchronously (presence changes, incoming messages). A reader thread appends
each output line to a list under a condition variable, and every wait is a bounded wait on
that condition, so no test can hang on a silent client.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ClientError", "ClientTimeout", "LineProcess", "require_binary"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PR_SET_PDEATHSIG = 1


class ClientError(RuntimeError):
    """The client misbehaved or is unusable (missing binary, exited early, refused a command)."""


class ClientTimeout(ClientError, TimeoutError):
    """A bounded wait ran out; the message says what was awaited and shows the recent output."""


def require_binary(name: str, hint: str) -> str:
    """Return the path of `name` or fail loudly: a missing client is a broken setup, not a skip."""
    path = shutil.which(name)
    if path is None:
        raise ClientError(f"{name!r} not found on PATH; install it: {hint}")
    return path


def _die_with_parent() -> None:
    # Linux only: the kernel SIGKILLs the client when the test process dies, so a crashed or
    # killed pytest run leaves no orphan clients holding ports.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LineProcess:
    """One child process; stdout (and stderr, merged or kept apart) collected as text lines."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        merge_stderr: bool = True,
        log_path: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = 0  # streams read to the end
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            cwd=cwd,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.pid = self._proc.pid
        self._readers = [threading.Thread(target=self._read, args=(self._proc.stdout, self.lines),
                                          daemon=True)]
        if not merge_stderr:
            self._readers.append(threading.Thread(
                target=self._read, args=(self._proc.stderr, self.stderr_lines), daemon=True))
        for t in self._readers:
            t.start()

    def _read(self, stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n")
            # a bare CR returns the carriage as on a terminal: keep what would be visible
            line = line.rsplit("\r", 1)[-1]
            if self._log is not None:
                with contextlib.suppress(ValueError):
                    self._log.write(line + "\n")
                    self._log.flush()
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ state
    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def finished(self) -> bool:
        """Exited and every line it printed has been read: nothing more can arrive."""
        with self._cond:
            return self._proc.poll() is not None and self._eof == len(self._readers)

    def mark(self) -> int:
        """Index of the next line to arrive: pass it to `wait_line` to ignore older output."""
        with self._cond:
            return len(self.lines)

    def tail(self, n: int = 25) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:] + self.stderr_lines[-n:])

    # ------------------------------------------------------------------ I/O
    def send_line(self, text: str) -> None:
        if "\n" in text or "\r" in text:
            raise ValueError("one command per line: text must not contain line breaks")
        if not self.alive():
            raise ClientError(f"{self.argv[0]} exited ({self.returncode}):\n{self.tail()}")
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(text.encode("utf-8") + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ClientError(f"{self.argv[0]} stdin closed: {exc}\n{self.tail()}") from exc

    def wait_until(self, check: Callable[[], object], timeout: float, what: str) -> object:
        """Re-evaluate `check` on every new line (and at least every 0.1 s) until it is truthy."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClientTimeout(
                        f"timed out after {timeout:g}s waiting for {what}; "
                        f"{self.argv[0]} output tail:\n{self.tail()}")
                self._cond.wait(min(left, 0.1))

    def wait_line(self, pattern: str | re.Pattern[str], *, start: int = 0,
                  timeout: float = 5.0) -> re.Match[str]:
        """First line at index >= `start` matching `pattern` (re.search)."""
        rx = re.compile(pattern)
        pos = start

        def check() -> re.Match[str] | None:
            nonlocal pos
            while pos < len(self.lines):
                m = rx.search(self.lines[pos])
                pos += 1
                if m:
                    return m
            if pos >= len(self.lines) and self.finished():
                raise ClientError(
                    f"{self.argv[0]} exited ({self.returncode}) while waiting for "
                    f"{rx.pattern!r}:\n{self.tail()}")
            return None

        return self.wait_until(check, timeout, repr(rx.pattern))  # type: ignore[return-value]

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, grace: float = 2.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds: only this child, by its own PID."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if self.wait_exit(grace) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(5)
        self.close_pipes()
        return self._proc.returncode

    def close_pipes(self) -> None:
        for stream in (self._proc.stdin,):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        for t in self._readers:
            t.join(2)
        if self._log is not None:
            self._log.close()
            self._log = None

"""A real ``bin/slee start`` process for end-to-end tests, as a context manager.

    with running_server("registrar", tmp_path) as server:
        ... talk SIP to (server.sip_host, server.sip_port) ...

It waits for the one ready line, reads the management URL and token, and stops the process
with SIGTERM (then SIGKILL if it hangs) — only the process it started.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


@dataclass
class ServerInfo:
    sip_host: str
    sip_port: int
    data_dir: Path
    mgmt_url: str
    token: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    @property
    def sip_address(self) -> tuple[str, int]:
        return (self.sip_host, self.sip_port)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for UDP and TCP")


@contextlib.contextmanager
def running_server(recipe: str, tmp_path: Path, *, sip_port: int = 0, extra_args: Sequence[str] = (),
                   data_dir: Path | None = None) -> Iterator[ServerInfo]:
    """Start a container applying ``recipe`` (none if empty); ``sip_port`` 0 picks a free port first."""
    port = sip_port or free_port()
    data = data_dir or (tmp_path / "data")
    cmd = [str(ROOT / "bin" / "slee"), "start", *(["--deploy", recipe] if recipe else []), "--sip-host", "127.0.0.1",
           "--sip-port", str(port), "--data", str(data), "--mgmt-port", "0", "--recipes", str(ROOT / "deploy"),
           "--log-level", "warning", *extra_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            if " ready (pid " in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(READY_TIMEOUT) or proc.poll() is not None:
            raise RuntimeError("slee did not start:\n" + "\n".join(output[-40:]))
        line = next(x for x in output if " ready (pid " in x)
        m = re.search(r"mgmt (http://\S+?)(,|$)", line)
        token_file = data / "mgmt.token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        info = ServerInfo("127.0.0.1", port, data, m.group(1) if m else "", token, proc, output)
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        reader.join(timeout=5)

"""SIP benchmark driver: SIPp workloads against our server and two references, one run.

Absolute numbers on a shared machine drift, so the figures that count are the ratios of
"ours" to a reference Kamailio and to a minimal asyncio responder measured in the same
invocation, workload by workload (targets are interleaved per workload so they see the
same machine). See docs/performance.md for how to read the output.

    bench/run [--workloads register,...] [--quick]        # ours, kamailio and pyudp, all auto
    .venv/bin/python bench/run.py --target ours=127.0.0.1:5060,pid=1234 \\
        --target kamailio=auto --target pyudp=auto

``auto`` starts the server on a free loopback port for each workload (fresh state) and
stops it afterwards: ``ours=auto`` is ``bin/slee start --workers N --deploy presence`` in a
temporary data dir (N from ``--ours-workers``, default 2 as the reference Kamailio's 2 UDP
workers). Without ``--target`` every available target is auto. Every SIPp run and every
wait is bounded; only processes this script started are ever signalled, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as _dt
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SIPP_DIR = BENCH / "sipp"
REFERENCE = BENCH / "reference"
REFERENCES = ("kamailio", "pyudp")
AUTO_TARGETS = ("ours", *REFERENCES)
WORKLOADS = ("register", "publish", "subscribe", "fanout", "memory")
RATE_WORKLOADS = ("register", "publish", "subscribe")
FULL_RATES = (250, 500, 1000, 2000, 4000, 8000, 16000, 32000)
MAX_FAILURE_RATIO = 0.001  # "< 0.1 % failures"
REFINE_STEPS = 2  # bisection steps after a failed rate step
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:{user}@bench.invalid">\r\n'
    '  <tuple id="t1"><status><basic>open</basic></status>\r\n'
    "    <note>{note}</note></tuple>\r\n"
    "</presence>\r\n"
)


@dataclasses.dataclass
class Settings:
    """Sizes and bounds of one invocation (``--quick`` shrinks them)."""

    rates: tuple[int, ...]
    step_seconds: float
    max_step_calls: int
    latency_rate: int
    latency_seconds: float
    fanout_watchers: int
    memory_entries: int
    memory_rate: int
    memory_settle_s: float = 6.0  # > Kamailio's tm wait timer (5 s)
    recv_timeout_ms: int = 2000


@dataclasses.dataclass
class Target:
    """A server under test: an external address, or a reference this script runs."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    pid: int | None = None
    auto: bool = False
    process: subprocess.Popen | None = None
    rundir: Path | None = None
    children: set[int] = dataclasses.field(default_factory=set)
    workers: int = 2  # ours=auto: bin/slee start --workers
    durability: str = "write"  # ours=auto: bin/slee start --durability (the server's default)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# ---------------------------------------------------------------- processes and memory


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """PIDs of every process below ``pid`` (Kamailio forks its workers and timers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """Summed RSS and PSS (KiB) of ``pid`` and its descendants.

    PSS divides shared pages among the processes that map them, so for Kamailio (shared
    memory touched by several workers) the PSS sum is the real footprint while the RSS sum
    counts shared pages once per process; for a single process the two move together.
    """
    totals = {"rss_kib": 0, "pss_kib": 0, "processes": 0}
    for each in {pid} | descendants(pid):
        try:
            text = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        totals["processes"] += 1
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                totals[f"{key.lower()}_kib"] += int(value.split()[0])
    return totals


def options(host: str, port: int, lport: int, tag: str, n: int) -> bytes:
    """An OPTIONS from 127.0.0.1:lport; ``tag`` names its branch and Call-ID."""
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{tag}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@bench.invalid>;tag=p\r\n"
        f"To: <sip:{host}>\r\nCall-ID: {tag}-{lport}\r\nCSeq: {n + 1} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def probe(host: str, port: int, deadline: float) -> bool:
    """True once anything answers an OPTIONS on host:port before ``deadline``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        lport = sock.getsockname()[1]
        for n in itertools.count():
            if time.monotonic() > deadline:
                return False
            sock.sendto(options(host, port, lport, f"probe{n}", n), (host, port))
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                if sock.recv(65535).startswith(b"SIP/2.0 "):
                    return True
            time.sleep(0.05)
    return False


def wait_responsive(host: str, port: int, deadline: float, *, within: float = 0.05) -> float | None:
    """Seconds until the server answers three OPTIONS in a row, each within ``within`` s
    (its backlog is worked off); None if it has not by ``deadline``."""
    began = time.monotonic()
    quick = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        lport = sock.getsockname()[1]
        for n in itertools.count():
            if time.monotonic() > deadline:
                return None
            sent = time.monotonic()
            sock.sendto(options(host, port, lport, f"settle{n}", n), (host, port))
            sock.settimeout(1.0)
            answered = False
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                while not answered:  # skip late answers to earlier probes
                    data = sock.recv(65535)
                    answered = f"branch=z9hG4bKsettle{n}".encode() in data
            quick = quick + 1 if answered and time.monotonic() - sent <= within else 0
            if quick >= 3:
                return round(time.monotonic() - began, 2)
            time.sleep(0.2)
    return None


def start_reference(target: Target, workdir: Path) -> None:
    """Start a fresh server for an auto ``target`` (ours, kamailio or pyudp) on a free port
    and wait until it answers."""
    target.port = free_udp_port()
    target.rundir = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=workdir))
    log = (target.rundir / "server.log").open("wb")
    if target.name == "ours":
        # As a user starts it (README), on its own data dir; the management API on any
        # free port so that several runs can share the machine.
        command = [
            sys.executable, "-m", "slee.cli", "start", "--workers", str(target.workers),
            "--durability", target.durability, "--deploy", "presence", "--sip-host", "127.0.0.1", "--sip-port", str(target.port),
            "--data", str(target.rundir / "data"), "--mgmt-port", "0",
        ]
    elif target.name == "kamailio":
        db = target.rundir / "db"
        shutil.copytree("/usr/share/kamailio/dbtext/kamailio", db)
        command = [
            shutil.which("kamailio") or "/usr/sbin/kamailio",
            "-DD",
            "-E",
            "-f",
            str(REFERENCE / "kamailio.cfg"),
            "-l",
            f"udp:127.0.0.1:{target.port}",
            "-n",
            "2",
            "-m",
            "512",
            "-M",
            "8",
            "-Y",
            str(target.rundir),
            "-A",
            f'SERVER_ADDRESS="sip:127.0.0.1:{target.port}"',
            "-A",
            f'DB_URL="text://{db}"',
        ]
    else:
        command = [sys.executable, str(REFERENCE / "pyudp.py"), "--port", str(target.port)]
    target.process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=ROOT if target.name == "ours" else None,
    )
    log.close()
    target.pid = target.process.pid
    if target.name == "ours":
        _wait_ready_line(target, time.monotonic() + 60)
    if not probe(target.host, target.port, time.monotonic() + 15):
        stop_reference(target)
        tail = (target.rundir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{target.name} did not answer on {target.address}:\n{tail}")
    time.sleep(0.5)  # let the workers settle before an idle memory sample
    target.children = descendants(target.pid)


def _wait_ready_line(target: Target, deadline: float) -> None:
    """``bin/slee start`` prints its ready line once every worker listens (a lone worker
    answering OPTIONS does not mean the others are up)."""
    assert target.rundir is not None and target.process is not None
    logfile = target.rundir / "server.log"
    while time.monotonic() < deadline:
        if " ready (pid " in logfile.read_text(errors="replace"):
            return
        if target.process.poll() is not None:
            break
        time.sleep(0.1)
    tail = logfile.read_text(errors="replace")[-2000:]
    stop_reference(target)
    raise RuntimeError(f"ours did not start on {target.address}:\n{tail}")


def stop_reference(target: Target) -> None:
    """SIGTERM the process we started, then SIGKILL it and any child it left behind."""
    if target.process is None:
        return
    target.children |= descendants(target.process.pid)
    target.process.terminate()
    try:
        target.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        target.process.kill()
        target.process.wait(timeout=10)
    for pid in target.children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    target.process = None
    target.children = set()
    if target.rundir is not None:
        shutil.rmtree(target.rundir, ignore_errors=True)


# ----------------------------------------------------------------------------- SIPp


def write_users(path: Path, prefix: str, count: int, pairs: bool) -> None:
    """A SIPp injection file of ``count`` unique users (watcher;presentity when ``pairs``)."""
    with path.open("w") as out:
        out.write("SEQUENTIAL\n")
        if pairs:
            out.writelines(f"{prefix}w{i};{prefix}p{i};\n" for i in range(count))
        else:
            out.writelines(f"{prefix}u{i};\n" for i in range(count))


def _epoch(stamp: str) -> float:
    return float(stamp.split("\t")[-1])


def run_sipp(
    target: Target,
    scenario: str,
    rate: int,
    calls: int,
    settings: Settings,
    workdir: Path,
    prefix: str,
    shortmsg: bool = False,
) -> dict[str, Any]:
    """One SIPp run of ``calls`` calls at ``rate``/s; the figures from its final stat row."""
    run = Path(tempfile.mkdtemp(prefix=f"{scenario}-{rate}-", dir=workdir))
    users = run / "users.csv"
    write_users(users, prefix, calls, pairs=scenario == "subscribe")
    stat = run / "stat.csv"
    budget = calls / rate + settings.recv_timeout_ms / 1000 + 5
    command = [
        shutil.which("sipp") or "sipp",
        target.address,
        "-sf",
        str(SIPP_DIR / f"{scenario}.xml"),
        "-inf",
        str(users),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-rp",
        "1000",
        "-l",
        str(max(200, rate * 2)),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-timeout",
        f"{budget:.0f}s",
        "-recv_timeout",
        str(settings.recv_timeout_ms),
        "-buff_size",
        str(8 << 20),
        "-max_recv_loops",
        "10000",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-nostdin",
    ]
    if shortmsg:
        command.append("-trace_shortmsg")
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command,
            cwd=run,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=budget + 30,
        )
        code, stderr = completed.returncode, completed.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        code, stderr = None, "sipp killed after its time budget"
    wall = time.monotonic() - started
    result: dict[str, Any] = {"rate": rate, "calls": calls, "sipp_exit": code}
    rows = [line.split(";") for line in stat.read_text().splitlines()] if stat.exists() else []
    if len(rows) < 2:
        result.update(
            created=0,
            successful=0,
            failed=calls,
            retransmissions=0,
            elapsed_s=wall,
            achieved_rate=0.0,
            error=stderr.strip()[-500:],
        )
    else:
        last = dict(zip(rows[0], rows[-1], strict=False))
        created = int(last["TotalCallCreated"])
        successful = int(last["SuccessfulCall(C)"])
        elapsed = _epoch(last["CurrentTime"]) - _epoch(last["StartTime"])
        result.update(
            created=created,
            successful=successful,
            # calls never created or still open at the end count as failed transactions
            failed=calls - successful,
            retransmissions=int(last["Retransmissions(C)"]),
            offered_rate=float(last["CallRate(C)"]),
            elapsed_s=round(elapsed, 3),
            achieved_rate=round(successful / elapsed, 1) if elapsed > 0 else 0.0,
        )
    if shortmsg:
        logs = list(run.glob("*_shortmessages.log"))
        result["latency_ms"] = latencies(logs[0], scenario) if logs else []
    shutil.rmtree(run, ignore_errors=True)
    return result


def latencies(path: Path, scenario: str, *, in_send_order: bool = False) -> list[float]:
    """Per-call latency (ms) from SIPp's µs-stamped short message trace, sorted (or in the
    order the requests were sent).

    SIPp's own response-time timers tick in whole milliseconds, too coarse for a server that
    answers in 0.3 ms, so the request->answer time is taken from -trace_shortmsg: REGISTER
    and PUBLISH to their 2xx, SUBSCRIBE to the initial NOTIFY.
    """
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    method = scenario.upper()
    with path.open(errors="replace") as lines:
        for line in lines:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 7:
                continue
            stamp, direction, call_id, cseq, first = fields[2], fields[3], *fields[4:7]
            if direction == "S" and first.startswith(method) and call_id not in sent:
                sent[call_id] = float(stamp)
            elif direction == "R" and call_id not in done:
                if method == "SUBSCRIBE":
                    answered = first.startswith("NOTIFY ")
                else:
                    answered = first.startswith("SIP/2.0 2") and method in cseq
                if answered:
                    done[call_id] = float(stamp)
    if in_send_order:
        return [(done[c] - sent[c]) * 1000 for c in sorted(sent, key=sent.__getitem__) if c in done]
    return sorted((done[c] - sent[c]) * 1000 for c in done if c in sent)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(fraction * len(values) + 0.5) - 1))
    return round(sorted(values)[index], 3)


def step_passed(step: dict[str, Any]) -> bool:
    """Fewer than 0.1 % of the step's transactions failed (or never started)."""
    return step["failed"] < MAX_FAILURE_RATIO * step["calls"] or step["failed"] == 0


def step_saturated(step: dict[str, Any]) -> bool:
    """Calls completed at under 90 % of the offered rate: the server (or SIPp) is at its limit."""
    return step["achieved_rate"] < 0.9 * step["rate"]


def _measure_step(
    target: Target, scenario: str, rate: int, settings: Settings, workdir: Path, prefix: str
) -> dict[str, Any]:
    calls = max(100, min(settings.max_step_calls, int(rate * settings.step_seconds)))
    step = run_sipp(target, scenario, rate, calls, settings, workdir, prefix)
    step["passed"] = step_passed(step)
    step["saturated"] = step_saturated(step)
    verdict = "" if step["passed"] else "  FAILED"
    if step["passed"] and step["saturated"]:
        verdict = "  saturated"
    log(
        f"  {target.name} {scenario} {rate}/s: {step['successful']}/{calls} ok, "
        f"{step['achieved_rate']}/s{verdict}"
    )
    return step


def rate_workload(
    target: Target,
    scenario: str,
    settings: Settings,
    workdir: Path,
    tag: str,
    settle: Callable[[], None],
    ready: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Latency at a low rate on a quiet server, then the max sustained rate over doubling
    steps refined by bisection.

    Latency comes first: after the rate steps an auto reference is restarted fresh but an
    external server is still working off what they left (an overloaded SUBSCRIBE step
    leaves thousands of NOTIFYs retransmitted to watchers that are gone, for Timer F = 32 s),
    so a latency run after them measured the aftermath on one target and not on the other.
    ``ready`` runs before it (an external server: wait until it answers promptly).

    The max is the highest completion rate of a step with < 0.1 % failed transactions;
    stepping stops at the first failed step or at the first saturated one (no failures but
    under 90 % of the offered rate). After a failure, up to ``REFINE_STEPS`` bisection steps
    between the best passing rate and the lowest failing one.

    ``settle`` runs after a failed step, before the next measurement: it restarts an auto
    reference and waits a few seconds for an external server to drain its backlog.
    """
    ready()
    calls = max(50, int(settings.latency_rate * settings.latency_seconds))
    probe_run = run_sipp(
        target,
        scenario,
        settings.latency_rate,
        calls,
        settings,
        workdir,
        f"{tag}lat",
        shortmsg=True,
    )
    values = probe_run.pop("latency_ms")
    latency = {
        **probe_run,
        "measured": len(values),
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "max_ms": round(max(values), 3) if values else None,
    }
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    first_fail: int | None = None
    for n, rate in enumerate(settings.rates):
        step = _measure_step(target, scenario, rate, settings, workdir, f"{tag}s{n}")
        steps.append(step)
        if not step["passed"]:
            first_fail = rate
            break
        if best is None or step["achieved_rate"] > best["achieved_rate"]:
            best = step
        if step["saturated"]:
            break  # no failures, but as fast as it goes: the next step would only fail
    if first_fail is not None:
        settle()  # the failed step left a backlog (and retransmissions) behind
    low, high = (best["rate"] if best else 0), first_fail
    for n in range(REFINE_STEPS):
        if best is None or high is None or high <= low * 1.15:
            break
        rate = (low + high) // 2
        step = _measure_step(target, scenario, rate, settings, workdir, f"{tag}mid{n}")
        steps.append(step)
        if step["passed"]:
            low = rate
            if step["achieved_rate"] > best["achieved_rate"]:
                best = step
            if step["saturated"]:
                break
        else:
            high = rate
            settle()
    return {
        "max_rate": round(best["achieved_rate"], 1) if best else 0.0,
        "max_rate_step": best["rate"] if best else None,
        "steps": steps,
        "latency": latency,
        "failed": sum(s["failed"] for s in steps if s["passed"]) + latency["failed"],
    }


# ---------------------------------------------------------------- fan-out UA pool


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in headers if n == name), "")


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "o": "event"}


class WatcherPool(asyncio.DatagramProtocol):
    """Many watchers behind one UDP socket: subscribe, answer NOTIFYs, time their arrival."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.responses: dict[tuple[str, str], asyncio.Future] = {}
        self.notifies: dict[str, list[tuple[float, int, str]]] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self.marker = ""
        self.marked: dict[str, float] = {}
        self.all_marked = asyncio.Event()
        self.expected = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.perf_counter()
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
        call_id = _header(headers, "call-id")
        number, _, method = _header(headers, "cseq").partition(" ")
        if lines[0].startswith("SIP/2.0 "):
            future = self.responses.get((call_id, method.strip()))
            if future is not None and not future.done():
                status = int(lines[0].split()[1])
                if status >= 200:
                    future.set_result(status)
            return
        echo = "".join(
            f"{n.title() if n != 'call-id' else 'Call-ID'}: {v}\r\n"
            for n, v in headers
            if n in ("via", "from", "to", "call-id")
        )
        self.transport.sendto(
            f"SIP/2.0 200 OK\r\n{echo}CSeq: {number} {method}\r\nContent-Length: 0\r\n\r\n".encode(),
            addr,
        )
        if not lines[0].startswith("NOTIFY"):
            return
        seen = self.notifies.setdefault(call_id, [])
        if any(cseq == int(number) for _, cseq, _ in seen):
            return  # a retransmission
        seen.append((now, int(number), body))
        if call_id in self.arrived:
            self.arrived[call_id].set()
        if self.marker and self.marker in body and call_id not in self.marked:
            self.marked[call_id] = now
            if len(self.marked) >= self.expected:
                self.all_marked.set()

    async def request(
        self, target: Target, message: str, call_id: str, method: str, deadline: float
    ) -> int | None:
        """Send with RFC 3261 §17.1.2.2 style retransmission until a final response."""
        future = asyncio.get_running_loop().create_future()
        self.responses[(call_id, method)] = future
        interval = 0.5
        try:
            while time.monotonic() < deadline:
                self.transport.sendto(message.encode(), (target.host, target.port))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), interval)
                interval = min(interval * 2, 4.0)
            return None
        finally:
            self.responses.pop((call_id, method), None)


def _request(
    method: str,
    pool: WatcherPool,
    user: str,
    presentity: str,
    call_id: str,
    extra: str = "",
    body: str = "",
) -> str:
    return (
        f"{method} sip:{presentity}@bench.invalid SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{pool.port};rport;branch=z9hG4bK{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@bench.invalid>;tag=f{call_id}\r\n"
        f"To: <sip:{presentity}@bench.invalid>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{pool.port}>\r\n"
        f"Event: presence\r\nExpires: 3600\r\n{extra}"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )


async def fanout(target: Target, watchers: int, tag: str, timeout: float = 20.0) -> dict:
    """``watchers`` SUBSCRIBEs to one presentity, then one PUBLISH: time to the last NOTIFY."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    transport, pool = await loop.create_datagram_endpoint(WatcherPool, sock=sock)
    presentity = f"{tag}pres"
    window = asyncio.Semaphore(100)
    deadline = time.monotonic() + timeout

    async def subscribe(i: int) -> bool:
        call_id = f"{tag}w{i}"
        pool.arrived[call_id] = asyncio.Event()
        async with window:
            message = _request(
                "SUBSCRIBE",
                pool,
                f"{tag}w{i}",
                presentity,
                call_id,
                "Accept: application/pidf+xml\r\n",
            )
            status = await pool.request(target, message, call_id, "SUBSCRIBE", deadline)
            if status is None or status >= 300:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    pool.arrived[call_id].wait(), max(0.1, deadline - time.monotonic())
                )
            return bool(pool.notifies.get(call_id))

    started = time.perf_counter()
    try:
        subscribed = sum(await asyncio.gather(*(subscribe(i) for i in range(watchers))))
        subscribe_s = time.perf_counter() - started
        pool.marker = f"fanout-{tag}"
        pool.expected = subscribed
        body = PIDF.format(user=presentity, note=pool.marker)
        message = _request(
            "PUBLISH",
            pool,
            presentity,
            presentity,
            f"{tag}pub",
            "Content-Type: application/pidf+xml\r\n",
            body,
        )
        sent = time.perf_counter()
        publish_task = asyncio.ensure_future(
            pool.request(target, message, f"{tag}pub", "PUBLISH", time.monotonic() + 10)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.all_marked.wait(), 10.0 if subscribed else 0.1)
        status = await publish_task
        arrivals = sorted((t - sent) * 1000 for t in pool.marked.values())
    finally:
        transport.close()
    return {
        "watchers": watchers,
        "subscribed": subscribed,
        "subscribe_phase_s": round(subscribe_s, 3),
        "publish_status": status,
        "notified": len(arrivals),
        "time_to_first_notify_ms": round(arrivals[0], 3) if arrivals else None,
        "time_to_median_notify_ms": round(statistics.median(arrivals), 3) if arrivals else None,
        "time_to_last_notify_ms": round(arrivals[-1], 3) if arrivals else None,
        "failed": watchers - len(arrivals) + (0 if status and status < 300 else 1),
    }


# --------------------------------------------------------------------------- memory


def memory_workload(target: Target, settings: Settings, workdir: Path, tag: str) -> dict:
    """RSS/PSS idle, after N registrations, after N more subscriptions (bytes per entry)."""
    if target.pid is None:
        return {"skipped": "no pid: pass --target NAME=HOST:PORT,pid=N"}
    time.sleep(0.5)
    idle = memory_kib(target.pid)
    entries, rate = settings.memory_entries, settings.memory_rate
    reg = run_sipp(target, "register", rate, entries, settings, workdir, f"{tag}r")
    time.sleep(settings.memory_settle_s)
    after_reg = memory_kib(target.pid)
    sub = run_sipp(target, "subscribe", rate, entries, settings, workdir, f"{tag}s")
    time.sleep(settings.memory_settle_s)
    after_sub = memory_kib(target.pid)

    def per_entry(before: dict, after: dict, count: int, key: str) -> float | None:
        return round((after[key] - before[key]) * 1024 / count, 1) if count else None

    return {
        "entries": entries,
        "rate": rate,
        "processes": idle["processes"],
        "idle": idle,
        "registrations": after_reg,
        "subscriptions": after_sub,
        "registered": reg["successful"],
        "subscribed": sub["successful"],
        "per_registration_bytes": per_entry(idle, after_reg, reg["successful"], "pss_kib"),
        "per_subscription_bytes": per_entry(after_reg, after_sub, sub["successful"], "pss_kib"),
        "per_registration_rss_bytes": per_entry(idle, after_reg, reg["successful"], "rss_kib"),
        "per_subscription_rss_bytes": per_entry(after_reg, after_sub, sub["successful"], "rss_kib"),
        "failed": reg["failed"] + sub["failed"],
    }


# ---------------------------------------------------------------------------- report

FIGURES = (
    ("register.max_rate", "REGISTER max sustained /s", True),
    ("register.latency.p50_ms", "REGISTER p50 ms @latency rate", False),
    ("register.latency.p99_ms", "REGISTER p99 ms @latency rate", False),
    ("publish.max_rate", "PUBLISH max sustained /s", True),
    ("publish.latency.p50_ms", "PUBLISH p50 ms", False),
    ("publish.latency.p99_ms", "PUBLISH p99 ms", False),
    ("subscribe.max_rate", "SUBSCRIBE+NOTIFY max /s", True),
    ("subscribe.latency.p50_ms", "SUBSCRIBE->NOTIFY p50 ms", False),
    ("subscribe.latency.p99_ms", "SUBSCRIBE->NOTIFY p99 ms", False),
    ("fanout.time_to_last_notify_ms", "fan-out: last NOTIFY ms", False),
    ("fanout.notified", "fan-out: NOTIFYs delivered", True),
    ("memory.idle.pss_kib", "memory idle KiB (PSS)", False),
    ("memory.per_registration_bytes", "memory B / registration", False),
    ("memory.per_subscription_bytes", "memory B / subscription", False),
    ("memory.failed", "memory fill: failed REGISTER+SUBSCRIBE", False),
)


def lookup(results: dict, key: str) -> Any:
    value: Any = results
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def ratios(report: dict) -> dict[str, dict[str, dict[str, float | None]]]:
    """Every figure of each non-reference target divided by the same figure of each reference.

    Higher is better for rates and delivered counts, lower is better for times and memory.
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    targets = report["targets"]
    for name, subject in targets.items():
        if name in REFERENCES:
            continue
        for ref in REFERENCES:
            if ref not in targets:
                continue
            row = {}
            for key, _, _ in FIGURES:
                mine, theirs = lookup(subject["results"], key), lookup(targets[ref]["results"], key)
                ok = isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs
                row[key] = round(mine / theirs, 3) if ok else None
            out.setdefault(name, {})[ref] = row
    return out


def table(report: dict) -> str:
    names = list(report["targets"])
    ratio_columns = [(s, r) for s, refs in report["ratios"].items() for r in refs]
    header = ["figure", *names, *(f"{s}/{r}" for s, r in ratio_columns)]
    rows = [header]
    for key, label, _ in FIGURES:
        cells = [label]
        for name in names:
            value = lookup(report["targets"][name]["results"], key)
            cells.append("-" if value is None else f"{value:g}")
        for s, r in ratio_columns:
            value = report["ratios"][s][r][key]
            cells.append("-" if value is None else f"{value:.3f}")
        if any(c != "-" for c in cells[1:]):
            rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def version(command: list[str]) -> str | None:
        try:
            out = subprocess.run(command, capture_output=True, timeout=10, text=True)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (out.stdout + out.stderr).strip()
        return next((line.strip() for line in text.splitlines() if line.strip()), None)

    loop = "asyncio"
    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found]  # noqa: F401

        loop = "uvloop"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyudp_loop": loop,
        "sipp": version(["sipp", "-v"]),
        "kamailio": version(["kamailio", "-v"]),
        "loadavg_start": list(os.getloadavg()),
    }


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ main


def parse_target(text: str) -> Target:
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"--target wants NAME=HOST:PORT[,pid=N] or NAME=auto: {text}"
        )
    if spec == "auto":
        if name not in AUTO_TARGETS:
            raise argparse.ArgumentTypeError(f"only {AUTO_TARGETS} can be auto, not {name!r}")
        return Target(name=name, auto=True)
    address, *options = spec.split(",")
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"--target wants NAME=HOST:PORT[,pid=N] or NAME=auto, not {text!r}")
    target = Target(name=name, host=host or "127.0.0.1", port=int(port))
    for option in options:
        key, _, value = option.partition("=")
        if key != "pid":
            raise argparse.ArgumentTypeError(f"unknown target option {key!r}")
        target.pid = int(value)
    return target


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        rates=tuple(args.rates) if args.rates else FULL_RATES,
        step_seconds=args.step_seconds or (1.0 if quick else 4.0),
        max_step_calls=20_000 if quick else 128_000,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds or (1.0 if quick else 4.0),
        fanout_watchers=args.fanout_watchers or (200 if quick else 1000),
        memory_entries=args.memory_entries or (1000 if quick else 10_000),
        memory_rate=args.memory_rate,
        memory_settle_s=1.0 if quick else 6.0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        action="append",
        type=parse_target,
        help="NAME=HOST:PORT[,pid=N], or ours=auto, kamailio=auto, pyudp=auto "
        "(default: all three auto; kamailio only if installed)",
    )
    parser.add_argument("--ours-workers", type=_positive, default=Target.workers, metavar="N",
                        help="ours=auto: bin/slee start --workers N (default 2)")
    parser.add_argument("--ours-durability", choices=["write", "fsync"], default=Target.durability,
                        help="ours=auto: bin/slee start --durability (default write, the server's default)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="short steps: a smoke run")
    parser.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")])
    parser.add_argument("--step-seconds", type=float)
    parser.add_argument("--latency-rate", type=int, default=500)
    parser.add_argument("--latency-seconds", type=float)
    parser.add_argument("--fanout-watchers", type=int)
    parser.add_argument("--memory-entries", type=int)
    parser.add_argument("--memory-rate", type=int, default=500)
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/)")
    args = parser.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    if shutil.which("sipp") is None:
        parser.error("sipp not found: apt-get install sip-tester (or run bench/run, which installs it)")
    if not args.target:
        args.target = [Target(name="ours", auto=True)]
        if shutil.which("kamailio") or os.path.exists("/usr/sbin/kamailio"):
            args.target.append(Target(name="kamailio", auto=True))
        else:
            log("kamailio not found: measuring without it (apt-get install kamailio kamailio-presence-modules)")
        args.target.append(Target(name="pyudp", auto=True))
    for target in args.target:
        if target.name == "ours":
            target.workers = args.ours_workers
            target.durability = args.ours_durability
    names = [t.name for t in args.target]
    if len(set(names)) != len(names):
        parser.error("target names must be unique")
    # memory first: an external server is only idle before the other workloads fill it
    workloads.sort(key=lambda w: (w != "memory", WORKLOADS.index(w)))
    settings = settings_from(args)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_tag = f"b{int(time.time()) % 100000:05d}{os.getpid() % 1000:03d}"
    report: dict[str, Any] = {
        "schema": 1,
        "started": stamp,
        "command": [sys.argv[0], *(argv if argv is not None else sys.argv[1:])],
        "quick": args.quick,
        "settings": dataclasses.asdict(settings),
        "machine": machine(),
        "workloads": workloads,
        "targets": {
            t.name: {"address": None if t.auto else t.address, "auto": t.auto, "results": {},
                     **({"workers": t.workers, "durability": t.durability} if t.name == "ours" and t.auto else {})}
            for t in args.target
        },
    }
    with tempfile.TemporaryDirectory(prefix="slee-bench-") as tmp:
        workdir = Path(tmp)
        for workload in workloads:
            for target in args.target:
                tag = f"{run_tag}{target.name[:3]}{workload[:3]}"
                log(f"{workload} on {target.name}")
                entry = report["targets"][target.name]
                began = time.monotonic()
                server_pid = target.pid
                try:
                    if target.auto:
                        start_reference(target, workdir)
                        entry["address"] = "auto"
                        server_pid = target.pid
                    if workload in RATE_WORKLOADS:

                        def settle(target: Target = target) -> None:
                            if target.auto:
                                stop_reference(target)
                                start_reference(target, workdir)
                                return
                            # An external server cannot be restarted: wait until it has
                            # worked off the failed step (its clients' retransmissions
                            # and its own, up to Timer F = 32 s), as a fresh one would be.
                            time.sleep(5)
                            waited = wait_responsive(target.host, target.port, time.monotonic() + 40)
                            log(f"  {target.name} settled after {5 + (waited or 40):.1f} s"
                                + ("" if waited is not None else " (still slow)"))

                        def ready(target: Target = target) -> None:
                            if target.auto:
                                return  # started fresh for this workload
                            # Quiet: earlier workloads' backlog worked off (10 ms answers).
                            waited = wait_responsive(target.host, target.port, time.monotonic() + 60,
                                                     within=0.01)
                            if waited is None or waited > 1:
                                log(f"  {target.name} quiet after {waited or 60:.1f} s"
                                    + ("" if waited is not None else " (still slow)"))

                        result = rate_workload(target, workload, settings, workdir, tag, settle, ready)
                    elif workload == "fanout":
                        result = asyncio.run(fanout(target, settings.fanout_watchers, tag))
                    else:
                        result = memory_workload(target, settings, workdir, tag)
                except Exception as exc:  # a broken target must not lose the other results
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"  {target.name} {workload}: {result['error']}")
                finally:
                    if target.auto:
                        stop_reference(target)
                        target.pid = None
                result["server_pid"] = server_pid
                result["seconds"] = round(time.monotonic() - began, 2)
                result["loadavg"] = list(os.getloadavg())
                entry["results"][workload] = result
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["ratios"] = ratios(report)
    output = args.output or BENCH / "results" / f"{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    m = report["machine"]
    print(
        f"\n{m['nproc']} x {m['cpu_model']}; load average {m['loadavg_start'][0]:.2f} -> "
        f"{m['loadavg_end'][0]:.2f}; JSON: {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End to end: the real CLI (``python -m slee.cli``) against a real container process.

Every test starts its own container with a temp ``--data`` dir and ephemeral ports, bounds
every wait, and stops only the processes it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
V1 = "example-counter/slee.examples/1.0"
V2 = "example-counter/slee.examples/2.0"


def cli(data: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slee.cli", "--data", str(data), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def cli_json(data: Path, *args: str) -> object:
    done = cli(data, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Container:
    """One ``slee start`` process; ``ready`` is its one ready line."""

    def __init__(self, data: Path, *extra: str) -> None:
        self.data = data
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slee.cli", "start", "--data", str(data), "--mgmt-port", "0",
             "--recipes", str(ROOT / "deploy"), "--log-level", "warning", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.stderr: list[str] = []
        got = threading.Event()

        def read_out() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                got.set()
            got.set()

        def read_err() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line.rstrip("\n"))

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        if not got.wait(30) or not self.lines:
            self.kill()
            raise AssertionError(f"the container did not get ready: {self.stderr[-20:]}")
        self.ready = self.lines[0]

    @property
    def mgmt(self) -> dict:
        return json.loads((self.data / "mgmt.json").read_text())

    def wait_exit(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def started(data: Path) -> Iterator[Container]:
    c = Container(data)
    try:
        yield c
    finally:
        c.kill()


def datagram_port(data: Path) -> int:
    entities = cli_json(data, "ra", "list")
    listen = next(e for e in entities if e["name"] == "datagram")["stats"]["listen"]
    return int(listen.rsplit(":", 1)[1])


def service_states(data: Path) -> dict[str, str]:
    return {s["id"]: s["state"] for s in cli_json(data, "services")}


# ==========================================================================================
# load generator
# ==========================================================================================
@dataclass
class Session:
    name: str
    sock: socket.socket
    versions: list[str] = field(default_factory=list)
    started_at: float = 0.0


class Load:
    """Request/response over UDP: every datagram must be answered (counted on both sides)."""

    def __init__(self, port: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.sent = 0
        self.answered = 0
        self.failed: list[str] = []
        self.sessions: list[Session] = []

    def open(self, name: str) -> Session:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5.0)
        session = Session(name, s, started_at=time.monotonic())
        self.sessions.append(session)
        return session

    def ask(self, session: Session, text: str) -> str | None:
        session.sock.sendto(text.encode(), self.addr)
        self.sent += 1
        try:
            reply = session.sock.recv(2048).decode()
        except TimeoutError:
            self.failed.append(f"{session.name}: no answer to {text!r}")
            return None
        self.answered += 1
        version, _count, echoed = reply.split(" ", 2)
        if echoed != text:
            self.failed.append(f"{session.name}: answer {reply!r} to {text!r}")
        session.versions.append(version)
        return version

    def close(self) -> None:
        for s in self.sessions:
            s.sock.close()


def test_deploy_upgrade_under_load_and_restart(started: Container, data: Path):
    assert "mgmt http://127.0.0.1:" in started.ready
    deployed = cli(data, "deploy", "example")
    assert deployed.returncode == 0, deployed.stderr
    assert "installed unit " + V1 in deployed.stdout and "activated service " + V1 in deployed.stdout
    again = cli(data, "deploy", "example")
    assert again.returncode == 0 and "already deployed; nothing changed" in again.stdout
    status = cli(data, "status")
    assert status.returncode == 0
    assert any(V1 in line and "ACTIVE" in line for line in status.stdout.splitlines())
    assert "(durability write)" in status.stdout  # the default: acknowledged once in the WAL

    load = Load(datagram_port(data))
    long_lived = [load.open(f"long-{i}") for i in range(6)]
    for s in long_lived:
        assert load.ask(s, f"{s.name} hello") == "v1"

    stop = threading.Event()
    upgraded_at: list[float] = []
    short_sessions: list[Session] = []

    def generate() -> None:
        i = 0
        while not stop.is_set():
            s = long_lived[i % len(long_lived)]
            load.ask(s, f"{s.name} {i}")
            if i % 15 == 0:
                short = load.open(f"short-{i}")
                short_sessions.append(short)
                load.ask(short, f"{short.name} a")
                load.ask(short, f"{short.name} bye")
            i += 1
            time.sleep(0.001)

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while load.answered < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        upgrade = cli(data, "upgrade", "example-counter", str(ROOT / "services/example-counter-v2"))
        upgraded_at.append(time.monotonic())
        assert upgrade.returncode == 0, upgrade.stderr
        assert f"{V2} is ACTIVE" in upgrade.stdout and "STOPPING" in upgrade.stdout
        at_upgrade = load.answered
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                load.answered < at_upgrade + 200
                or sum(1 for s in short_sessions if s.started_at > upgraded_at[0]) < 5):
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()

    # v1 is draining: its flows still answer, from v1
    assert service_states(data) == {V1: "STOPPING", V2: "ACTIVE"}
    refused = cli(data, "uninstall", V1)
    assert refused.returncode == 1 and "STOPPING" in refused.stderr
    for s in long_lived:
        assert load.ask(s, f"{s.name} bye") == "v1"
    load.close()

    # zero failed events, counted on both sides
    assert load.failed == []
    assert load.answered == load.sent
    ra = next(e for e in cli_json(data, "ra", "list") if e["name"] == "datagram")["stats"]
    assert ra["received"] == load.sent
    assert ra["sent"] == load.sent
    assert ra["failed_events"] == 0 and ra["dropped"] == 0
    assert cli_json(data, "status")["failed"] == 0
    # old entities finished on v1, new ones were created on v2
    for s in long_lived:
        assert set(s.versions) == {"v1"}, s.name
    after = [s for s in short_sessions if s.started_at > upgraded_at[0]]
    assert len(after) >= 5 and all(set(s.versions) == {"v2"} for s in after)
    assert all(len(set(s.versions)) == 1 for s in short_sessions)

    deadline = time.monotonic() + 15
    while service_states(data)[V1] != "INACTIVE" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service_states(data) == {V1: "INACTIVE", V2: "ACTIVE"}
    removed = cli(data, "uninstall", V1)
    assert removed.returncode == 0, removed.stderr
    refused = cli(data, "uninstall", "example-counter")
    assert refused.returncode == 1 and "is ACTIVE" in refused.stderr

    # a restart keeps what was deployed
    stopped = cli(data, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert started.wait_exit() == 0
    assert not (data / "mgmt.json").exists()
    again = Container(data)
    try:
        assert service_states(data) == {V2: "ACTIVE"}
        assert [u["id"] for u in cli_json(data, "units")] == [V2]
        load = Load(datagram_port(data))
        s = load.open("after-restart")
        assert load.ask(s, "after-restart hi") == "v2"
        load.close()
        redeploy = cli(data, "deploy", "example")
        assert redeploy.returncode == 0 and "already deployed; nothing changed" in redeploy.stdout
        assert service_states(data) == {V2: "ACTIVE"}
    finally:
        again.kill()


def _line(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_broken_units_are_refused_with_file_and_line(started: Container, data: Path, tmp_path: Path):
    assert cli(data, "deploy", "example").returncode == 0
    before = cli_json(data, "services")
    port = datagram_port(data)

    def broken(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(ROOT / "services/example-counter", folder, ignore=shutil.ignore_patterns("__pycache__"))
        manifest = folder / "deployable-unit.yaml"
        manifest.write_text(manifest.read_text().replace('version: "1.0"', 'version: "9.0"'))
        return folder

    cases = []
    f = broken("signature")
    code = f / "counter.py"
    code.write_text(code.read_text().replace("def on_datagram(self, event: DatagramReceived, aci)",
                                             "def on_datagram(self, event: DatagramReceived)"))
    cases.append((f, f"{code}:{_line(code, '@event_handler(DATAGRAM_RECEIVED)')}", "must take (self, event, aci)"))
    f = broken("yaml")
    manifest = f / "deployable-unit.yaml"
    manifest.write_text(manifest.read_text().replace("  - name: example-counter", "  - name: [example-counter"))
    cases.append((f, f"{manifest}:", "YAML syntax error"))
    f = broken("event")
    code = f / "counter.py"
    code.write_text(code.read_text().replace("@event_handler(DATAGRAM_RECEIVED)",
                                             "@event_handler(EventTypeId('no.Such', 'x', '1'))").replace(
        "from slee import CmpField", "from slee import EventTypeId, CmpField"))
    cases.append((f, f"{code}:{_line(code, 'no.Such')}", "not installed"))
    f = broken("class")
    manifest = f / "deployable-unit.yaml"
    manifest.write_text(manifest.read_text().replace("counter:CounterSbb", "counter:Missing"))
    cases.append((f, f"{manifest}:{_line(manifest, 'counter:Missing')}", "has no class 'Missing'"))
    f = broken("link")
    manifest = f / "deployable-unit.yaml"
    manifest.write_text(manifest.read_text().replace("datagram: datagram", "datagram: nowhere"))
    cases.append((f, f"{manifest}:{_line(manifest, 'datagram: nowhere')}", "'nowhere', which does not exist"))
    f = broken("dependency")
    manifest = f / "deployable-unit.yaml"
    manifest.write_text(manifest.read_text().replace("depends-on:\n", "depends-on:\n  units: [base/x/1.0]\n"))
    cases.append((f, f"{manifest}:{_line(manifest, 'base/x/1.0')}", "which is not installed"))
    clash = ROOT / "services/example-counter"
    cases.append((clash, f"{clash / 'deployable-unit.yaml'}:{_line(clash / 'deployable-unit.yaml', 'version:')}",
                  "version clash"))

    for folder, where, reason in cases:
        done = cli(data, "install", str(folder))
        assert done.returncode == 1, (folder, done.stdout)
        assert f"slee: {where}" in done.stderr, (where, done.stderr)
        assert reason in done.stderr, (reason, done.stderr)
    assert cli_json(data, "services") == before
    load = Load(port)
    s = load.open("still-served")
    assert load.ask(s, "still-served hi") == "v1"
    load.close()
    assert load.failed == []


def test_calls_without_the_token_are_refused(started: Container, data: Path):
    mgmt = started.mgmt
    url = f"http://{mgmt['host']}:{mgmt['port']}/v1/status"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert info.value.code == 401
    token = (data / "mgmt.token").read_text().strip()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                timeout=10) as ok:
        assert ok.status == 200 and json.load(ok)["pid"] == started.proc.pid
    assert (data / "mgmt.token").stat().st_mode & 0o777 == 0o600
    stop = urllib.request.Request(url.replace("status", "stop"), data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(stop, timeout=10)
    assert info.value.code == 401 and started.proc.poll() is None


def _non_loopback_ip() -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        ip = s.getsockname()[0]
        if not ip.startswith("127.") and ip != "0.0.0.0":
            return ip
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            if not info[4][0].startswith("127."):
                return info[4][0]
    return None


def test_management_port_is_loopback_only(started: Container, data: Path, tmp_path: Path):
    mgmt = started.mgmt
    assert mgmt["host"] == "127.0.0.1"
    ip = _non_loopback_ip()
    if ip is not None:
        with pytest.raises(OSError), socket.create_connection((ip, mgmt["port"]), timeout=3):
            pass
    listeners = Path("/proc/net/tcp").read_text().splitlines()[1:] if Path("/proc/net/tcp").exists() else []
    port_hex = f"{mgmt['port']:04X}"
    bound = [line.split()[1] for line in listeners if line.split()[1].endswith(":" + port_hex)
             and line.split()[3] == "0A"]
    if listeners:
        assert bound == ["0100007F:" + port_hex]  # 127.0.0.1, nothing else
    other = tmp_path / "other"
    for host in ("0.0.0.0", "::", *([ip] if ip else [])):
        done = subprocess.run([sys.executable, "-m", "slee.cli", "start", "--data", str(other), "--mgmt-host", host,
                               "--mgmt-port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "loopback only" in done.stderr, done.stderr
        assert not (other / "mgmt.json").exists()


def test_cli_errors_are_clear(tmp_path: Path, data: Path):
    done = cli(tmp_path / "nothing", "status")
    assert done.returncode == 3
    assert f"no container running in {tmp_path / 'nothing'} — start one with bin/slee start" in done.stderr
    c = Container(data)
    try:
        second = subprocess.run([sys.executable, "-m", "slee.cli", "start", "--data", str(data), "--mgmt-port", "0"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already runs with data dir" in second.stderr
        assert (data / "mgmt.json").exists() and cli(data, "status").returncode == 0
        unknown = cli(data, "deploy", "no-such-recipe")
        assert unknown.returncode == 1 and "no recipe 'no-such-recipe'" in unknown.stderr
        bad = cli(data, "activate", "nothing")
        assert bad.returncode == 1 and "no service named 'nothing'" in bad.stderr
        os.kill(c.proc.pid, signal.SIGINT)
        assert c.wait_exit() == 0
    finally:
        c.kill()


def test_service_management_operation_through_the_cli(started: Container, data: Path):
    assert cli(data, "deploy", "example").returncode == 0
    load = Load(datagram_port(data))
    try:
        one, two = load.open("one"), load.open("two")
        for text in ("a", "b", "c"):
            load.ask(one, text)
        load.ask(two, "x")
        assert not load.failed
        listed = cli(data, "op", "example-counter")
        assert listed.returncode == 0 and "flows" in listed.stdout
        rows = cli_json(data, "op", "example-counter", "flows")
        assert sorted(r["count"] for r in rows) == [1, 3]
        assert {r["peer"] for r in rows} == {f"127.0.0.1:{s.sock.getsockname()[1]}" for s in (one, two)}
        bad = cli(data, "op", "example-counter", "nope")
        assert bad.returncode == 1 and "no management operation 'nope'" in bad.stderr and "flows" in bad.stderr
    finally:
        load.close()


def test_durability_fsync_is_chosen_at_start_and_shown_in_status(data: Path):
    bad = cli(data, "start", "--durability", "lazy")
    assert bad.returncode != 0 and "invalid choice: 'lazy'" in bad.stderr
    c = Container(data, "--durability", "fsync")
    try:
        assert cli_json(data, "status")["durability"] == "fsync"
        assert "(durability fsync)" in cli(data, "status").stdout
    finally:
        c.kill()

"""End to end with SIPp (Debian ``sip-tester``) against ``bin/slee start --deploy registrar``.

Each test runs one scenario of ``tests/e2e/sipp/`` as a SIPp process with an injection CSV and
asserts on SIPp's exit code and its ``-trace_stat`` CSV: every call successful, none failed.
A "call" is one scenario run (e.g. one user's register/refresh/query sequence); the
scenarios check the responses themselves (status, Contact count, expires) with SIPp regexp
actions, so a wrong answer fails the call.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, ServerInfo, free_port, running_server

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).parent / "sipp"
DOMAIN = "example.com"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300),
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")]


@dataclass
class SippRun:
    returncode: int
    successful: int
    failed: int
    output: str

    def __str__(self) -> str:
        return f"sipp rc={self.returncode} successful={self.successful} failed={self.failed}\n{self.output[-3000:]}"


def _command(scenario: str, server: ServerInfo | None, workdir: Path, *, calls: int, rate: float,
             lines: Sequence[str] | None, keys: dict[str, str], port: int, transport: str,
             extra: Sequence[str] = ()) -> list[str]:
    name = Path(scenario).stem
    cmd = [SIPP or "sipp"]
    if server is not None:
        cmd.append(f"{server.sip_host}:{server.sip_port}")
    cmd += ["-sf", str(SCENARIOS / scenario), "-m", str(calls), "-r", str(rate), "-l", str(max(1, int(rate))),
            "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()), "-t", transport,
            "-nostdin", "-timeout", "60", "-timeout_error", "-max_recv_loops", "1000",
            "-trace_stat", "-stf", str(workdir / f"{name}-{port}.stat.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / f"{name}-{port}.errors.log"),
            "-key", "domain", DOMAIN,
            "-auth_uri", DOMAIN,  # the digest uri = our Request-URI (SIPp's default: the remote address)
            *extra]
    for key, value in keys.items():
        cmd += ["-key", key, value]
    if lines is not None:
        inf = workdir / f"{name}-{port}.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{line}\n" for line in lines))
        cmd += ["-inf", str(inf)]
    return cmd


def _result(proc_rc: int, output: str, stat_file: Path, error_file: Path) -> SippRun:
    successful = failed = -1
    if stat_file.exists():
        rows = list(csv.reader(stat_file.read_text().splitlines(), delimiter=";"))
        header, last = rows[0], rows[-1]
        successful = int(last[header.index("SuccessfulCall(C)")])
        failed = int(last[header.index("FailedCall(C)")])
    if error_file.exists():
        output += "\n--- errors ---\n" + error_file.read_text()[-3000:]
    return SippRun(proc_rc, successful, failed, output)


def sipp(scenario: str, server: ServerInfo | None, workdir: Path, *, calls: int, rate: float = 20,
         lines: Sequence[str] | None = None, keys: dict[str, str] | None = None, port: int | None = None,
         transport: str = "u1", timeout: float = 120, extra: Sequence[str] = ()) -> SippRun:
    """Run one SIPp scenario to completion (``server`` None: a UAS waiting on ``port``)."""
    port = port or free_port()
    name = Path(scenario).stem
    cmd = _command(scenario, server, workdir, calls=calls, rate=rate, lines=lines, keys=keys or {}, port=port,
                   transport=transport, extra=extra)
    proc = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    return _result(proc.returncode, proc.stdout + proc.stderr, workdir / f"{name}-{port}.stat.csv",
                   workdir / f"{name}-{port}.errors.log")


class Background:
    """A SIPp UAS running while the test drives the UAC; ``wait()`` collects its result."""

    def __init__(self, scenario: str, workdir: Path, *, calls: int, port: int) -> None:
        self.name, self.port, self.workdir = Path(scenario).stem, port, workdir
        cmd = _command(scenario, None, workdir, calls=calls, rate=1, lines=None, keys={}, port=port, transport="u1")
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float = 60) -> SippRun:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        return _result(self.proc.returncode, out or "", self.workdir / f"{self.name}-{self.port}.stat.csv",
                       self.workdir / f"{self.name}-{self.port}.errors.log")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def assert_all_passed(run: SippRun, calls: int) -> None:
    assert run.returncode == 0, str(run)
    assert (run.successful, run.failed) == (calls, 0), str(run)


def slee_cli(server: ServerInfo, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(ROOT / "bin" / "slee"), "--data", str(server.data_dir), *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def users(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d};" for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with running_server("registrar", tmp_path_factory.mktemp("sipp-server")) as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# -- registration ---------------------------------------------------------------------------------
def test_register_refresh_and_query_200_users_over_udp(server, workdir):
    run = sipp("register.xml", server, workdir, calls=200, rate=50, lines=users("user", 200))
    assert_all_passed(run, 200)


def test_register_refresh_and_query_over_tcp(server, workdir):
    run = sipp("register.xml", server, workdir, calls=50, rate=50, lines=users("tcpuser", 50), transport="t1")
    assert_all_passed(run, 50)


def test_two_bindings_query_and_wildcard_removal(server, workdir):
    run = sipp("bindings.xml", server, workdir, calls=30, rate=30, lines=users("wild", 30))
    assert_all_passed(run, 30)


def test_423_min_expires_and_out_of_order_cseq_500(server, workdir):
    run = sipp("rejects.xml", server, workdir, calls=20, rate=20, lines=users("reject", 20))
    assert_all_passed(run, 20)


def test_bindings_expire(server, workdir):
    """min_expires lowered to 1 s through the sip-settings profile (CLI) for 2 s bindings."""
    slee_cli(server, "profiles", "set", "sip-settings", "default", "min_expires=1")
    try:
        run = sipp("expiry.xml", server, workdir, calls=20, rate=20, lines=users("expire", 20))
    finally:
        slee_cli(server, "profiles", "set", "sip-settings", "default", "min_expires=60")
    assert_all_passed(run, 20)


def test_the_scenarios_can_fail(server, workdir):
    """The checks are real: expiry.xml against min_expires=60 gets 423, not 200."""
    run = sipp("expiry.xml", server, workdir, calls=3, rate=10, lines=users("fail", 3))
    assert run.returncode != 0 and run.failed == 3 and run.successful == 0, str(run)


# -- the proxy ----------------------------------------------------------------------------------------
def _register_listener(server: ServerInfo, workdir: Path, user: str) -> int:
    port = free_port()
    assert_all_passed(sipp("register_one.xml", server, workdir, calls=1, keys={"user": user}, port=port), 1)
    return port


def test_message_between_two_sipp_uas_through_the_proxy(server, workdir):
    port = _register_listener(server, workdir, "bob")
    uas = Background("message_uas.xml", workdir, calls=20, port=port)
    try:
        uac = sipp("message_uac.xml", server, workdir, calls=20, rate=10, keys={"user": "alice", "peer": "bob"})
        received = uas.wait()
    finally:
        uas.stop()
    assert_all_passed(uac, 20)
    assert_all_passed(received, 20)


def test_message_from_a_local_user_is_challenged_407_when_auth_is_on(server, workdir):
    port = _register_listener(server, workdir, "erin")
    slee_cli(server, "users", "add", "frank", "--domain", DOMAIN, "--password", "frank-pw")
    slee_cli(server, "profiles", "set", "sip-settings", "default", "auth=on", "auth_algorithms=MD5")
    try:
        uas = Background("message_uas.xml", workdir, calls=5, port=port)
        try:
            uac = sipp("message_auth_uac.xml", server, workdir, calls=5, rate=5,
                       keys={"user": "frank", "peer": "erin"},
                       extra=("-au", "frank", "-ap", "frank-pw", "-auth_uri", f"erin@{DOMAIN}"))
            received = uas.wait()
        finally:
            uas.stop()
    finally:
        slee_cli(server, "profiles", "set", "sip-settings", "default", "auth=off")
    assert_all_passed(uac, 5)
    assert_all_passed(received, 5)


def test_message_to_an_unknown_user_is_not_delivered(server, workdir):
    run = sipp("message_uac.xml", server, workdir, calls=1, keys={"user": "alice", "peer": "nobody"})
    assert run.failed == 1 and "404" in run.output, str(run)


def test_call_invite_180_200_ack_bye_through_the_record_routing_proxy(server, workdir):
    slee_cli(server, "profiles", "set", "sip-settings", "default", "record_route=true")
    try:
        port = _register_listener(server, workdir, "carol")
        uas = Background("call_uas.xml", workdir, calls=5, port=port)
        try:
            uac = sipp("call_uac.xml", server, workdir, calls=5, rate=5, keys={"user": "dave", "peer": "carol"})
            answered = uas.wait()
        finally:
            uas.stop()
    finally:
        slee_cli(server, "profiles", "set", "sip-settings", "default", "record_route=false")
    assert_all_passed(uac, 5)
    assert_all_passed(answered, 5)


# -- restart -------------------------------------------------------------------------------------------
def test_bindings_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    with running_server("registrar", tmp_path, data_dir=data) as s:
        assert_all_passed(sipp("register.xml", s, tmp_path, calls=50, rate=50, lines=users("user", 50)), 50)
        port = s.sip_port
    with running_server("registrar", tmp_path, data_dir=data, sip_port=port) as s:
        assert_all_passed(sipp("query.xml", s, tmp_path, calls=50, rate=50, lines=users("user", 50)), 50)


# -- digest authentication -------------------------------------------------------------------------------
def test_digest_challenge_and_response_with_cli_users(tmp_path):
    with running_server("registrar", tmp_path, extra_args=("--set", "auth=on")) as s:
        # SIPp answers only MD5 and takes the first challenge: offer MD5 alone here.
        slee_cli(s, "profiles", "set", "sip-settings", "default", "auth_algorithms=MD5")
        accounts = [(f"sub{i}", f"pw-{i}-secret") for i in range(1, 11)]
        for user, password in accounts:
            slee_cli(s, "users", "add", user, "--domain", DOMAIN, stdin=password + "\n")
        lines = [f"{u};[authentication username={u} password={p}]" for u, p in accounts]
        assert_all_passed(sipp("auth.xml", s, tmp_path, calls=10, rate=10, lines=lines), 10)
        wrong = sipp("auth.xml", s, tmp_path, calls=1, lines=["sub1;[authentication username=sub1 password=nope]"])
        assert wrong.returncode != 0 and wrong.failed == 1, str(wrong)
        assert "401" in wrong.output

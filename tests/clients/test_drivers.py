"""Tests of the client drivers themselves: no SIP server needed.

The real binaries are required: a missing baresip or pjsua2 fails with the install command
rather than skipping, because the end-to-end suite is meaningless without them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.clients import BaresipClient, BaresipConfig, ClientError, Pjsua2Client
from tests.clients._process import LineProcess

pytestmark = pytest.mark.timeout(30)

BOB = "sip:bob@example.test"
ALICE = "sip:alice@example.test"


@pytest.fixture
def dead_port() -> int:
    """A loopback UDP port nobody listens on: the clients' requests go nowhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------------- baresip config
def test_baresip_config_files(tmp_path: Path) -> None:
    cfg = BaresipConfig(user="alice", domain="example.test", server=("127.0.0.1", 5070),
                        buddies=(BOB, "sip:carol@example.test"), password="s3cret")
    cfg.write(tmp_path)
    config = (tmp_path / "config").read_text().splitlines()
    modules = [line.split()[1] for line in config
               if line.split()[0] in ("module", "module_tmp", "module_app")]
    assert modules == ["stdio.so", "uuid.so", "account.so", "contact.so", "menu.so",
                       "presence.so"]
    assert "poll_method\t\tpoll" in config
    assert "sip_listen\t\t127.0.0.1:0" in config
    assert not any("alsa" in line or "g711" in line for line in config)
    assert (tmp_path / "accounts").read_text() == (
        '<sip:alice@example.test>;outbound="sip:127.0.0.1:5070;transport=udp";'
        "regint=600;pubint=600;answermode=manual;auth_user=alice;auth_pass=s3cret\n")
    assert (tmp_path / "contacts").read_text() == (
        '"bob" <sip:bob@example.test>;presence=p2p\n'
        '"carol" <sip:carol@example.test>;presence=p2p\n')


def test_baresip_config_tcp_no_publish_ipv6(tmp_path: Path) -> None:
    cfg = BaresipConfig(user="alice", domain="example.test", server=("::1", 5071),
                        transport="tcp", publish=False)
    line = cfg.account_line()
    assert line.startswith("<sip:alice@example.test;transport=tcp>;")
    assert 'outbound="sip:[::1]:5071;transport=tcp"' in line
    assert ";pubint=0;" in line
    assert "auth_pass" not in line


def test_baresip_rejects_unknown_transport(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="transport"):
        BaresipClient("alice", "example.test", ("127.0.0.1", 5060), transport="sctp",
                      workdir=tmp_path)


def test_baresip_missing_binary_fails_loudly(tmp_path: Path) -> None:
    client = BaresipClient("alice", "example.test", ("127.0.0.1", 5060), workdir=tmp_path,
                           binary="baresip-not-installed")
    with pytest.raises(ClientError, match="apt-get install -y baresip-core"):
        client.start()


# ---------------------------------------------------------------------- baresip process
def test_baresip_starts_lists_buddies_and_quits(tmp_path: Path, dead_port: int) -> None:
    client = BaresipClient("alice", "example.test", ("127.0.0.1", dead_port),
                           buddies=[BOB], workdir=tmp_path)
    with client:
        assert client.proc is not None
        pid = client.proc.pid
        assert (tmp_path / "uuid").exists()  # written by baresip itself on start
        assert client.buddies() == {BOB: "Unknown"}
        assert client.buddy_status(BOB) == "Unknown"
        assert client.is_registered() is False  # nobody answers on dead_port
        with pytest.raises(ClientError, match="not in baresip's contact list"):
            client.buddy_status("sip:nobody@example.test")
        client.stop(timeout=0.5, grace=0.5)  # /quit waits on the dead registrar: killed
    assert client.proc is None
    assert _gone(pid)
    log = (tmp_path / "baresip.log").read_text()
    assert "baresip is ready." in log and "Quit" in log


def test_baresip_set_presence_words(tmp_path: Path) -> None:
    client = BaresipClient("alice", "example.test", ("127.0.0.1", 5060), workdir=tmp_path)
    with pytest.raises(ValueError, match="only publish 'online' or 'offline'"):
        client.set_presence("away")


def test_baresip_received_messages_parses_real_output(tmp_path: Path) -> None:
    # Lines as baresip 1.0 prints them: the stdio echo and the message share a CR.
    script = (
        "import sys\n"
        "sys.stdout.write('/m/me/message hi\\rsip:bob@example.test: \"hi alice \\u00fc\"\\n')\n"
        "sys.stdout.write('sip:carol@example.test: \"two\\nlines\"\\n')\n"
        "sys.stdout.write('\\x1b[32mAll 1 useragent registered successfully!\\x1b[;m\\n')\n"
        "sys.stdout.flush()\n"
        "sys.stdin.readline()\n")
    client = BaresipClient("alice", "example.test", ("127.0.0.1", 5060), workdir=tmp_path)
    client.proc = LineProcess([sys.executable, "-c", script])
    try:
        assert client.wait_message("two\nlines", timeout=5) == ("sip:carol@example.test",
                                                               "two\nlines")
        assert client.received_messages() == [("sip:bob@example.test", "hi alice ü"),
                                              ("sip:carol@example.test", "two\nlines")]
        deadline = time.monotonic() + 5  # the reader thread may still be on its way to line 3
        while "All 1 useragent registered successfully!" not in client.lines and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "All 1 useragent registered successfully!" in client.lines
    finally:
        client.proc.kill(grace=1)


# ---------------------------------------------------------------------- pjsua2
def test_pjsua2_agent_starts_subscribes_and_quits(tmp_path: Path, dead_port: int) -> None:
    client = Pjsua2Client("bob", "example.test", ("127.0.0.1", dead_port),
                          buddies=[ALICE], workdir=tmp_path)
    with client:
        assert client.proc is not None
        pid = client.proc.pid
        assert client.local is not None and client.local.startswith("127.0.0.1:")
        info = client.buddy_status(ALICE)
        assert info["uri"] == ALICE
        assert info["status"] == "unknown"  # nobody has told it anything yet
        assert info["sub_state"] in ("NULL", "SENT")
        account = client.account_info()
        assert account["uri"] == BOB and account["reg_active"] is False
        with pytest.raises(ClientError, match="unknown op"):
            client.call("no_such_op")
        with pytest.raises(ClientError, match="KeyError"):
            client.buddy_status("sip:nobody@example.test")
    assert client.proc is None
    assert _gone(pid)
    written = json.loads((tmp_path / "agent.json").read_text())
    assert written["aor"] == BOB and written["server"] == ["127.0.0.1", dead_port]
    assert written["transport"] == "udp" and written["publish"] is True
    assert (tmp_path / "pjsua2.log").stat().st_size > 0  # pjsip's own log, kept for triage
    assert '"event": "exited"' in (tmp_path / "agent-events.log").read_text()


def test_pjsua2_set_status_validates_activity(tmp_path: Path) -> None:
    client = Pjsua2Client("bob", "example.test", ("127.0.0.1", 5060), workdir=tmp_path)
    with pytest.raises(ValueError, match="activity must be one of"):
        client.set_status("sleeping")


# ---------------------------------------------------------------------- process helper
def test_kill_escalates_to_sigkill_for_a_child_that_ignores_sigterm() -> None:
    proc = LineProcess(["sh", "-c", "trap '' TERM; echo up; sleep 30"])
    proc.wait_line("^up$", timeout=5)
    started = time.monotonic()
    assert proc.kill(grace=0.3) == -9
    assert time.monotonic() - started < 5
    assert _gone(proc.pid)


def test_wait_line_reports_early_exit_with_output() -> None:
    proc = LineProcess(["sh", "-c", "echo boom; exit 3"])
    with pytest.raises(ClientError, match=r"exited \(3\)[\s\S]*boom"):
        proc.wait_line("never printed", timeout=5)
    proc.kill()

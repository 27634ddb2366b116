"""Presence against a real container, driven by SIPp scenarios (tests/e2e/sipp_presence/).

Each scenario is one SIPp call; the verdict is SIPp's exit code (0: every call succeeded) and
its ``-trace_stat`` counters (one successful call, none failed). The scenarios check what the
server sends with ``ereg check_it`` actions (Subscription-State, ETags, watcherinfo versions),
so a wrong header fails the call.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, ServerInfo, free_port, running_server
from tests.support.sipclient import SipTestClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) is not installed")]

SCENARIOS = Path(__file__).parent / "sipp_presence"
DOMAIN = "example.test"


class Sipp:
    """One SIPp run of one scenario (one call), in the background until ``finish``."""

    def __init__(self, server: ServerInfo, scenario: str, workdir: Path, *, service: str, watcher: str,
                 timeout: float = 40.0) -> None:
        self.workdir = workdir / scenario.removesuffix(".xml")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stat = self.workdir / "stat.csv"
        self.timeout = timeout
        cmd = ["sipp", f"{server.sip_host}:{server.sip_port}", "-sf", str(SCENARIOS / scenario),
               "-s", service, "-key", "watcher", watcher, "-key", "domain", DOMAIN,
               "-m", "1", "-l", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-nostdin",
               "-timeout", f"{int(timeout)}s", "-timeout_error", "-recv_timeout", "25s",
               "-trace_stat", "-stf", str(self.stat), "-fd", "1",
               "-trace_err", "-error_file", str(self.workdir / "errors.log"),
               "-trace_msg", "-message_file", str(self.workdir / "messages.log")]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)

    def finish(self) -> None:
        """Wait for SIPp; assert exit code 0 and exactly one successful, no failed call."""
        try:
            out, _ = self.proc.communicate(timeout=self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        errors = (self.workdir / "errors.log")
        detail = (errors.read_text()[-3000:] if errors.exists() else "") or out[-3000:]
        assert self.proc.returncode == 0, f"sipp exit {self.proc.returncode}:\n{detail}"
        with self.stat.open() as f:
            rows = list(csv.DictReader(f, delimiter=";"))
        assert rows, "sipp wrote no statistics"
        last = rows[-1]
        assert int(last["FailedCall(C)"]) == 0, detail
        assert int(last["SuccessfulCall(C)"]) == 1, last


def slee(server: ServerInfo, *args: str) -> str:
    """``bin/slee --data DIR ARGS`` (the operator's CLI), returning its output."""
    done = subprocess.run([sys.executable, "-m", "slee.cli", "--data", str(server.data_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for_watcher(server: ServerInfo, presentity: str, text: str, timeout: float = 15.0) -> None:
    """Poll ``bin/slee presence watchers`` until ``text`` shows up (SIPp is waiting by then)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = slee(server, "presence", "watchers", presentity, "--domain", DOMAIN)
        if text in out:
            return
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never showed among the watchers of {presentity}:\n{out}")


def run_scenario(server: ServerInfo, tmp_path: Path, scenario: str, *, service: str, watcher: str) -> None:
    Sipp(server, scenario, tmp_path, service=service, watcher=watcher).finish()


def test_subscribe_notify_refresh_unsubscribe(tmp_path: Path):
    with running_server("presence", tmp_path) as server:
        run_scenario(server, tmp_path, "subscribe.xml", service="bob", watcher="alice")
        assert "alice" not in slee(server, "presence", "watchers", "bob", "--domain", DOMAIN)


def test_subscription_expiry_sends_terminated_timeout(tmp_path: Path):
    with running_server("presence", tmp_path) as server:
        slee(server, "profiles", "set", "presence-settings", "default", "min_expires=1")
        run_scenario(server, tmp_path, "expiry.xml", service="bob", watcher="alice")


def test_publish_etag_create_refresh_modify_remove_and_412(tmp_path: Path):
    with running_server("presence", tmp_path) as server:
        run_scenario(server, tmp_path, "publish.xml", service="alice", watcher="alice")
        shown = slee(server, "--json", "presence", "show", "alice", "--domain", DOMAIN)
        assert '"publications": []' in shown.replace("\n", "").replace("  ", " ") or "no publications" in shown


def test_unknown_event_package_489_and_non_pidf_publish_415(tmp_path: Path):
    with running_server("presence", tmp_path) as server:
        run_scenario(server, tmp_path, "errors.xml", service="alice", watcher="alice")


def test_winfo_full_then_partial(tmp_path: Path):
    with running_server("presence", tmp_path) as server:
        sipp = Sipp(server, "winfo.xml", tmp_path, service="bob", watcher="bob")
        try:
            wait_for_watcher(server, "bob", "presence.winfo")

            async def alice_subscribes() -> None:
                async with await SipTestClient.connect("udp", *server.sip_address,
                                                       auto_answer={"NOTIFY": 200}) as alice:
                    alice.send(alice.request_bytes(
                        "SUBSCRIBE", f"sip:bob@{DOMAIN}", from_uri=f"sip:alice@{DOMAIN}", to_uri=f"sip:bob@{DOMAIN}",
                        contact=f"<sip:alice@127.0.0.1:{alice.local_port}>",
                        headers=[("Event", "presence"), ("Expires", "600")]))
                    assert (await alice.receive_response()).status == 200
                    await alice.receive_request("NOTIFY")

            asyncio.run(alice_subscribes())
        finally:
            sipp.finish()


def test_pending_watcher_becomes_active_when_allowed(tmp_path: Path):
    with running_server("presence", tmp_path, extra_args=("--set", "presence_auth=rules")) as server:
        sipp = Sipp(server, "pending.xml", tmp_path, service="bob", watcher="alice")
        try:
            wait_for_watcher(server, "bob", "pending")
            slee(server, "presence", "allow", "bob", "alice", "--domain", DOMAIN)
        finally:
            sipp.finish()
        assert "allow" in slee(server, "presence", "list", "bob", "--domain", DOMAIN)

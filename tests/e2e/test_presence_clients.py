"""The seed's demo with real clients through `bin/slee start --deploy presence`.

Verdicts come from what each client reports (buddy status, received text), never SIP traces.
Pairs: two baresip, two pjsua2, pjsua2 + baresip. The pjsua2 side switches rich status; the
logging-off side de-REGISTERs only (baresip: created with publish=False, since its /quit is
the only way to de-REGISTER and would un-PUBLISH otherwise).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DOMAIN = "example.test"


def _baresip(user, server, tmp, buddy, publish=True):
    from tests.clients.baresip import BaresipClient

    return BaresipClient(user, DOMAIN, server.sip_address, buddies=[buddy], publish=publish,
                         workdir=tmp / user)


def _pjsua2(user, server, tmp, buddy):
    from tests.clients.pjsua2_client import Pjsua2Client

    return Pjsua2Client(user, DOMAIN, server.sip_address, buddies=[buddy], workdir=tmp / user)


def _need_baresip():
    if shutil.which("baresip") is None:
        pytest.fail("baresip is not installed: run .ci/run, or apt-get install baresip-core")


def _need_pjsua2():
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        pytest.fail("pjsua2 is not installed: run bin/test (it installs the dev extra with pjsua2-python)")


def _mkdirs(tmp: Path, *users: str) -> None:
    for u in users:
        (tmp / u).mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_two_baresip_see_each_other_online_offline_and_chat(tmp_path: Path, workers: int):
    """With 2 workers alice and bob are owned by different workers (crc32 of the AOR)."""
    _need_baresip()
    _mkdirs(tmp_path, "alice", "bob")
    alice_aor, bob_aor = f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"
    with running_server("presence", tmp_path, extra_args=["--workers", str(workers)]) as server:
        bob = _baresip("bob", server, tmp_path, alice_aor, publish=False)
        with _baresip("alice", server, tmp_path, bob_aor) as alice:
            bob.start()
            try:
                bob.register()
                alice.register()
                alice.wait_buddy_status(bob_aor, "Online", timeout=15)
                bob.wait_buddy_status(alice_aor, "Online", timeout=15)
                alice.send_message(bob_aor, "hello bob")
                bob.wait_message(lambda frm, text: "hello bob" in text, timeout=10)
                bob.send_message(alice_aor, "hi alice")
                alice.wait_message(lambda frm, text: "hi alice" in text, timeout=10)
                bob.unregister()  # de-REGISTER (no PUBLISH: publish=False)
                alice.wait_buddy_status(bob_aor, "Offline", timeout=15)
            finally:
                bob.stop()
            bob = _baresip("bob", server, tmp_path, alice_aor, publish=False)
            with bob:
                bob.register()
                alice.wait_buddy_status(bob_aor, "Online", timeout=15)


def _rich_status_round(watcher_sees, pj, other_aor):
    """pjsua2 goes away, busy/dnd, on the phone; ``watcher_sees(expected_kind)`` checks each."""
    pj.set_status("away")
    watcher_sees("away")
    pj.set_status("dnd")
    watcher_sees("dnd")
    pj.set_status("on-the-phone")
    watcher_sees("on-the-phone")
    pj.set_status("online")
    watcher_sees("online")


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_two_pjsua2_rich_status_log_off_and_chat(tmp_path: Path, workers: int):
    _need_pjsua2()
    _mkdirs(tmp_path, "alice", "bob")
    alice_aor, bob_aor = f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"
    with running_server("presence", tmp_path, extra_args=["--workers", str(workers)]) as server, \
            _pjsua2("alice", server, tmp_path, bob_aor) as alice, _pjsua2("bob", server, tmp_path, alice_aor) as bob:
        alice.register()
        bob.register()
        alice.add_buddy(bob_aor)
        bob.add_buddy(alice_aor)
        alice.wait_buddy_status(bob_aor, "online", timeout=15)
        bob.wait_buddy_status(alice_aor, "online", timeout=15)

        def sees(kind: str) -> None:
            if kind == "away":
                bob.wait_buddy_status(alice_aor, lambda i: i.get("activity") == "away", timeout=10)
            elif kind == "dnd":
                bob.wait_buddy_status(alice_aor, lambda i: "Do not disturb" in (i.get("note") or i.get("text") or ""),
                                      timeout=10)
            elif kind == "on-the-phone":
                bob.wait_buddy_status(alice_aor, lambda i: "On the phone" in (i.get("note") or i.get("text") or ""),
                                      timeout=10)
            else:
                bob.wait_buddy_status(alice_aor, "online", timeout=10)

        _rich_status_round(sees, alice, bob_aor)
        alice.send_message(bob_aor, "ping from alice")
        bob.wait_message(lambda frm, text: "ping from alice" in text, timeout=10)
        bob.send_message(alice_aor, "pong from bob")
        alice.wait_message(lambda frm, text: "pong from bob" in text, timeout=10)
        alice.unregister()
        bob.wait_buddy_status(alice_aor, "offline", timeout=15)
        alice.register()
        bob.wait_buddy_status(alice_aor, "online", timeout=15)


def test_pjsua2_and_baresip_rich_status_and_chat(tmp_path: Path):
    _need_baresip()
    _need_pjsua2()
    _mkdirs(tmp_path, "alice", "bob")
    alice_aor, bob_aor = f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"
    with running_server("presence", tmp_path) as server, \
            _pjsua2("alice", server, tmp_path, bob_aor) as alice, \
            _baresip("bob", server, tmp_path, alice_aor) as bob:
        alice.register()
        bob.register()
        alice.add_buddy(bob_aor)
        alice.wait_buddy_status(bob_aor, "online", timeout=15)
        bob.wait_buddy_status(alice_aor, "Online", timeout=15)
        # what baresip can show (driver notes): away -> Offline, busy and on-the-phone -> Busy
        shown = {"away": "Offline", "dnd": "Busy", "on-the-phone": "Busy", "online": "Online"}
        _rich_status_round(lambda kind: bob.wait_buddy_status(alice_aor, shown[kind], timeout=10), alice, bob_aor)
        alice.send_message(bob_aor, "hello baresip")
        bob.wait_message(lambda frm, text: "hello baresip" in text, timeout=10)
        bob.send_message(alice_aor, "hello pjsua2")
        alice.wait_message(lambda frm, text: "hello pjsua2" in text, timeout=10)
        alice.unregister()
        bob.wait_buddy_status(alice_aor, "Offline", timeout=15)
        alice.register()
        bob.wait_buddy_status(alice_aor, "Online", timeout=15)

"""End to end: two real baresip instances register with the registrar and exchange a MESSAGE
through the proxy (each verdict read from baresip's own output)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.clients.baresip import BaresipClient
from tests.e2e.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_two_baresips_register_and_exchange_a_message(tmp_path: Path, transport: str) -> None:
    if shutil.which("baresip") is None:
        pytest.fail("baresip is missing: apt-get install -y baresip-core")
    with running_server("registrar", tmp_path) as s:
        alice = BaresipClient("alice", "example.test", s.sip_address, transport=transport, publish=False,
                              buddies=["sip:bob@example.test"], workdir=tmp_path / "alice")
        bob = BaresipClient("bob", "example.test", s.sip_address, transport=transport, publish=False,
                            buddies=["sip:alice@example.test"], workdir=tmp_path / "bob")
        with alice, bob:
            alice.register()
            bob.register()
            alice.send_message("sip:bob@example.test", "hello bob")
            sender, text = bob.wait_message("hello bob", timeout=10)
            assert "alice@example.test" in sender and text == "hello bob"
            bob.send_message("sip:alice@example.test", "hi alice, über ✓")
            sender, text = alice.wait_message("hi alice, über ✓", timeout=10)
            assert "bob@example.test" in sender

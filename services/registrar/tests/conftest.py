"""Fixtures for the registrar's per-SBB tests: a harness with a fake SIP network and a real
binding table (FakeLocation) on the harness's fake clock."""

from __future__ import annotations

import itertools

import pytest

from slee.ra.location.testing import FakeLocation
from slee.ra.sip import REQUEST
from slee.ra.sip.testing import FakeSipNetwork
from slee.sip import Peer
from slee.testing import SbbHarness

from ..registrar import RegistrarSbb
from ..subscribers import SipSettingsProfile, SubscriberProfile

_branches = itertools.count(1)


class Rig:
    def __init__(self, *, config: dict | None = None, settings: dict | None = None) -> None:
        self.net = FakeSipNetwork()
        self.location = FakeLocation(now=lambda: 0.0)
        self.h = SbbHarness(RegistrarSbb, providers={"sip": self.net.provider, "location": self.location.provider},
                            profile_tables={"subscribers": SubscriberProfile, "sip-settings": SipSettingsProfile},
                            config=config or {})
        self.location.bind_later(self.h)
        if settings:
            with self.h.transaction():
                self.h.profile_table("sip-settings").create("default", **settings)
        self.net.attach(self.h)

    def register(self, aor: str = "sip:alice@example.com", *contacts: str, expires: int | None = None,
                 call_id: str = "call-1", cseq: int = 1, headers: tuple[tuple[str, str], ...] = (),
                 source: Peer | None = None, uri: str = "sip:example.com"):
        lines = [f"REGISTER {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK-{next(_branches)};rport",
                 "Max-Forwards: 70", f"To: <{aor}>", f"From: <{aor}>;tag=t1", f"Call-ID: {call_id}",
                 f"CSeq: {cseq} REGISTER"]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines += [f"{k}: {v}" for k, v in headers]
        lines += ["Content-Length: 0", "", ""]
        st, event = self.net.request_event("\r\n".join(lines), source)
        self.h.container.start_activity("harness", st, st)
        self.h.fire(REQUEST["REGISTER"], event, st, address=event.request.to.uri and aor)
        return self.net.last_response()

    def close(self) -> None:
        self.h.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()

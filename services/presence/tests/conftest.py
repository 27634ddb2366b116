"""Fixtures for the presence SBB tests: a harness with a fake SIP network and location RA."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from slee import ProfileAttribute, ProfileSpec
from slee.events import Address
from slee.ra.sip import DIALOG_REQUEST, REQUEST, RESPONSE_SUCCESS, aor_of
from slee.ra.sip.testing import FakeSipNetwork
from slee.sbb import SbbLocalObject
from slee.testing import SbbHarness

from ..rules import PresenceRuleSpec
from ..sbbs import PresentitySbb

_seq = itertools.count(1)


class Subscriber(ProfileSpec):
    """The registrar's subscriber profile, as far as digest authentication reads it."""

    username = ProfileAttribute(str, indexed=True)
    realm = ProfileAttribute(str, indexed=True)
    ha1_md5 = ProfileAttribute(str)
    ha1_sha256 = ProfileAttribute(str)
    addresses = ProfileAttribute(list, default=[])
    enabled = ProfileAttribute(bool, default=True)


class SipSettings(ProfileSpec):
    """The registrar's ``sip-settings`` profile: ``auth`` and ``domains``."""

    auth = ProfileAttribute(str, default="off")
    domains = ProfileAttribute(list, default=[])


@dataclass
class FakeLocation:
    """Stands where the location RA's provider stands: ``lookup(aor)`` only."""

    bindings: dict[str, list[Any]] = field(default_factory=dict)

    def lookup(self, aor: str) -> list[Any]:
        return list(self.bindings.get(aor, []))


class PresenceBed:
    """A harness plus helpers that speak SIP to the presence SBBs."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.net = FakeSipNetwork()
        self.location = FakeLocation()
        self.h = SbbHarness(PresentitySbb, providers={"sip": self.net.provider, "location": self.location},
                            profile_tables={"presence_rules": PresenceRuleSpec, "subscribers": Subscriber,
                                            "sip-settings": SipSettings}, config=config or {})
        self.net.attach(self.h)
        self._answered: set[int] = set()

    def close(self) -> None:
        self.h.close()

    def document(self) -> bytes:
        """The presentity's composed PIDF now, as a new watcher's first NOTIFY would carry it."""
        with self.h.transaction():
            return SbbLocalObject(self.h.container, self.h.root().id).snapshot()["document"].encode()

    def fire_request(self, event_type: Any, raw: bytes | str) -> Any:
        """Like ``FakeSipNetwork.fire_request`` (which calls ``SbbHarness.activity_for``, a
        method the harness does not have yet): server transactions become activities here."""
        st, event = self.net.request_event(raw)
        address = Address("sip", aor_of(event.request.to.uri))
        if event.dialog is not None:
            self.h.fire(event_type, event, event.dialog, address=address)
        else:
            self.h.container.start_activity("harness", st, st)
            self.h.fire(event_type, event, st, address=address)
        return st

    # -- requests -------------------------------------------------------------------------
    def subscribe(self, watcher: str, presentity: str, *, expires: int | None = 600, event: str = "presence",
                  accept: str | None = None, extra: str = "", call_id: str | None = None) -> Any:
        n = next(_seq)
        lines = [
            f"SUBSCRIBE sip:{presentity}@example.test SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsub{n};rport",
            "Max-Forwards: 70",
            f"From: <sip:{watcher if '@' in watcher else watcher + '@example.test'}>;tag=w{n}",
            f"To: <sip:{presentity}@example.test>",
            f"Call-ID: {call_id or f'sub-{n}'}",
            f"CSeq: {n} SUBSCRIBE",
            f"Contact: <sip:{watcher.split('@')[0]}@127.0.0.1:5070>",
            f"Event: {event}",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if accept is not None:
            lines.append(f"Accept: {accept}")
        if extra:
            lines.append(extra)
        lines += ["Content-Length: 0", "", ""]
        return self.fire_request(REQUEST["SUBSCRIBE"], "\r\n".join(lines))

    def refresh(self, st: Any, expires: int) -> Any:
        """An in-dialog SUBSCRIBE to the server's Contact, as baresip sends it."""
        req = st.request
        dialog = st.dialog
        n = next(_seq) + 1000
        raw = "\r\n".join([
            "SUBSCRIBE sip:127.0.0.1:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKref{n};rport",
            "Max-Forwards: 70",
            f"From: {req.headers.get('From')}",
            f"To: {req.headers.get('To')};tag={dialog.local_tag}",
            f"Call-ID: {req.call_id}",
            f"CSeq: {req.cseq.seq + n} SUBSCRIBE",
            f"Contact: {req.headers.get('Contact')}",
            f"Event: {req.event}",
            f"Expires: {expires}",
            "Content-Length: 0", "", ""])
        return self.fire_request(DIALOG_REQUEST["SUBSCRIBE"], raw)

    def publish(self, user: str, body: bytes | None, *, etag: str | None = None, expires: int | None = None,
                content_type: str = "application/pidf+xml", sender: str | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> Any:
        n = next(_seq)
        lines = [
            f"PUBLISH sip:{user}@example.test SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKpub{n};rport",
            "Max-Forwards: 70",
            f"From: <sip:{sender or user}@example.test>;tag=p{n}",
            f"To: <sip:{user}@example.test>",
            f"Call-ID: pub-{n}",
            f"CSeq: {n} PUBLISH",
            "Event: presence",
        ]
        if etag is not None:
            lines.append(f"SIP-If-Match: {etag}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines += [f"{name}: {value}" for name, value in headers]
        body = body or b""
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines += [f"Content-Length: {len(body)}", "", ""]
        raw = "\r\n".join(lines).encode() + body
        return self.fire_request(REQUEST["PUBLISH"], raw)

    def answer_notifies(self, status: int = 200) -> int:
        """Answer every NOTIFY not yet answered; returns how many."""
        count = 0
        for sent in list(self.net.sent("NOTIFY")):
            if id(sent) in self._answered:
                continue
            self._answered.add(id(sent))
            count += 1
            event = self.net.respond_to(sent, status)
            if sent.dialog is None or sent.dialog.terminated:
                continue
            from slee.ra.sip.events import response_event_type

            if ("harness", sent.dialog) in self.h.container.activity_contexts:
                self.h.fire(response_event_type(status), event, sent.dialog)
        return count

    def usage(self) -> dict[str, int]:
        """Counters of the service's ``presence`` usage set, summed over its SBBs."""
        out: dict[str, int] = {}
        for ps in self.h.container.usage._sets.values():
            if ps.name == "presence":
                for name, value in ps.counters.items():
                    out[name] = out.get(name, 0) + value
        return out

    def notifies(self, call_id: str | None = None) -> list[Any]:
        return [s.request for s in self.net.sent("NOTIFY") if call_id is None or s.request.call_id == call_id]


def pidf(entity: str, basic: str = "open", *, tuple_id: str = "t1", extra: str = "", person: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            f'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
            f'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="{entity}">'
            f'<tuple id="{tuple_id}"><status><basic>{basic}</basic></status>{extra}</tuple>{person}'
            f'</presence>').encode()


@pytest.fixture
def bed():
    b = PresenceBed()
    yield b
    b.close()


__all__ = ["RESPONSE_SUCCESS", "PresenceBed", "pidf"]

"""Per-SBB tests of the ProxySbb with a fake SIP network and a real binding table."""

from __future__ import annotations

import itertools

import pytest

from slee import ProfileSpec
from slee.facilities.profile import ProfileAttribute
from slee.ra.location import Binding
from slee.ra.location.testing import FakeLocation
from slee.ra.sip import (
    REQUEST,
    RESPONSE_CLIENT_ERROR,
    RESPONSE_GLOBAL_FAILURE,
    RESPONSE_PROVISIONAL,
    RESPONSE_SUCCESS,
)
from slee.ra.sip.testing import FakeSipNetwork
from slee.sip import Peer, build_credentials, compute_ha1
from slee.testing import SbbHarness

from .._select import better
from ..proxy import ProxySbb

_n = itertools.count(1)
ALICE = "sip:alice@example.com"


class Rig:
    def __init__(self) -> None:
        self.net = FakeSipNetwork()
        self.location = FakeLocation(now=lambda: 0.0)
        self.h = SbbHarness(ProxySbb, providers={"sip": self.net.provider, "location": self.location.provider})
        self.location.bind_later(self.h)
        self.net.attach(self.h)

    def bind(self, aor: str, *contacts: tuple[str, tuple[str, str, int] | None]) -> None:
        now = self.h.clock.now()
        with self.h.transaction():
            self.location.provider.save(aor, [Binding(aor, c, now + 600, None, "cid", 1, (), rcv)
                                              for c, rcv in contacts], "registered")

    def request(self, method: str, uri: str = ALICE, *, headers: tuple = (), body: bytes = b"hello",
                max_forwards: int = 70):
        lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-p{next(_n)}",
                 f"Max-Forwards: {max_forwards}", f"To: <{ALICE}>", "From: <sip:bob@example.com>;tag=b1",
                 "Call-ID: m1", f"CSeq: 1 {method}", "Contact: <sip:bob@192.0.2.1:5070>"]
        lines += [f"{k}: {v}" for k, v in headers]
        raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        st, event = self.net.request_event(raw)
        self.h.container.start_activity("harness", st, st)
        outcome = self.h.fire(REQUEST.get(method, REQUEST["MESSAGE"]), event, st, address=ALICE)
        return st, outcome

    def answer(self, sent, status: int):
        event = self.net.respond_to(sent, status)
        kind = {1: RESPONSE_PROVISIONAL, 2: RESPONSE_SUCCESS, 4: RESPONSE_CLIENT_ERROR,
                6: RESPONSE_GLOBAL_FAILURE}[status // 100]
        self.h.container.fire_event("harness", sent.transaction, kind, event, None)
        self.h.run_until_idle()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.h.close()


def test_message_forks_to_every_contact_over_its_flow_with_body_untouched(rig):
    rig.bind(ALICE, ("sip:a@10.0.0.1:5060", ("udp", "198.51.100.1", 40000)),
             ("sip:a@10.0.0.2:5060;transport=tcp", ("tcp", "198.51.100.2", 41000)))
    body = bytes(range(256))
    rig.request("MESSAGE", body=body)
    sent = rig.net.sent("MESSAGE")
    assert sorted(str(s.request.raw_uri) for s in sent) == ["sip:a@10.0.0.1:5060", "sip:a@10.0.0.2:5060;transport=tcp"]
    assert {(s.destination.transport, s.destination.host, s.destination.port) for s in sent} == {
        ("udp", "198.51.100.1", 40000), ("tcp", "198.51.100.2", 41000)}
    assert all(s.request.body == body and s.request.max_forwards == 69 for s in sent)
    rig.answer(sent[0], 486)
    assert rig.net.responses == []  # waits for the other branch
    rig.answer(sent[1], 200)
    assert [r.status for r in rig.net.responses] == [200]


def test_best_failure_wins_when_all_fail(rig):
    rig.bind(ALICE, ("sip:a@10.0.0.1", None), ("sip:a@10.0.0.2", None))
    rig.request("MESSAGE")
    a, b = rig.net.sent("MESSAGE")
    rig.answer(a, 486)
    rig.answer(b, 404)
    assert [r.status for r in rig.net.responses] in ([486], [404])
    assert better(404, 503) and better(302, 404) and not better(500, 486)


def test_unknown_404_and_unregistered_480(rig):
    rig.request("MESSAGE")
    assert rig.net.last_response().status == 404
    rig.bind(ALICE, ("sip:a@10.0.0.1", None))
    with rig.h.transaction():
        rig.location.provider.remove_all(ALICE)
    rig.request("MESSAGE")
    assert rig.net.last_response().status == 480


def test_max_forwards_zero_is_483_and_own_via_is_482(rig):
    rig.bind(ALICE, ("sip:a@10.0.0.1", None))
    rig.request("MESSAGE", max_forwards=0)
    assert rig.net.last_response().status == 483
    rig.request("MESSAGE", headers=(("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-old"),))
    assert rig.net.last_response().status == 482
    assert rig.net.sent("MESSAGE") == []


def test_invite_2xx_cancels_the_other_branches_and_6xx_ends_the_search(rig):
    rig.bind(ALICE, ("sip:a@10.0.0.1", None), ("sip:a@10.0.0.2", None), ("sip:a@10.0.0.3", None))
    rig.request("INVITE", body=b"v=0\r\n")
    a, b, _c = rig.net.sent("INVITE")
    rig.answer(a, 180)
    assert [r.status for r in rig.net.responses] == [180]  # provisional relayed
    rig.answer(b, 200)
    assert [r.status for r in rig.net.responses] == [180, 200]
    cancels = rig.net.sent("CANCEL")
    assert sorted(x.request.raw_uri for x in cancels) == ["sip:a@10.0.0.1", "sip:a@10.0.0.3"]


def test_upstream_cancel_cancels_pending_branches(rig):
    rig.bind(ALICE, ("sip:a@10.0.0.1", None), ("sip:a@10.0.0.2", None))
    st, _ = rig.request("INVITE")
    _cancel_st, cancel_event = rig.net.request_event(
        "CANCEL sip:alice@example.com SIP/2.0\r\n" + st.request.headers.get_all("Via")[0].join(["Via: ", "\r\n"]) +
        "Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:bob@example.com>;tag=b1\r\n"
        "Call-ID: m1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n")
    rig.h.fire(REQUEST["CANCEL"], cancel_event, st)
    assert len(rig.net.sent("CANCEL")) == 2


def test_routed_ack_is_forwarded_statelessly_and_our_route_popped(rig):
    _st, _ = rig.request("ACK", uri="sip:a@10.0.0.9:5062",
                        headers=(("Route", "<sip:127.0.0.1:5060;lr>"),))
    [(ack, destination)] = rig.net.stateless
    assert ack.method == "ACK" and ack.headers.get("Route") is None
    assert destination == Peer("udp", "10.0.0.9", 5062)
    assert rig.net.responses == []


def test_routed_bye_goes_by_request_uri(rig):
    rig.request("BYE", uri="sip:a@10.0.0.9:5062", headers=(("Route", "<sip:127.0.0.1:5060;lr>"),))
    [bye] = rig.net.sent("BYE")
    assert bye.destination.host == "10.0.0.9" and bye.request.headers.get("Route") is None


def test_requests_for_the_server_itself_are_left_to_the_ra(rig):
    _st, outcome = rig.request("OPTIONS", uri="sip:127.0.0.1:5060")
    assert outcome.initial_matches == 0 and rig.net.responses == []
    _st, outcome = rig.request("BYE", uri="sip:a@10.0.0.9")  # in-dialog without Route: not ours
    assert outcome.initial_matches == 0


# -- digest authentication of local senders (407) ---------------------------------------------
class SubscriberProfile(ProfileSpec):
    """The registrar unit's subscriber spec, restated: services do not import each other."""

    username = ProfileAttribute(str, indexed=True)
    realm = ProfileAttribute(str)
    ha1_md5 = ProfileAttribute(str)
    ha1_sha256 = ProfileAttribute(str)
    addresses = ProfileAttribute(list, default=[])
    enabled = ProfileAttribute(bool, default=True)


class SipSettingsProfile(ProfileSpec):
    auth = ProfileAttribute(str, default="off")
    domains = ProfileAttribute(list, default=[])
    record_route = ProfileAttribute(bool, default=False)


class AuthRig(Rig):
    """Auth on, domain example.com served, bob@example.com a subscriber."""

    def __init__(self, **settings) -> None:
        self.net = FakeSipNetwork()
        self.location = FakeLocation(now=lambda: 0.0)
        self.h = SbbHarness(ProxySbb, providers={"sip": self.net.provider, "location": self.location.provider},
                            profile_tables={"subscribers": SubscriberProfile, "sip-settings": SipSettingsProfile})
        self.location.bind_later(self.h)
        self.net.attach(self.h)
        with self.h.transaction():
            self.h.profile_table("sip-settings").create("default", **{"auth": "on", **settings})
            self.h.profile_table("subscribers").create(
                "bob@example.com", username="bob", realm="example.com",
                ha1_md5=compute_ha1("bob", "example.com", "pw", "MD5"),
                ha1_sha256=compute_ha1("bob", "example.com", "pw", "SHA-256"))

    def request_from(self, method: str, sender: str, *, headers: tuple = (), to_tag: str | None = None):
        lines = [f"{method} {ALICE} SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-a{next(_n)}",
                 "Max-Forwards: 70", f"To: <{ALICE}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"From: <{sender}>;tag=b1", "Call-ID: m2", f"CSeq: {next(_n)} {method}",
                 "Contact: <sip:bob@192.0.2.1:5070>"]
        lines += [f"{k}: {v}" for k, v in headers]
        raw = ("\r\n".join(lines) + "\r\nContent-Length: 2\r\n\r\nhi").encode()
        st, event = self.net.request_event(raw)
        self.h.container.start_activity("harness", st, st)
        self.h.fire(REQUEST[method], event, st, address=ALICE)
        return st


def _proxy_answer(response, method: str = "MESSAGE", password: str = "pw", user: str = "bob", nc: int = 1):
    params = {c.params["algorithm"]: c.params for c in response.proxy_authenticate}["MD5"]
    return ("Proxy-Authorization", build_credentials(params, username=user, method=method, uri=ALICE,
                                                     password=password, nc=nc))


@pytest.fixture
def auth_rig():
    r = AuthRig(domains=["example.com"])
    r.bind(ALICE, ("sip:a@10.0.0.1:5060", None))
    yield r
    r.h.close()


@pytest.mark.parametrize("method", ["MESSAGE", "INVITE", "OPTIONS"])
def test_local_sender_is_challenged_with_407_then_forwarded(auth_rig, method):
    auth_rig.request_from(method, "sip:bob@example.com")
    challenge = auth_rig.net.last_response()
    assert challenge.status == 407 and challenge.proxy_authenticate and not auth_rig.net.sent(method)
    auth_rig.request_from(method, "sip:bob@example.com", headers=(_proxy_answer(challenge, method),))
    assert len(auth_rig.net.sent(method)) == 1


def test_wrong_password_and_unknown_user_are_not_forwarded(auth_rig):
    auth_rig.request_from("MESSAGE", "sip:bob@example.com")
    challenge = auth_rig.net.last_response()
    auth_rig.request_from("MESSAGE", "sip:bob@example.com", headers=(_proxy_answer(challenge, password="x"),))
    assert auth_rig.net.last_response().status == 407
    auth_rig.request_from("MESSAGE", "sip:eve@example.com", headers=(_proxy_answer(challenge, user="eve"),))
    assert auth_rig.net.last_response().status == 407
    assert not auth_rig.net.sent("MESSAGE")


def test_authenticated_user_cannot_send_as_someone_else(auth_rig):
    with auth_rig.h.transaction():
        auth_rig.h.profile_table("subscribers").create("carol@example.com", username="carol", realm="example.com",
                                                       ha1_md5=compute_ha1("carol", "example.com", "c", "MD5"))
    auth_rig.request_from("MESSAGE", "sip:carol@example.com")
    challenge = auth_rig.net.last_response()
    # bob's credentials, carol's From: the realm matches, the identity does not
    auth_rig.request_from("MESSAGE", "sip:carol@example.com", headers=(_proxy_answer(challenge),))
    assert auth_rig.net.last_response().status == 403 and not auth_rig.net.sent("MESSAGE")


def test_foreign_sender_and_in_dialog_requests_are_not_challenged(auth_rig):
    auth_rig.request_from("MESSAGE", "sip:zed@elsewhere.net")
    assert len(auth_rig.net.sent("MESSAGE")) == 1
    auth_rig.request_from("INVITE", "sip:bob@example.com", to_tag="t9")
    assert len(auth_rig.net.sent("INVITE")) == 1 and not auth_rig.net.responses


def test_without_configured_domains_the_subscribers_realms_are_local():
    rig = AuthRig()
    try:
        rig.bind(ALICE, ("sip:a@10.0.0.1:5060", None))
        rig.request_from("MESSAGE", "sip:bob@example.com")
        assert rig.net.last_response().status == 407
        rig.request_from("MESSAGE", "sip:zed@elsewhere.net")
        assert len(rig.net.sent("MESSAGE")) == 1
    finally:
        rig.h.close()

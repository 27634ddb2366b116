"""slee.ra.sip.auth: digest challenges and checks as every SIP service sees them."""

from __future__ import annotations

import itertools

import pytest

from slee.ra.sip.auth import DigestAuthenticator, RateLimit
from slee.ra.sip.testing import FakeSipNetwork
from slee.sip import Peer, build_credentials, compute_ha1

REALM = "example.com"
_branch = itertools.count(1)


def subscriber(user: str, password: str, **extra):
    return {"username": user, "realm": REALM, "ha1_md5": compute_ha1(user, REALM, password, "MD5"),
            "ha1_sha256": compute_ha1(user, REALM, password, "SHA-256"), **extra}


TABLE = {"alice@example.com": subscriber("alice", "secret", addresses=["sip:al@example.com"]),
         "dave@example.com": subscriber("dave", "pw", enabled=False)}


class Rig:
    def __init__(self, auth: DigestAuthenticator | None = None) -> None:
        self.net = FakeSipNetwork()
        self.auth = auth or DigestAuthenticator()
        self.now = 1000.0

    def request(self, method: str = "MESSAGE", *, user: str = "alice", headers=(), cseq: int = 1,
                source: Peer | None = None):
        target = "sip:example.com" if method == "REGISTER" else "sip:bob@example.com"
        to = f"sip:{user}@example.com" if method == "REGISTER" else "sip:bob@example.com"
        lines = [f"{method} {target} SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK{next(_branch)}",
                 "Max-Forwards: 70", f"From: <sip:{user}@example.com>;tag=f", f"To: <{to}>",
                 "Call-ID: c1", f"CSeq: {cseq} {method}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines += ["Content-Length: 0", "", ""]
        st, _event = self.net.request_event("\r\n".join(lines), source or Peer("udp", "192.0.2.1", 5070))
        outcome = self.auth.check(st, TABLE, now=self.now)
        return outcome, (self.net.responses[-1] if not outcome.ok else None)


def answer(response, password: str = "secret", *, user: str = "alice", method: str = "MESSAGE",
           algorithm: str = "MD5", nc: int = 1, proxy: bool = True) -> tuple[str, str]:
    challenges = response.proxy_authenticate if proxy else response.www_authenticate
    params = {c.params["algorithm"]: c.params for c in challenges}[algorithm]
    uri = "sip:example.com" if method == "REGISTER" else "sip:bob@example.com"
    creds = build_credentials(params, username=user, method=method, uri=uri, password=password, nc=nc)
    return ("Proxy-Authorization" if proxy else "Authorization", creds)


def test_register_is_challenged_with_401_and_strongest_algorithm_first():
    rig = Rig()
    outcome, r = rig.request("REGISTER")
    assert not outcome.ok and outcome.status == 401 and r.status == 401
    assert [c.params["algorithm"] for c in r.www_authenticate] == ["SHA-256", "MD5"]
    assert r.proxy_authenticate == []
    assert {c.params["realm"] for c in r.www_authenticate} == {REALM}
    for algorithm, cseq in (("SHA-256", 2), ("MD5", 3)):
        ok, _ = rig.request("REGISTER", cseq=cseq, headers=[answer(r, method="REGISTER", algorithm=algorithm,
                                                                   nc=cseq, proxy=False)])
        assert ok.ok and ok.user == "alice" and ok.aor == "sip:alice@example.com", algorithm


def test_other_methods_get_407_and_a_valid_nonce_is_accepted_again():
    rig = Rig()
    outcome, r = rig.request("MESSAGE")
    assert outcome.status == 407 and r.status == 407 and r.www_authenticate == []
    for nc in (1, 2, 3):  # the same nonce on later requests: no re-challenge (interop notes)
        rig.now += 10
        ok, _ = rig.request("MESSAGE", cseq=nc + 1, headers=[answer(r, nc=nc)])
        assert ok.ok, nc


def test_a_www_authorization_does_not_satisfy_a_proxy_check():
    rig = Rig()
    _, r = rig.request("MESSAGE")
    _name, value = answer(r)
    outcome, again = rig.request("MESSAGE", cseq=2, headers=[("Authorization", value)])
    assert outcome.status == 407 and again.proxy_authenticate


def test_expired_nonce_with_the_right_password_is_stale_and_not_a_failure():
    rig = Rig(DigestAuthenticator(nonce_lifetime=30, rate_limit=RateLimit(failures=1, window=600)))
    _, r = rig.request("MESSAGE")
    rig.now += 31
    outcome, stale = rig.request("MESSAGE", cseq=2, headers=[answer(r)])
    assert outcome.status == 407
    assert all(c.params.get("stale", "").lower() == "true" for c in stale.proxy_authenticate)
    ok, _ = rig.request("MESSAGE", cseq=3, headers=[answer(stale)])  # not blocked: no failure counted
    assert ok.ok


def test_replayed_nonce_count_is_rechallenged_stale():
    rig = Rig()
    _, r = rig.request("MESSAGE")
    creds = answer(r, nc=1)
    assert rig.request("MESSAGE", cseq=2, headers=[creds])[0].ok
    outcome, again = rig.request("MESSAGE", cseq=3, headers=[creds])
    assert outcome.status == 407 and again.proxy_authenticate[0].params.get("stale", "").lower() == "true"


def test_unknown_disabled_and_wrong_password_look_the_same():
    rig = Rig()
    _, r = rig.request("MESSAGE")
    answers = []
    for user, password in (("alice", "wrong"), ("mallory", "x"), ("dave", "pw")):
        outcome, resp = rig.request("MESSAGE", user=user, headers=[answer(r, password, user=user)])
        assert not outcome.ok
        answers.append((resp.status, resp.reason, [sorted(c.params) for c in resp.proxy_authenticate]))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 407


def test_failures_are_rate_limited_per_source_ip():
    rig = Rig(DigestAuthenticator(rate_limit=RateLimit(failures=3, window=60)))
    _, r = rig.request("MESSAGE")
    for i in range(3):
        assert rig.request("MESSAGE", cseq=2 + i, headers=[answer(r, "bad", nc=i + 1)])[0].status == 407
    blocked, resp = rig.request("MESSAGE", cseq=9, headers=[answer(r, nc=9)])
    assert blocked.status == 403 and resp.status == 403 and resp.headers.get("Retry-After") == "60"
    other, _ = rig.request("MESSAGE", cseq=10, headers=[answer(r, nc=10)], source=Peer("udp", "198.51.100.2", 5060))
    assert other.ok
    rig.now += 61  # the window ends
    assert rig.request("MESSAGE", cseq=11, headers=[answer(r, nc=11)])[0].ok


def test_missing_credentials_are_not_failures():
    rig = Rig(DigestAuthenticator(rate_limit=RateLimit(failures=1, window=60)))
    for cseq in range(1, 5):
        assert rig.request("MESSAGE", cseq=cseq)[0].status == 407


def test_nonces_are_accepted_across_services_of_one_process():
    registrar, proxy = DigestAuthenticator(), DigestAuthenticator()
    rig = Rig(registrar)
    _, r = rig.request("MESSAGE")
    rig.auth = proxy
    assert rig.request("MESSAGE", cseq=2, headers=[answer(r)])[0].ok


def test_malformed_authorization_is_400():
    rig = Rig()
    outcome, r = rig.request("MESSAGE", headers=[("Proxy-Authorization", 'Digest username="al')])
    assert outcome.status == 400 and r.status == 400


def test_may_use_own_and_listed_addresses_only():
    rig = Rig()
    _, r = rig.request("MESSAGE")
    ok, _ = rig.request("MESSAGE", cseq=2, headers=[answer(r)])
    assert ok.may_use("sip:alice@example.com") and ok.may_use("sip:al@EXAMPLE.com")
    assert not ok.may_use("sip:bob@example.com")


@pytest.mark.parametrize("method", ["REGISTER", "PUBLISH"])
def test_realm_is_the_domain_of_the_aor_or_sender(method):
    rig = Rig()
    _, r = rig.request(method)
    challenges = r.www_authenticate if method == "REGISTER" else r.proxy_authenticate
    assert challenges[0].params["realm"] == REALM

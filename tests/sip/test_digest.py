"""Digest authentication: RFC examples, nonces, replay, stale, failures."""

from __future__ import annotations

import pytest

from slee.sip._digest import (
    AuthResult,
    DigestChallenge,
    NonceManager,
    NonceStatus,
    build_credentials,
    compute_ha1,
    compute_response,
    verify,
)
from slee.sip._headers import Challenge, Credentials, parse_auth

SECRET = b"0123456789abcdef-server-secret"


def test_rfc2617_section_3_5_example():
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    response = compute_response(
        ha1=ha1, method="GET", uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm, expected):
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = compute_response(
        ha1=ha1, method="GET", uri="/dir/index.html", algorithm=algorithm,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth", nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == expected


def test_rfc2069_form_without_qop():
    # RFC 2069 §2.4's example (its password is "CircleOfLife", without spaces)
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "CircleOfLife")
    response = compute_response(
        ha1=ha1, method="GET", uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093")
    assert response == "1949323746fe6a43ef61f9606e7febea"


def test_sess_variant_differs_from_base_and_needs_cnonce():
    ha1 = compute_ha1("u", "r", "p", "MD5-sess")
    assert ha1 == compute_ha1("u", "r", "p", "MD5")
    common = dict(ha1=ha1, method="REGISTER", uri="sip:r", nonce="n", qop="auth",
                  nc="00000001", cnonce="c")
    assert compute_response(algorithm="MD5-sess", **common) != compute_response(**common)
    with pytest.raises(ValueError):
        compute_response(ha1=ha1, method="R", uri="u", nonce="n", algorithm="MD5-sess")


def test_challenge_header_roundtrips_through_the_sip_parser():
    challenge = DigestChallenge(realm="example.com", nonce="abc", algorithm="SHA-256",
                                qop=("auth",), opaque='o"q', stale=True)
    header = challenge.to_header()
    assert "algorithm=SHA-256" in header and 'qop="auth"' in header and "stale=TRUE" in header
    parsed = parse_auth(header, Challenge)
    assert parsed.scheme == "Digest"
    assert parsed.params["realm"] == "example.com"
    assert parsed.params["opaque"] == 'o"q'
    assert parsed.params["stale"] == "TRUE"


def sip_exchange(manager, now, *, algorithm="MD5", password="secret", nc=1, nonce=None,
                 method="REGISTER"):
    nonce = nonce or manager.issue(now)
    challenge = DigestChallenge(realm="example.com", nonce=nonce, algorithm=algorithm)
    params = parse_auth(challenge.to_header(), Challenge).params
    header = build_credentials(params, username="alice", password=password, method=method,
                               uri="sip:example.com", nc=nc, cnonce="0a4f113b")
    return nonce, parse_auth(header, Credentials).params


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"])
def test_client_and_server_agree(algorithm):
    manager = NonceManager(SECRET)
    _nonce, creds = sip_exchange(manager, 1000.0, algorithm=algorithm)
    ha1 = compute_ha1("alice", "example.com", "secret", algorithm)
    assert creds["algorithm"] == algorithm
    assert verify(creds, "REGISTER", ha1, manager, 1001.0, realm="example.com") is AuthResult.OK


def test_ha1_mapping_selects_by_algorithm():
    manager = NonceManager(SECRET)
    _nonce, creds = sip_exchange(manager, 0.0, algorithm="SHA-256")
    stored = {
        "MD5": compute_ha1("alice", "example.com", "secret", "MD5"),
        "SHA-256": compute_ha1("alice", "example.com", "secret", "SHA-256"),
    }
    assert verify(creds, "REGISTER", stored, manager, 1.0) is AuthResult.OK
    _nonce, creds = sip_exchange(manager, 0.0, algorithm="SHA-256")
    assert verify(creds, "REGISTER", {"MD5": stored["MD5"]}, manager, 1.0) is AuthResult.FAILED


def test_wrong_password_fails():
    manager = NonceManager(SECRET)
    _nonce, creds = sip_exchange(manager, 0.0, password="guess")
    ha1 = compute_ha1("alice", "example.com", "secret")
    assert verify(creds, "REGISTER", ha1, manager, 1.0) is AuthResult.FAILED


def test_wrong_method_or_realm_or_uri_fails():
    manager = NonceManager(SECRET)
    ha1 = compute_ha1("alice", "example.com", "secret")
    _nonce, creds = sip_exchange(manager, 0.0)
    assert verify(creds, "INVITE", ha1, manager, 1.0) is AuthResult.FAILED
    assert verify(creds, "REGISTER", ha1, manager, 1.0, realm="other") is AuthResult.FAILED
    assert verify(creds, "REGISTER", ha1, manager, 1.0,
                  request_uri="sip:elsewhere.com") is AuthResult.FAILED
    # a correct check still works after the failures (they recorded no nonce-count)
    assert verify(creds, "REGISTER", ha1, manager, 1.0,
                  request_uri="sip:example.com") is AuthResult.OK


def test_expired_nonce_with_right_password_is_stale():
    manager = NonceManager(SECRET, lifetime=300.0)
    _nonce, creds = sip_exchange(manager, 0.0)
    ha1 = compute_ha1("alice", "example.com", "secret")
    assert verify(creds, "REGISTER", ha1, manager, 300.5) is AuthResult.STALE


def test_expired_nonce_with_wrong_password_is_failed_not_stale():
    manager = NonceManager(SECRET, lifetime=300.0)
    _nonce, creds = sip_exchange(manager, 0.0, password="guess")
    ha1 = compute_ha1("alice", "example.com", "secret")
    assert verify(creds, "REGISTER", ha1, manager, 301.0) is AuthResult.FAILED


def test_nonce_count_replay_is_refused_and_higher_count_accepted():
    manager = NonceManager(SECRET)
    ha1 = compute_ha1("alice", "example.com", "secret")
    nonce, first = sip_exchange(manager, 0.0, nc=1)
    assert verify(first, "REGISTER", ha1, manager, 1.0) is AuthResult.OK
    assert verify(first, "REGISTER", ha1, manager, 2.0) is AuthResult.FAILED  # replayed
    _nonce, third = sip_exchange(manager, 0.0, nc=3, nonce=nonce)
    assert verify(third, "REGISTER", ha1, manager, 3.0) is AuthResult.OK
    _nonce, second = sip_exchange(manager, 0.0, nc=2, nonce=nonce)
    assert verify(second, "REGISTER", ha1, manager, 4.0) is AuthResult.FAILED


def test_forged_or_foreign_nonce_fails():
    ours = NonceManager(SECRET)
    theirs = NonceManager(b"another-secret-of-16+bytes")
    ha1 = compute_ha1("alice", "example.com", "secret")
    _nonce, creds = sip_exchange(theirs, 0.0)
    assert verify(creds, "REGISTER", ha1, ours, 1.0) is AuthResult.FAILED
    assert ours.validate("not-a-nonce", 0.0) is NonceStatus.INVALID
    nonce = ours.issue(0.0)
    tampered = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    assert ours.validate(tampered, 0.0) is NonceStatus.INVALID


def test_nonce_is_valid_on_a_sibling_node_with_the_same_secret():
    nonce = NonceManager(SECRET).issue(50.0)
    assert NonceManager(SECRET).check(nonce, 1, 60.0) is NonceStatus.VALID


def test_replay_table_is_bounded_and_evicted_nonces_are_stale():
    manager = NonceManager(SECRET, max_tracked=2)
    n1, n2, n3 = (manager.issue(t) for t in (1.0, 2.0, 3.0))
    for nonce in (n1, n2, n3):
        assert manager.check(nonce, 1, 4.0) is NonceStatus.VALID
    assert len(manager) == 2
    # n1 was forgotten: it must not be accepted again (that would allow nc replay)
    assert manager.check(n1, 1, 5.0) is NonceStatus.STALE
    assert manager.check(n3, 2, 5.0) is NonceStatus.VALID


def test_qop_without_nc_or_cnonce_fails():
    manager = NonceManager(SECRET)
    ha1 = compute_ha1("alice", "example.com", "secret")
    _nonce, creds = sip_exchange(manager, 0.0)
    broken = {k: v for k, v in creds.items() if k != "cnonce"}
    assert verify(broken, "REGISTER", ha1, manager, 1.0) is AuthResult.FAILED
    broken = dict(creds, nc="1")
    assert verify(broken, "REGISTER", ha1, manager, 1.0) is AuthResult.FAILED
    assert verify(dict(creds, algorithm="ROT13"), "REGISTER", ha1, manager, 1.0) \
        is AuthResult.FAILED


def test_rfc2069_client_accepted_for_md5():
    manager = NonceManager(SECRET)
    nonce = manager.issue(0.0)
    challenge = {"realm": "example.com", "nonce": nonce}  # no qop offered
    header = build_credentials(challenge, username="alice", password="secret",
                               method="MESSAGE", uri="sip:bob@example.com")
    creds = parse_auth(header, Credentials).params
    assert "qop" not in creds and "nc" not in creds
    ha1 = compute_ha1("alice", "example.com", "secret")
    assert verify(creds, "MESSAGE", ha1, manager, 1.0) is AuthResult.OK


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        NonceManager(b"short")

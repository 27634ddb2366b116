"""Per-SBB tests of the RegistrarSbb: RFC 3261 §10.3 behaviour against a real binding table."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from slee.ra.location import LOCATION_CHANGED, LOCATION_DEREGISTERED, LOCATION_REGISTERED
from slee.sip import Peer, build_credentials, compute_ha1

from .conftest import Rig

ALICE = "sip:alice@example.com"


def contacts_of(response):
    return {str(c.uri): c for c in response.contacts}


def test_register_adds_a_binding_and_lists_it_with_expires_and_date(rig):
    r = rig.register(ALICE, "<sip:alice@192.0.2.10:5070;transport=udp>", expires=600)
    assert r.status == 200
    [c] = r.contacts
    assert str(c.uri) == "sip:alice@192.0.2.10:5070;transport=udp"  # kept exactly as sent
    assert c.params["expires"] == "600"
    assert parsedate_to_datetime(r.headers.get("Date")).timestamp() == rig.h.clock.now()
    [b] = rig.location.provider.lookup(ALICE)
    assert b.received == ("udp", "127.0.0.1", 5070) and b.call_id == "call-1"
    assert [k for k, _ in rig.location.events] == [LOCATION_REGISTERED]


def test_default_and_max_expiry(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>")
    r = rig.register(ALICE, "<sip:b@192.0.2.11>", expires=100_000, cseq=2)
    by = contacts_of(r)
    assert by["sip:a@192.0.2.10"].params["expires"] == "3600"
    assert by["sip:b@192.0.2.11"].params["expires"] == "7200"


def test_contact_expires_param_overrides_the_header(rig):
    r = rig.register(ALICE, "<sip:a@192.0.2.10>;expires=120", expires=900)
    assert r.contacts[0].params["expires"] == "120"


def test_too_brief_gets_423_with_min_expires_and_changes_nothing(rig):
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=30)
    assert r.status == 423 and r.headers.get("Min-Expires") == "60"
    assert rig.location.provider.lookup(ALICE) == []


def test_refresh_keeps_one_binding_and_reports_refreshed(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600)
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=1200, cseq=2)
    assert len(r.contacts) == 1 and r.contacts[0].params["expires"] == "1200"
    assert [e.reason for _, e in rig.location.events] == ["registered", "refreshed"]
    assert rig.location.events[-1][0] == LOCATION_CHANGED


def test_out_of_order_cseq_same_call_id_is_500_and_keeps_the_binding(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=5)
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=0, cseq=5)
    assert r.status == 500
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=0, cseq=4)
    assert r.status == 500
    assert len(rig.location.provider.lookup(ALICE)) == 1


def test_a_lower_cseq_from_another_call_id_is_fine(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=5)
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=300, cseq=1, call_id="other")
    assert r.status == 200 and r.contacts[0].params["expires"] == "300"


def test_remove_with_expires_zero_param_without_header_like_baresip(rig):
    rig.register(ALICE, '<sip:a@192.0.2.10>;+sip.instance="<urn:uuid:1>"', expires=600)
    r = rig.register(ALICE, '<sip:a@192.0.2.10>;expires=0;+sip.instance="<urn:uuid:1>"', cseq=2)
    assert r.status == 200 and r.contacts == []
    assert rig.location.provider.lookup(ALICE) == []
    assert rig.location.events[-1][0] == LOCATION_DEREGISTERED
    assert rig.location.events[-1][1].reason == "unregistered"


def test_wildcard_removes_all(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>", "<sip:b@192.0.2.11>", expires=600)
    r = rig.register(ALICE, "*", expires=0, cseq=2)
    assert r.status == 200 and r.contacts == []
    assert rig.location.events[-1][1].reason == "wildcard"


def test_wildcard_rules_400(rig):
    assert rig.register(ALICE, "*", expires=10).status == 400
    assert rig.register(ALICE, "*").status == 400
    assert rig.register(ALICE, "*", "<sip:a@192.0.2.10>", expires=0).status == 400


def test_query_without_contact_lists_bindings_with_remaining_time(rig):
    rig.register(ALICE, "<sip:a@192.0.2.10>;q=0.5", expires=600)
    rig.register(ALICE, "<sip:b@192.0.2.11>;q=1.0", expires=600, cseq=2)
    rig.h.clock.advance(100)
    r = rig.register(ALICE, cseq=3)
    assert r.status == 200
    assert [str(c.uri) for c in r.contacts] == ["sip:b@192.0.2.11", "sip:a@192.0.2.10"]  # best q first
    assert {c.params["expires"] for c in r.contacts} == {"500"}
    assert r.contacts[1].params["q"] == "0.5"
    assert len(rig.location.events) == 2  # a query changes nothing


def test_path_is_stored_and_returned_when_supported(rig):
    r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600,
                     headers=(("Path", "<sip:edge.example.com;lr>"), ("Supported", "path")))
    assert r.headers.get_all("Path") == ["<sip:edge.example.com;lr>"]
    assert "path" in r.supported
    assert rig.location.provider.lookup(ALICE)[0].path == ("<sip:edge.example.com;lr>",)


def test_to_must_be_a_sip_aor(rig):
    assert rig.register("sip:example.com", "<sip:a@192.0.2.10>").status == 404


def test_domains_setting_refuses_other_domains():
    rig = Rig(settings={"domains": ["example.org"]})
    try:
        assert rig.register(ALICE, "<sip:a@192.0.2.10>").status == 404
        assert rig.register("sip:bob@example.org", "<sip:b@192.0.2.10>").status == 200
    finally:
        rig.close()


def test_min_expires_from_settings():
    rig = Rig(settings={"min_expires": 2, "default_expires": 10, "max_expires": 20})
    try:
        assert rig.register(ALICE, "<sip:a@192.0.2.10>", expires=1).status == 423
        r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=2)
        assert r.status == 200 and r.contacts[0].params["expires"] == "2"
    finally:
        rig.close()


def test_many_registers_for_one_aor_keep_every_binding(rig):
    for i in range(20):
        assert rig.register(ALICE, f"<sip:dev{i}@192.0.2.{i + 1}>", expires=600, call_id=f"c{i}").status == 200
    assert len(rig.location.provider.lookup(ALICE)) == 20


# -- digest authentication ------------------------------------------------------------------
def auth_rig() -> Rig:
    rig = Rig(settings={"auth": "on"})
    table = rig.h.profile_table("subscribers")
    with rig.h.transaction():
        table.create("alice@example.com", username="alice", realm="example.com",
                     ha1_md5=compute_ha1("alice", "example.com", "secret", "MD5"),
                     ha1_sha256=compute_ha1("alice", "example.com", "secret", "SHA-256"))
    return rig


def answer(challenge_response, password: str, *, algorithm: str = "MD5", user: str = "alice", nc: int = 1):
    challenges = {c.params["algorithm"]: c.params for c in challenge_response.www_authenticate}
    return build_credentials(challenges[algorithm], username=user, method="REGISTER", uri="sip:example.com",
                             password=password, nc=nc)


def test_auth_challenge_then_success_md5_and_sha256():
    rig = auth_rig()
    try:
        r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600)
        assert r.status == 401
        assert [c.params["algorithm"] for c in r.www_authenticate] == ["SHA-256", "MD5"]
        assert r.www_authenticate[0].params["realm"] == "example.com"
        for i, algorithm in enumerate(("MD5", "SHA-256")):
            creds = answer(r, "secret", algorithm=algorithm, nc=i + 1)
            ok = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=2 + i,
                              headers=(("Authorization", creds),))
            assert ok.status == 200, algorithm
    finally:
        rig.close()


def test_unknown_user_and_wrong_password_look_the_same():
    rig = auth_rig()
    try:
        r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600)
        wrong = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=2,
                             headers=(("Authorization", answer(r, "nope")),))
        unknown = rig.register("sip:mallory@example.com", "<sip:m@192.0.2.10>", expires=600, cseq=3,
                               headers=(("Authorization", answer(r, "x", user="mallory")),))
        assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")
        assert len(wrong.www_authenticate) == len(unknown.www_authenticate) == 2
        assert rig.location.provider.aors() == []
    finally:
        rig.close()


def test_user_may_register_only_their_own_aor():
    rig = auth_rig()
    try:
        r = rig.register("sip:bob@example.com", "<sip:b@192.0.2.10>", expires=600)
        creds = answer(r, "secret")
        r = rig.register("sip:bob@example.com", "<sip:b@192.0.2.10>", expires=600, cseq=2,
                         headers=(("Authorization", creds),))
        assert r.status == 403
        assert rig.location.provider.lookup("sip:bob@example.com") == []
    finally:
        rig.close()


def test_failed_attempts_are_rate_limited_per_source_ip():
    rig = auth_rig()
    try:
        r = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600)
        for i in range(5):
            assert rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=2 + i,
                                headers=(("Authorization", answer(r, "bad", nc=i + 1)),)).status == 401
        good = answer(r, "secret", nc=10)
        blocked = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=20, headers=(("Authorization", good),))
        assert blocked.status == 403 and blocked.headers.get("Retry-After")
        other_ip = rig.register(ALICE, "<sip:a@192.0.2.10>", expires=600, cseq=21, headers=(("Authorization", good),),
                                source=Peer("udp", "198.51.100.7", 5060))
        assert other_ip.status == 200
    finally:
        rig.close()


def test_the_config_of_the_same_settings_is_parsed_once_and_a_change_is_seen():
    from services.registrar._config import RegistrarConfig

    settings = {"domains": ["Example.test"], "auth": "off", "default_expires": "1800"}
    first = RegistrarConfig.from_service(settings)
    assert first.domains == ("example.test",) and first.default_expires == 1800
    assert RegistrarConfig.from_service(dict(settings)) is first  # asked on every REGISTER
    changed = RegistrarConfig.from_service({**settings, "domains": ["other.test"]})
    assert changed.domains == ("other.test",)
    with pytest.raises(ValueError):
        RegistrarConfig.from_service({**settings, "min_expires": 9999})  # still checked

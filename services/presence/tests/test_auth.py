"""Digest authentication of PUBLISH and SUBSCRIBE (services/presence/auth.py)."""

from __future__ import annotations

from slee.sip import build_credentials, compute_ha1

from .conftest import PresenceBed, pidf

REALM = "example.test"
ALICE = f"sip:alice@{REALM}"
BOB = f"sip:bob@{REALM}"


def _bed(config: dict | None = None) -> PresenceBed:
    bed = PresenceBed({"authentication": "on", **(config or {})})
    table = bed.h.profile_table("subscribers")
    with bed.h.transaction():
        for user, password in (("alice", "alice-pw"), ("bob", "bob-pw")):
            table.create(f"{user}@{REALM}", username=user, realm=REALM,
                         ha1_md5=compute_ha1(user, REALM, password, "MD5"),
                         ha1_sha256=compute_ha1(user, REALM, password, "SHA-256"))
    return bed


def _creds(response, *, user: str, password: str, method: str, uri: str, nc: int = 1) -> tuple[str, str]:
    [params] = [c.params for c in response.proxy_authenticate if c.params["algorithm"] == "SHA-256"]
    return ("Proxy-Authorization", build_credentials(params, username=user, method=method, uri=uri,
                                                     password=password, nc=nc))


def _responses(bed: PresenceBed, status: int) -> int:
    return sum(1 for r in bed.net.responses if r.status == status)


def test_publish_is_challenged_then_accepted_and_the_nonce_stays_good():
    bed = _bed()
    try:
        bed.publish("alice", pidf(ALICE))
        challenge = bed.net.last_response()
        assert challenge.status == 407
        assert [c.params["algorithm"] for c in challenge.proxy_authenticate] == ["SHA-256", "MD5"]
        assert all(not r.cmp for r in bed.h.roots())  # an unauthenticated request leaves no state behind
        uri = f"sip:alice@{REALM}"
        bed.publish("alice", pidf(ALICE), headers=(_creds(challenge, user="alice", password="alice-pw",
                                                          method="PUBLISH", uri=uri),))
        ok = bed.net.last_response()
        assert ok.status == 200
        etag = ok.headers.get("SIP-ETag")
        for nc in (2, 3):  # later PUBLISHes reuse the nonce: no new challenge
            bed.h.advance(30)
            bed.publish("alice", None, etag=etag, headers=(_creds(challenge, user="alice", password="alice-pw",
                                                                  method="PUBLISH", uri=uri, nc=nc),))
            assert bed.net.last_response().status == 200, nc
            etag = bed.net.last_response().headers.get("SIP-ETag")
        assert _responses(bed, 407) == 1
        assert bed.usage().get("auth_challenges") == 1
    finally:
        bed.close()


def test_only_the_authenticated_user_may_publish_its_own_aor():
    bed = _bed()
    try:
        bed.publish("alice", pidf(ALICE))
        challenge = bed.net.last_response()
        uri = f"sip:alice@{REALM}"
        # bob's credentials on a PUBLISH that claims to be alice's
        bed.publish("alice", pidf(ALICE), headers=(_creds(challenge, user="bob", password="bob-pw",
                                                          method="PUBLISH", uri=uri),))
        assert bed.net.last_response().status == 403
        # bob, authenticated as bob, publishing alice's presence
        bed.publish("alice", pidf(ALICE), sender="bob",
                    headers=(_creds(challenge, user="bob", password="bob-pw", method="PUBLISH", uri=uri, nc=2),))
        assert bed.net.last_response().status == 403
        assert not any(r.cmp.get("pubs") for r in bed.h.roots())
        assert bed.usage().get("auth_refused") == 1 and bed.usage().get("publish_rejected") == 1
    finally:
        bed.close()


def test_a_wrong_password_is_challenged_again():
    bed = _bed()
    try:
        bed.publish("alice", pidf(ALICE))
        challenge = bed.net.last_response()
        bed.publish("alice", pidf(ALICE), headers=(_creds(challenge, user="alice", password="guess",
                                                          method="PUBLISH", uri=f"sip:alice@{REALM}"),))
        assert bed.net.last_response().status == 407
        assert all(not r.cmp for r in bed.h.roots())
    finally:
        bed.close()


def test_subscribe_from_a_local_user_is_challenged_but_refreshes_and_foreign_watchers_are_not():
    bed = _bed()
    try:
        bed.subscribe("alice", "bob")
        challenge = bed.net.last_response()
        assert challenge.status == 407
        assert bed.net.sent("NOTIFY") == []
        creds = _creds(challenge, user="alice", password="alice-pw", method="SUBSCRIBE", uri=f"sip:bob@{REALM}")
        st = bed.subscribe("alice", "bob", extra=f"{creds[0]}: {creds[1]}")
        assert bed.net.last_response().status == 200
        assert len(bed.notifies(st.request.call_id)) == 1
        bed.answer_notifies()
        bed.refresh(st, 600)  # in the dialog: not challenged
        assert bed.net.last_response().status == 200
        # From a domain not served here (no subscribers there): its own domain vouches for it
        bed.subscribe("carol@elsewhere.test", "bob")
        assert bed.net.last_response().status == 200
    finally:
        bed.close()


def test_subscribing_as_someone_else_is_forbidden():
    bed = _bed()
    try:
        bed.subscribe("alice", "bob")
        creds = _creds(bed.net.last_response(), user="bob", password="bob-pw", method="SUBSCRIBE",
                       uri=f"sip:bob@{REALM}")
        bed.subscribe("alice", "bob", extra=f"{creds[0]}: {creds[1]}")  # bob posing as alice
        assert bed.net.last_response().status == 403
        assert bed.net.sent("NOTIFY") == []
    finally:
        bed.close()


def test_by_default_authentication_follows_the_registrar_settings():
    bed = PresenceBed()  # authentication: registrar
    try:
        bed.publish("alice", pidf(ALICE))
        assert bed.net.last_response().status == 200  # no sip-settings profile: off
        table = bed.h.profile_table("sip-settings")
        with bed.h.transaction():
            table.create("default", auth="on", domains=[REALM])
        bed.publish("alice", pidf(ALICE))
        assert bed.net.last_response().status == 407
        with bed.h.transaction():
            table.update("default", auth="off")
        bed.publish("alice", pidf(ALICE))
        assert bed.net.last_response().status == 200
    finally:
        bed.close()

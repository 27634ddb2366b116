"""PresentitySbb as the publication SBB (RFC 3903) and the compositor (RFC 3863, docs/presence.md)."""

from __future__ import annotations

from types import SimpleNamespace

from ..pidf import PIDF_NS, parse_pidf, summary
from ..sbbs import LOCATION_DEREGISTERED, LOCATION_REGISTERED
from .conftest import PresenceBed, pidf

BOB = "sip:bob@example.test"


def _basic(body: bytes) -> str:
    return parse_pidf(body).find(f"{{{PIDF_NS}}}tuple/{{{PIDF_NS}}}status/{{{PIDF_NS}}}basic").text


def _loc(bed: PresenceBed, event_type, aor: str = BOB, bindings=("b",)) -> None:
    bed.location.bindings[aor] = list(bindings) if event_type == LOCATION_REGISTERED else []
    event = SimpleNamespace(aor=aor, bindings=tuple(bed.location.bindings[aor]), reason="x")
    bed.h.fire(event_type, event, bed.h.activity(), address=aor)


def test_publish_creates_with_fresh_etag_and_default_expires(bed: PresenceBed):
    bed.publish("bob", pidf(BOB))  # pjsua2 sends no Expires
    resp = bed.net.last_response()
    assert resp.status == 200
    assert resp.headers.get("Expires") == "3600"
    etag = resp.headers.get("SIP-ETag")
    assert etag and len(etag) >= 16
    assert list(bed.h.root().cmp["pubs"]) == [etag]


def test_refresh_modify_remove_by_if_match_each_rotating_the_etag(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    bed.publish("bob", pidf(BOB), expires=600)
    e1 = bed.net.last_response().headers.get("SIP-ETag")
    bed.answer_notifies()
    bed.publish("bob", None, etag=e1, expires=600)  # refresh: no body
    e2 = bed.net.last_response().headers.get("SIP-ETag")
    assert bed.net.last_response().status == 200 and e2 != e1
    bed.publish("bob", pidf(BOB, "closed"), etag=e2)  # modify
    e3 = bed.net.last_response().headers.get("SIP-ETag")
    assert e3 not in (e1, e2)
    bed.answer_notifies()
    assert _basic(bed.notifies()[-1].body) == "closed"
    bed.publish("bob", None, etag=e3, expires=0)  # remove
    assert bed.net.last_response().status == 200
    assert bed.h.root().cmp["pubs"] == {}
    bed.publish("bob", None, etag=e1)  # stale
    assert bed.net.last_response().status == 412


def test_unknown_etag_is_412_and_nothing_changes(bed: PresenceBed):
    bed.publish("bob", pidf(BOB), etag="nope")
    assert bed.net.last_response().status == 412
    assert not bed.h.root().cmp.get("pubs")


def test_other_content_type_is_415_with_accept(bed: PresenceBed):
    bed.publish("bob", b"hello", content_type="text/plain")
    resp = bed.net.last_response()
    assert resp.status == 415 and resp.headers.get("Accept") == "application/pidf+xml"


def test_malformed_and_foreign_entity_bodies_are_400_with_a_reason(bed: PresenceBed):
    bed.publish("bob", b"<presence")
    assert bed.net.last_response().status == 400
    assert "Malformed" in bed.net.last_response().reason
    bed.publish("bob", pidf("sip:carol@example.test"))
    assert bed.net.last_response().status == 400
    assert "entity" in bed.net.last_response().reason


def test_billion_laughs_and_xxe_are_refused_cheaply(bed: PresenceBed):
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;">' % (i, i - 1, i - 1, i - 1, i - 1)
                      for i in range(1, 10))
           + b']><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.test">&lol9;</presence>')
    bed.publish("bob", lol)
    assert bed.net.last_response().status == 400
    xxe = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.test">&x;</presence>')
    bed.publish("bob", xxe)
    assert bed.net.last_response().status == 400
    assert "DTD" in bed.net.last_response().reason


def test_publishing_for_someone_else_is_forbidden(bed: PresenceBed):
    bed.publish("bob", pidf(BOB), sender="mallory")
    assert bed.net.last_response().status == 403


def test_publication_expiry_removes_it_and_notifies(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    bed.publish("bob", pidf(BOB), expires=120)
    bed.answer_notifies()
    assert _basic(bed.notifies()[-1].body) == "open"
    bed.h.advance(121)
    bed.answer_notifies()
    assert bed.h.root().cmp["pubs"] == {}
    assert _basic(bed.notifies()[-1].body) == "closed"


def test_two_devices_publish_and_the_open_one_is_first(bed: PresenceBed):
    bed.publish("bob", pidf(BOB, "open", tuple_id="phone"))
    bed.publish("bob", pidf(BOB, "closed", tuple_id="desk"))
    assert len(bed.h.root().cmp["pubs"]) == 2
    doc = parse_pidf(bed.document())
    ids = [t.get("id") for t in doc.iterfind(f"{{{PIDF_NS}}}tuple")]
    assert ids == ["phone", "desk"]
    assert _basic(bed.document()) == "open"


def test_registration_drives_open_and_closed_and_closes_publications(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    _loc(bed, LOCATION_REGISTERED)
    bed.answer_notifies()
    assert _basic(bed.notifies()[-1].body) == "open"  # registered, nothing published
    busy = pidf(BOB, extra="<note>Busy</note>",
                person='<dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person>')
    bed.publish("bob", busy)
    bed.answer_notifies()
    assert summary(bed.notifies()[-1].body)["activities"] == ["busy"]
    _loc(bed, LOCATION_DEREGISTERED)  # de-REGISTER only, no un-PUBLISH
    bed.answer_notifies()
    last = bed.notifies()[-1].body
    assert _basic(last) == "closed"
    assert summary(last)["activities"] == []
    assert bed.h.root().cmp["pubs"] == {}
    _loc(bed, LOCATION_REGISTERED)
    bed.answer_notifies()
    assert _basic(bed.notifies()[-1].body) == "open"


def test_keeping_publications_on_deregister_is_configurable():
    bed = PresenceBed({"close_publications_on_deregister": False})
    try:
        _loc(bed, LOCATION_REGISTERED)
        bed.publish("bob", pidf(BOB))
        _loc(bed, LOCATION_DEREGISTERED)
        assert len(bed.h.root().cmp["pubs"]) == 1
        assert _basic(bed.document()) == "open"
    finally:
        bed.close()


def test_registered_before_first_subscribe_is_read_from_the_location_service(bed: PresenceBed):
    bed.location.bindings[BOB] = ["binding"]
    bed.subscribe("alice", "bob")
    assert _basic(bed.notifies()[-1].body) == "open"


def test_a_published_presentity_lives_until_its_last_publication_ends(bed: PresenceBed):
    """The publication timers' null activity exists while there are publications; with no
    watcher either, the presentity goes when the last publication expires."""
    bed.publish("bob", pidf(BOB), expires=120)
    bed.net.end_transactions()
    nulls = [key for key in bed.h.container.activity_contexts if key[0] == "null"]
    assert len(nulls) == 1 and len(bed.h.roots()) == 1
    bed.h.advance(121)
    assert bed.usage()["publications_expired"] == 1
    assert bed.h.entities() == [] and _live_activities(bed) == []


def test_a_watched_presentity_keeps_its_watchers_when_the_publication_ends(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    resp = bed.publish("bob", pidf(BOB, extra="<note>Busy</note>"))
    etag = bed.net.last_response().headers.get("SIP-ETag")
    bed.answer_notifies()
    bed.publish("bob", None, etag=etag, expires=0)  # un-PUBLISH
    bed.answer_notifies()
    bed.net.end_transactions()
    assert resp is not None
    assert [key for key in bed.h.container.activity_contexts if key[0] == "null"] == []
    assert len(bed.h.entities()) == 2  # the presentity and its watcher stay
    assert _basic(bed.notifies()[-1].body) == "closed"


def test_a_registration_change_of_an_unwatched_user_creates_nothing(bed: PresenceBed):
    _loc(bed, LOCATION_REGISTERED, aor="sip:nobody@example.test")
    assert bed.h.entities() == []


def _live_activities(bed: PresenceBed) -> list:
    """Activities other than the service activity every service has."""
    return [key for key in bed.h.container.activity_contexts if key[0] != "service"]


def test_a_publication_nobody_watches_is_not_composed_but_reaches_the_next_watcher(bed: PresenceBed, monkeypatch):
    from .. import sbbs

    composed = []
    real = sbbs.compose
    monkeypatch.setattr(sbbs, "compose", lambda *a, **k: composed.append(a[0]) or real(*a, **k))
    bed.publish("bob", pidf(BOB, "closed"))
    assert bed.net.last_response().status == 200
    assert composed == []  # no watcher: nothing to compose the document for
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    assert _basic(bed.notifies()[-1].body) == "closed"  # the first watcher gets what was published
    before = len(bed.notifies())
    bed.publish("bob", pidf(BOB, "open"))
    bed.answer_notifies()
    assert len(bed.notifies()) == before + 1 and _basic(bed.notifies()[-1].body) == "open"

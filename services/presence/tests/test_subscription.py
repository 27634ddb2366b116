"""SubscriptionSbb / PresentitySbb: SUBSCRIBE, NOTIFY, refresh, unsubscribe, expiry (RFC 6665, 3856)."""

from __future__ import annotations

from ..pidf import PIDF_NS, parse_pidf
from .conftest import PresenceBed, pidf


def _basic(body: bytes) -> str:
    root = parse_pidf(body)
    return root.find(f"{{{PIDF_NS}}}tuple/{{{PIDF_NS}}}status/{{{PIDF_NS}}}basic").text


def test_subscribe_gets_200_with_expires_contact_and_an_immediate_closed_notify(bed: PresenceBed):
    st = bed.subscribe("alice", "bob", expires=600)
    resp = bed.net.last_response()
    assert resp.status == 200
    assert resp.headers.get("Expires") == "600"
    assert resp.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    assert resp.to_tag == st.dialog.local_tag
    [notify] = bed.notifies()
    assert notify.headers.get("Event") == "presence"
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    assert notify.headers.get("Content-Type") == "application/pidf+xml"
    assert notify.headers.get("Contact")
    assert str(notify.uri) == "sip:alice@127.0.0.1:5070"
    assert _basic(notify.body) == "closed"  # nobody published, not registered: a valid closed doc
    assert bed.usage()["subscriptions"] == 1



def test_refresh_in_dialog_to_the_server_contact_rearms_and_notifies(bed: PresenceBed):
    st = bed.subscribe("alice", "bob", expires=600)
    bed.answer_notifies()
    bed.h.advance(500)
    bed.refresh(st, 600)
    resp = bed.net.last_response()
    assert resp.status == 200 and resp.headers.get("Expires") == "600"
    notifies = bed.notifies()
    assert len(notifies) == 2
    assert notifies[1].cseq.seq == notifies[0].cseq.seq + 1
    assert notifies[1].headers.get("Subscription-State") == "active;expires=600"
    bed.answer_notifies()
    bed.h.advance(599)  # the first expiry time has passed: the refresh moved it
    assert len(bed.notifies()) == 2


def test_unsubscribe_sends_final_terminated_notify_and_ends_the_dialog(bed: PresenceBed):
    st = bed.subscribe("alice", "bob")
    bed.answer_notifies()
    bed.refresh(st, 0)
    assert bed.net.last_response().status == 200
    final = bed.notifies()[-1]
    assert final.headers.get("Subscription-State") == "terminated"
    assert final.body  # the last state, still a valid document
    assert st.dialog in bed.net.ended_dialogs
    assert bed.h.root().cmp["subs"] == {}
    assert len(bed.h.entities()) == 1  # the child is gone, the presentity stays


def test_expiry_sends_terminated_timeout(bed: PresenceBed):
    st = bed.subscribe("alice", "bob", expires=120)
    bed.answer_notifies()
    bed.h.advance(121)
    final = bed.notifies()[-1]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert st.dialog in bed.net.ended_dialogs
    assert bed.usage()["subscriptions_expired"] == 1


def test_expires_below_minimum_gets_423_with_min_expires(bed: PresenceBed):
    bed.subscribe("alice", "bob", expires=10)
    resp = bed.net.last_response()
    assert resp.status == 423 and resp.headers.get("Min-Expires") == "60"
    assert bed.notifies() == []


def test_no_expires_means_3600_and_long_ones_are_capped():
    bed = PresenceBed({"max_expires": 7200})
    try:
        bed.subscribe("alice", "bob", expires=None)
        assert bed.net.last_response().headers.get("Expires") == "3600"
        bed.subscribe("carol", "bob", expires=100000)
        assert bed.net.last_response().headers.get("Expires") == "7200"
    finally:
        bed.close()


def test_accept_without_pidf_gets_406_and_wildcards_are_fine(bed: PresenceBed):
    bed.subscribe("alice", "bob", accept="text/plain")
    assert bed.net.last_response().status == 406
    bed.subscribe("alice", "bob", accept="application/*")
    assert bed.net.last_response().status == 200


def test_unknown_package_is_not_taken_so_the_ra_answers_489(bed: PresenceBed):
    bed.subscribe("alice", "bob", event="dialog")
    assert bed.net.responses == []  # no SBB took it: the RA answers 489 with Allow-Events
    assert bed.h.roots() == []


def test_notify_answered_481_removes_the_subscription(bed: PresenceBed):
    st = bed.subscribe("alice", "bob")
    bed.answer_notifies(481)
    assert st.dialog in bed.net.ended_dialogs
    assert bed.h.root().cmp["subs"] == {}
    assert bed.usage()["notifies_failed"] == 1


def test_one_notify_outstanding_and_changes_coalesce_to_the_newest(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    assert len(bed.notifies()) == 1  # not answered yet
    for basic in ("open", "closed", "open"):
        bed.publish("bob", pidf("sip:bob@example.test", basic), etag=None)
    assert len(bed.notifies()) == 1  # still one outstanding: nothing queued on the wire
    bed.answer_notifies()
    notifies = bed.notifies()
    assert len(notifies) == 2  # the three changes became one NOTIFY with the newest state
    assert _basic(notifies[1].body) == "open"


def test_unchanged_document_sends_no_notify(bed: PresenceBed):
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    bed.publish("bob", pidf("sip:bob@example.test", "open"))
    bed.answer_notifies()
    etag = bed.net.last_response().headers.get("SIP-ETag")
    before = len(bed.notifies())
    digest = bed.h.root().cmp["doc_digest"]
    assert digest and bed.h.root().cmp.get("document") is None  # composed when needed, not kept
    bed.publish("bob", None, etag=etag)  # a refresh changes nothing that watchers see
    assert bed.net.last_response().status == 200
    assert len(bed.notifies()) == before
    assert bed.h.root().cmp["doc_digest"] == digest


def test_notify_cseq_and_dialog_survive_in_persistent_dialog_state(bed: PresenceBed):
    st = bed.subscribe("alice", "bob")
    assert st.dialog.persistent
    bed.answer_notifies()
    bed.publish("bob", pidf("sip:bob@example.test"))
    state = st.dialog.to_state()
    assert state["local_seq"] == 2 and state["remote_target"] == "sip:alice@127.0.0.1:5070"


def test_initial_fetch_with_expires_zero_gets_one_terminated_notify(bed: PresenceBed):
    bed.subscribe("alice", "bob", expires=0)
    assert bed.net.last_response().status == 200
    [notify] = bed.notifies()  # exactly one, carrying the state
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert b"<basic>closed</basic>" in notify.body
    assert bed.h.root().cmp["subs"] == {}


def _null_activities(bed: PresenceBed) -> list:
    return [key for key in bed.h.container.activity_contexts if key[0] == "null"]


def test_a_watched_presentity_lives_as_long_as_its_subscriptions(bed: PresenceBed):
    """No null activity for a presentity nobody published: its child entities, attached to
    the subscription dialogs, keep it; the last unsubscribe removes it (and all its state)."""
    first = bed.subscribe("alice", "bob")
    second = bed.subscribe("carol", "bob")
    bed.answer_notifies()
    bed.net.end_transactions()  # the SUBSCRIBE and NOTIFY transactions end (Timer J / K)
    assert _null_activities(bed) == []
    assert len(bed.h.entities()) == 3  # the presentity and two subscriptions
    bed.refresh(first, 0)
    bed.answer_notifies()
    bed.net.end_transactions()
    assert len(bed.h.entities()) == 2
    bed.refresh(second, 0)
    bed.answer_notifies()
    bed.net.end_transactions()
    assert bed.h.entities() == []
    assert _live_activities(bed) == []  # nothing left behind but the service's own activity
    bed.subscribe("alice", "bob")  # a new SUBSCRIBE starts a new presentity
    assert len(bed.h.roots()) == 1 and bed.notifies()[-1].headers.get("Subscription-State") == "active;expires=600"


def test_a_refused_subscribe_leaves_no_presentity(bed: PresenceBed):
    bed.subscribe("alice", "bob", expires=10)  # below min_expires
    assert bed.net.last_response().status == 423
    bed.net.end_transactions()
    assert bed.h.entities() == [] and _live_activities(bed) == []


def _live_activities(bed: PresenceBed) -> list:
    """Activities other than the service activity every service has."""
    return [key for key in bed.h.container.activity_contexts if key[0] != "service"]


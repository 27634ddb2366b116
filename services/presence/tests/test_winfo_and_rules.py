"""Watcher information (RFC 3857/3858) and the ``rules`` authorization policy."""

from __future__ import annotations

from lxml import etree

from ..rules import rule_name
from ..winfo import WINFO_NS
from .conftest import PresenceBed, pidf

BOB = "sip:bob@example.test"
ALICE = "sip:alice@example.test"


def _watchers(body: bytes) -> dict[str, str]:
    root = etree.fromstring(body)
    return {w.text: w.get("status") for w in root.iter(f"{{{WINFO_NS}}}watcher")}


def _rules_bed() -> PresenceBed:
    return PresenceBed({"authorization": "rules"})


def _set_rule(bed: PresenceBed, owner: str, watcher: str, decision: str) -> None:
    table = bed.h.profile_table("presence_rules")
    with bed.h.transaction():
        table.create(rule_name(owner, watcher), owner=owner, watcher=watcher, decision=decision)


def test_winfo_subscriber_gets_full_document_then_updates(bed: PresenceBed):
    winfo = bed.subscribe("bob", "bob", event="presence.winfo")
    assert bed.net.last_response().status == 200
    first = bed.notifies(winfo.request.call_id)[-1]
    assert first.headers.get("Content-Type") == "application/watcherinfo+xml"
    assert first.headers.get("Event") == "presence.winfo"
    root = etree.fromstring(first.body)
    assert root.get("state") == "full" and root.get("version") == "0"  # RFC 3858 §4.2.1
    assert _watchers(first.body) == {}
    bed.answer_notifies()
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    update = bed.notifies(winfo.request.call_id)[-1]
    assert etree.fromstring(update.body).get("version") == "1"
    assert _watchers(update.body) == {ALICE: "active"}


def test_only_the_presentity_may_watch_its_watchers(bed: PresenceBed):
    bed.subscribe("alice", "bob", event="presence.winfo")
    assert bed.net.last_response().status == 403


def test_pending_watcher_gets_no_data_then_active_when_allowed():
    bed = _rules_bed()
    try:
        bed.publish("bob", pidf(BOB))
        st = bed.subscribe("alice", "bob")
        assert bed.net.last_response().status == 200
        [notify] = bed.notifies(st.request.call_id)
        assert notify.headers.get("Subscription-State").startswith("pending")
        assert notify.body == b""
        bed.answer_notifies()
        _set_rule(bed, BOB, ALICE, "allow")
        bed.h.advance(3)
        active = bed.notifies(st.request.call_id)[-1]
        assert active.headers.get("Subscription-State").startswith("active")
        assert b"<basic>open</basic>" in active.body
        assert bed.h.timers() == [] or all(t for t in bed.h.timers())  # the poll stops when nobody is pending
    finally:
        bed.close()


def test_blocked_watcher_is_terminated_politely():
    bed = _rules_bed()
    try:
        _set_rule(bed, BOB, ALICE, "block")
        st = bed.subscribe("alice", "bob")
        assert bed.net.last_response().status == 200
        final = bed.notifies(st.request.call_id)[-1]
        assert final.headers.get("Subscription-State") == "terminated;reason=rejected"
        assert st.dialog in bed.net.ended_dialogs
    finally:
        bed.close()


def test_blocked_watcher_in_neutral_mode_sees_closed():
    bed = PresenceBed({"authorization": "rules", "blocked_mode": "neutral"})
    try:
        bed.publish("bob", pidf(BOB))
        _set_rule(bed, BOB, ALICE, "block")
        st = bed.subscribe("alice", "bob")
        notify = bed.notifies(st.request.call_id)[-1]
        assert notify.headers.get("Subscription-State").startswith("active")
        assert b"<basic>closed</basic>" in notify.body
    finally:
        bed.close()


def test_pending_watcher_shows_in_winfo_and_the_owner_sees_itself_without_a_rule():
    bed = _rules_bed()
    try:
        own = bed.subscribe("bob", "bob")
        assert bed.notifies(own.request.call_id)[-1].headers.get("Subscription-State").startswith("active")
        winfo = bed.subscribe("bob", "bob", event="presence.winfo")
        bed.answer_notifies()
        bed.subscribe("alice", "bob")
        bed.answer_notifies()
        assert _watchers(bed.notifies(winfo.request.call_id)[-1].body) == {ALICE: "pending", BOB: "active"}
    finally:
        bed.close()

"""Watcher information (RFC 3857/3858) and the ``rules`` authorization policy."""

from __future__ import annotations

from lxml import etree

from slee.facilities.profile import ProfileTableActivity

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


def _set_rule(bed: PresenceBed, owner: str, watcher: str, decision: str | None) -> None:
    """Create, change or (``None``) remove a rule, as ``bin/slee presence allow|block|remove``."""
    table = bed.h.profile_table("presence_rules")
    name = rule_name(owner, watcher)
    with bed.h.transaction():
        if decision is None:
            table.remove(name)
        elif table.get(name) is None:
            table.create(name, owner=owner, watcher=watcher, decision=decision)
        else:
            table.update(name, decision=decision)
    bed.h.run_until_idle()


class WinfoView:
    """The watcher list as an RFC 3858 §4 subscriber rebuilds it from full and partial documents."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.watchers: dict[str, tuple[str, str, str]] = {}  # id -> (uri, status, event)
        self.states: list[str] = []

    def apply(self, body: bytes) -> None:
        root = etree.fromstring(body)
        version, state = int(root.get("version")), root.get("state")
        self.states.append(state)
        if state == "full":
            assert self.version is None or version > self.version
            self.watchers = {}
        else:
            assert version == self.version + 1, "a partial document must follow the previous version"
        self.version = version
        for w in root.iter(f"{{{WINFO_NS}}}watcher"):
            if w.get("status") == "terminated" and state == "partial":
                self.watchers.pop(w.get("id"), None)
            else:
                self.watchers[w.get("id")] = (w.text, w.get("status"), w.get("event"))

    def by_uri(self) -> dict[str, str]:
        return {uri: status for uri, status, _ in self.watchers.values()}


def _winfo_view(bed: PresenceBed, call_id: str) -> WinfoView:
    view = WinfoView()
    for notify in bed.notifies(call_id):
        if notify.body:
            view.apply(notify.body)
    return view


def test_winfo_subscriber_gets_full_document_then_partial_ones(bed: PresenceBed):
    winfo = bed.subscribe("bob", "bob", event="presence.winfo")
    assert bed.net.last_response().status == 200
    first = bed.notifies(winfo.request.call_id)[-1]
    assert first.headers.get("Content-Type") == "application/watcherinfo+xml"
    assert first.headers.get("Event") == "presence.winfo"
    root = etree.fromstring(first.body)
    assert root.get("state") == "full" and root.get("version") == "0"  # RFC 3858 §4: versions start at 0
    assert _watchers(first.body) == {}
    bed.answer_notifies()
    alice = bed.subscribe("alice", "bob")
    bed.answer_notifies()
    update = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
    assert (update.get("state"), update.get("version")) == ("partial", "1")
    [w] = update.iter(f"{{{WINFO_NS}}}watcher")
    assert (w.text, w.get("status"), w.get("event")) == (ALICE, "active", "subscribe")
    bed.subscribe("carol", "bob")
    bed.answer_notifies()
    update = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
    assert (update.get("state"), update.get("version")) == ("partial", "2")
    assert _watchers(etree.tostring(update)) == {"sip:carol@example.test": "active"}  # only what changed
    bed.refresh(alice, 0)  # alice unsubscribes
    bed.answer_notifies()
    gone = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
    assert (gone.get("state"), gone.get("version")) == ("partial", "3")
    [w] = gone.iter(f"{{{WINFO_NS}}}watcher")
    assert (w.text, w.get("status"), w.get("event")) == (ALICE, "terminated", "timeout")
    view = _winfo_view(bed, winfo.request.call_id)
    assert view.by_uri() == {"sip:carol@example.test": "active"}
    assert view.states == ["full", "partial", "partial", "partial"]


def test_winfo_changes_while_a_notify_is_outstanding_are_coalesced_into_one_partial(bed: PresenceBed):
    winfo = bed.subscribe("bob", "bob", event="presence.winfo")
    bed.answer_notifies()
    a = bed.subscribe("alice", "bob")  # winfo NOTIFY v1 outstanding from here
    bed.subscribe("carol", "bob")
    bed.refresh(a, 0)
    sent = [n for n in bed.notifies(winfo.request.call_id) if n.body]
    assert len(sent) == 2  # full v0, partial v1; the rest waits for v1's answer
    bed.answer_notifies()
    last = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
    assert (last.get("state"), last.get("version")) == ("partial", "2")
    assert _watchers(etree.tostring(last)) == {ALICE: "terminated", "sip:carol@example.test": "active"}
    assert _winfo_view(bed, winfo.request.call_id).by_uri() == {"sip:carol@example.test": "active"}


def test_winfo_refresh_sends_full_state_and_the_version_keeps_counting(bed: PresenceBed):
    winfo = bed.subscribe("bob", "bob", event="presence.winfo")
    bed.answer_notifies()
    bed.subscribe("alice", "bob")
    bed.answer_notifies()
    bed.refresh(winfo, 600)
    assert bed.net.last_response().status == 200
    bed.answer_notifies()
    full = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
    assert (full.get("state"), full.get("version")) == ("full", "2")  # versions are per subscription
    assert _watchers(etree.tostring(full)) == {ALICE: "active"}


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
        timers = len(bed.h.timers())
        _set_rule(bed, BOB, ALICE, "allow")
        bed.h.run_until_idle()  # the ProfileAdded event, no polling: no time passes
        active = bed.notifies(st.request.call_id)[-1]
        assert active.headers.get("Subscription-State").startswith("active")
        assert b"<basic>open</basic>" in active.body
        assert len(bed.h.timers()) == timers  # nothing polls the rules table
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
        assert _winfo_view(bed, winfo.request.call_id).by_uri() == {ALICE: "pending", BOB: "active"}
    finally:
        bed.close()


def test_rule_changes_reach_only_their_owner_and_winfo_reports_approval_and_rejection():
    bed = _rules_bed()
    try:
        winfo = bed.subscribe("bob", "bob", event="presence.winfo")
        carol_watch = bed.subscribe("alice", "carol")  # another presentity, also pending
        st = bed.subscribe("alice", "bob")
        bed.answer_notifies()
        carol_before = len(bed.notifies(carol_watch.request.call_id))
        _set_rule(bed, BOB, ALICE, "allow")
        bed.answer_notifies()
        assert bed.notifies(st.request.call_id)[-1].headers.get("Subscription-State").startswith("active")
        approved = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
        assert approved.get("state") == "partial"
        [w] = approved.iter(f"{{{WINFO_NS}}}watcher")
        assert (w.text, w.get("status"), w.get("event")) == (ALICE, "active", "approved")
        assert len(bed.notifies(carol_watch.request.call_id)) == carol_before  # carol's watcher untouched
        _set_rule(bed, BOB, ALICE, "block")  # revoked later: polite termination
        final = bed.notifies(st.request.call_id)[-1]
        assert final.headers.get("Subscription-State") == "terminated;reason=rejected"
        bed.answer_notifies()
        rejected = etree.fromstring(bed.notifies(winfo.request.call_id)[-1].body)
        [w] = rejected.iter(f"{{{WINFO_NS}}}watcher")
        assert (w.get("status"), w.get("event")) == ("terminated", "rejected")
        view = _winfo_view(bed, winfo.request.call_id)
        assert view.by_uri() == {}
        # nothing was kept attached to the rules table's activity
        assert not any(isinstance(a, ProfileTableActivity) for r in bed.h.roots() for a in r.attached)
    finally:
        bed.close()


def test_removing_an_allow_rule_makes_the_watcher_pending_again():
    bed = _rules_bed()
    try:
        bed.publish("bob", pidf(BOB))
        _set_rule(bed, BOB, ALICE, "allow")  # no presentity watched yet: nothing is left behind
        st = bed.subscribe("alice", "bob")
        bed.answer_notifies()
        assert b"<basic>open</basic>" in bed.notifies(st.request.call_id)[-1].body
        _set_rule(bed, BOB, ALICE, None)
        pending = bed.notifies(st.request.call_id)[-1]
        assert pending.headers.get("Subscription-State").startswith("pending") and pending.body == b""
    finally:
        bed.close()


def test_a_rule_for_a_presentity_nobody_uses_leaves_no_entity():
    bed = _rules_bed()
    try:
        _set_rule(bed, "sip:zoe@example.test", ALICE, "allow")
        assert bed.h.roots() == []
    finally:
        bed.close()

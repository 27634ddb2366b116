"""SLEE transactions: a handler that raises leaves no trace of its writes."""

import pytest

from slee import (
    AciAttribute,
    ActivityContextInterface,
    CmpField,
    EventTypeId,
    ProfileAttribute,
    ProfileSpec,
    Sbb,
    event_handler,
)
from slee.testing import FakeActivity, SbbHarness
from tests.slee.sbbs import PING, Ping

NOTE = EventTypeId("test.Note", "slee.tests", "1.0")


class Aci(ActivityContextInterface):
    visits = AciAttribute(int, default=0)
    shared = AciAttribute(str, alias="shared-note")


class Prefs(ProfileSpec):
    colour = ProfileAttribute(str, default="none")


class EverythingSbb(Sbb):
    """Touches every kind of transactional state, then fails when asked to."""

    count = CmpField(int, default=0)

    @event_handler(PING, initial=True)
    def on_ping(self, event, aci):
        self.count += 1
        typed = self.context.as_aci(aci, Aci)
        typed.visits += 1
        typed.shared = event.text
        self.context.timer_facility.set_timer_in(aci, 5.0)
        self.fire_event(NOTE, Ping(event.text), aci)
        self.context.naming.bind(aci, f"name-{event.text}")
        self.context.profile_facility.get_table("prefs").set("alice", "colour", event.text)
        null = self.context.null_activity_factory.create_null_activity()
        self.context.aci_for(null).attach(self.context.sbb_local_object)
        if event.text == "fail":
            raise RuntimeError("fail after writing")

    @event_handler(NOTE)
    def on_note(self, event, aci):
        pass


@pytest.fixture
def harness():
    h = SbbHarness(EverythingSbb, event_types=[NOTE], profile_tables={"prefs": Prefs})
    with h.transaction():
        h.profile_table("prefs").create("alice")
    yield h
    h.close()


def snapshot(h, act):
    aci = h.aci(act)
    typed = Aci(aci._ac, "EverythingSbb")
    root = h.roots()[0] if h.roots() else None
    return {
        "count": root.cmp.get("count") if root else None,
        "visits": typed.visits,
        "shared": typed.shared,
        "timers": len(h.timers()),
        "names": sorted(h.container.naming.names()),
        "colour": h.profile_table("prefs").get("alice")["colour"],
        "attached": len(root.attached) if root else 0,
        "activities": len(h.container.activity_contexts),
    }


def test_commit_makes_every_change_visible(harness):
    h = harness
    act = h.activity("a")
    h.fire(PING, Ping("one"), act)
    s = snapshot(h, act)
    assert s["count"] == 1 and s["visits"] == 1 and s["shared"] == "one"
    assert s["timers"] == 1 and s["names"] == ["name-one"] and s["colour"] == "one"
    assert s["attached"] == 2  # the activity and the null activity
    assert [f.event.text for f in h.fired_of(NOTE)] == ["one"]


def test_rollback_leaves_everything_untouched(harness):
    h = harness
    act = h.activity("a")
    h.fire(PING, Ping("one"), act)
    before = snapshot(h, act)
    fired_before = len(h.fired)
    outcome = h.fire(PING, Ping("fail"), act)
    assert outcome.failed == 1
    assert snapshot(h, act) == before
    assert len(h.fired) == fired_before  # the NOTE of the failed transaction was never queued
    assert "name-fail" not in h.container.naming.names()


def test_rolled_back_new_entity_does_not_exist():
    class Fragile(Sbb):
        x = CmpField(int)

        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            raise RuntimeError("always")

        def sbb_create(self):
            if getattr(self, "_fail_create", False):
                raise RuntimeError("create failed")

    with SbbHarness(Fragile) as h:
        Fragile._fail_create = True
        outcome = h.fire(PING, Ping(), h.activity())
        assert outcome.failed == 1 and h.entities() == []
        Fragile._fail_create = False
        h.fire(PING, Ping(), h.activity())
        assert len(h.entities()) == 1  # created, even though its handler then failed


def test_set_rollback_only_rolls_back_without_exception():
    class Vetoing(Sbb):
        count = CmpField(int, default=0)

        @event_handler(PING, initial=True, select=("address",))
        def on_ping(self, event, aci):
            self.count += 1
            if event.text == "veto":
                self.context.set_rollback_only()

    with SbbHarness(Vetoing) as h:
        h.fire(PING, Ping(), h.activity(), address="a@x")
        h.fire(PING, Ping("veto"), h.activity(), address="a@x")
        assert h.root().cmp["count"] == 1


def test_cmp_type_is_checked():
    class Typed(Sbb):
        count = CmpField(int)

        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            self.count = "three"

    with SbbHarness(Typed) as h:
        assert h.fire(PING, Ping(), h.activity()).failed == 1
        assert any("takes int" in m for m in h.traces.messages())


def test_a_cmp_value_the_store_cannot_encode_rolls_the_transaction_back():
    # NaN is not JSON: the entity's document cannot be written, so the transaction that
    # assigned it must not commit (no state in memory that could never be made durable).
    class Ratio(Sbb):
        ratio = CmpField(float, default=1.0)
        seen = CmpField(int, default=0)

        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            self.seen += 1
            self.ratio = float(event.text)

    with SbbHarness(Ratio) as h:
        act = FakeActivity("persistent")  # an entity on it has a store document
        h.container.start_activity("harness", act, act, persistent=True)
        assert h.fire(PING, Ping("0.5"), act).failed == 0
        outcome = h.fire(PING, Ping("nan"), act)
        assert outcome.failed == 1
        [entity] = h.entities()
        assert entity.cmp["ratio"] == 0.5 and entity.cmp["seen"] == 1
        assert h.fire(PING, Ping("0.25"), act).failed == 0  # the entity goes on
        [entity] = h.entities()
        assert entity.cmp["ratio"] == 0.25 and entity.cmp["seen"] == 2


def test_stored_entity_document_is_the_store_encoding_of_every_cmp_field():
    # The document is assembled from cached JSON of structured fields and scalars written
    # out each time: it must be exactly what the store's JSON encoder would produce.
    import json

    from slee.sbb import encode_cmp
    from slee.store import _json

    class Mixed(Sbb):
        text = CmpField(str)
        number = CmpField(int)
        ratio = CmpField(float)
        flag = CmpField(bool)
        blob = CmpField(bytes)
        table = CmpField(dict)
        items = CmpField(list)
        nothing = CmpField(str)

        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            self.text = 'quote " backslash \\\\ é \u2028 \x01 ' + event.text
            self.number = -12345678901234567890
            self.ratio = 0.1
            self.flag = event.text == "one"
            self.blob = b"\x00\xff"
            self.table = {"k": [1, "two", None], "n": {"deep": True}}
            self.items = [1.5, "x", False]
            self.nothing = None

    with SbbHarness(Mixed) as h:
        act = FakeActivity("persistent")
        h.container.start_activity("harness", act, act, persistent=True)
        for text in ("one", "two"):  # the second write reuses the cached structured fields
            assert h.fire(PING, Ping(text), act).failed == 0
            [entity] = h.container.entities.values()
            text_doc = "{" + entity._cmp_json() + "}"
            assert text_doc == _json.dumps({k: encode_cmp(v) for k, v in entity.cmp.items()})
            assert json.loads(text_doc)["flag"] is (text == "one")


def test_a_cmp_field_set_to_its_default_is_not_kept_and_a_rollback_brings_it_back():
    import json

    class Flags(Sbb):
        busy = CmpField(bool, default=False)
        retries = CmpField(int, default=-1)
        label = CmpField(str)

        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            if event.text == "set":
                self.busy, self.retries, self.label = True, 3, "x"
            else:  # back to the defaults; None where the default is -1 is a value, not the default
                self.busy, self.retries, self.label = False, None, None
                assert (self.busy, self.retries, self.label) == (False, None, None)
                if event.text == "fail":
                    raise RuntimeError("undo the reset")

    with SbbHarness(Flags) as h:
        act = FakeActivity("persistent")
        h.container.start_activity("harness", act, act, persistent=True)
        assert h.fire(PING, Ping("set"), act).failed == 0
        [entity] = h.container.entities.values()
        assert entity.cmp == {"busy": True, "retries": 3, "label": "x"}
        assert h.fire(PING, Ping("fail"), act).failed == 1
        assert entity.cmp == {"busy": True, "retries": 3, "label": "x"}  # rolled back
        assert h.fire(PING, Ping("reset"), act).failed == 0
        assert entity.cmp == {"retries": None}  # busy and label are at their defaults: dropped
        assert json.loads("{" + entity._cmp_json() + "}") == {"retries": None}
        view = h.root().cmp
        assert "busy" not in view and view["busy"] is False and view["label"] is None

"""Event routing: convergence names, priorities, masks, ordering and isolation."""

import asyncio

import pytest

from slee import ACTIVITY_END, CmpField, EventTypeId, Sbb, event_handler
from slee.events import Address
from slee.testing import SbbHarness
from tests.slee.sbbs import LOG, PING, CounterSbb, Ping, SelectorSbb

SLOW = EventTypeId("test.Slow", "slee.tests", "1.0")
TICK = EventTypeId("test.Tick", "slee.tests", "1.0")
ORDER: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def clear():
    LOG.clear()
    ORDER.clear()


def test_same_address_same_entity_different_address_different_entity():
    with SbbHarness(CounterSbb) as h:
        for who in ("alice", "bob", "alice", "alice"):
            h.fire(PING, Ping(), h.activity(), address=f"{who}@example.com")
        roots = {r.convergence_name: r.cmp["count"] for r in h.roots()}
        assert roots == {"addr=sip:alice@example.com": 3, "addr=sip:bob@example.com": 1}


def test_no_address_means_not_initial():
    with SbbHarness(CounterSbb) as h:
        outcome = h.fire(PING, Ping(), h.activity())
        assert outcome.initial_matches == 0 and outcome.delivered == 0
        assert h.roots() == []


def test_custom_selector_names_and_vetoes():
    with SbbHarness(SelectorSbb) as h:
        h.fire(PING, Ping("1"), h.activity(), address="a@one.test")
        h.fire(PING, Ping("2"), h.activity(), address="b@one.test")
        h.fire(PING, Ping("3"), h.activity(), address="c@two.test")
        h.fire(PING, Ping("4"), h.activity(), address="ignore@one.test")
        seen = {r.convergence_name: r.cmp["seen"] for r in h.roots()}
        assert seen == {"custom=one.test": ["1", "2"], "custom=two.test": ["3"]}


class Observer(Sbb):
    """Attached by the root to watch the same activity; masks Tick after the first one."""

    @event_handler(TICK)
    def on_tick(self, event, aci):
        ORDER.append(("observer", event.text))
        self.context.mask_event([TICK], aci)


class PrioritySbb(Sbb):
    from slee import ChildRelation

    low = ChildRelation(Observer, default_priority=-10)
    high = ChildRelation(Observer, default_priority=10)

    @event_handler(PING, initial=True)
    def on_ping(self, event, aci):
        aci.attach(self.low.create())
        aci.attach(self.high.create())

    @event_handler(TICK)
    def on_tick(self, event, aci):
        ORDER.append(("root", event.text))


def test_priority_order_and_event_masks():
    with SbbHarness(PrioritySbb, event_types=[TICK]) as h:
        act = h.activity("a")
        h.fire(PING, Ping(), act)
        h.fire(TICK, Ping("1"), act)
        h.fire(TICK, Ping("2"), act)
        # high child (10) before root (0) before low child (-10); both observers masked Tick
        assert ORDER == [("observer", "1"), ("root", "1"), ("observer", "1"), ("root", "2")]


class AsyncSbb(Sbb):
    seen = CmpField(list)

    @event_handler(SLOW, initial=True, select=("activity_context",))
    async def on_slow(self, event, aci):
        ORDER.append((aci.activity.name, f"start {event.text}"))
        await asyncio.sleep(float(event.text.split(":")[1]))
        self.seen = [*(self.seen or []), event.text]
        ORDER.append((aci.activity.name, f"end {event.text}"))


def test_events_on_one_activity_in_order_activities_interleave():
    with SbbHarness(AsyncSbb) as h:
        slow, fast = h.activity("slow"), h.activity("fast")
        c = h.container
        c.fire_event("harness", slow, SLOW, Ping("s1:0.05"))
        c.fire_event("harness", slow, SLOW, Ping("s2:0"))
        c.fire_event("harness", fast, SLOW, Ping("f1:0"))
        c.fire_event("harness", fast, SLOW, Ping("f2:0"))
        h.run_until_idle()
        slow_events = [what for act, what in ORDER if act == "slow"]
        assert slow_events == ["start s1:0.05", "end s1:0.05", "start s2:0", "end s2:0"]
        # the fast activity finished both events while s1 was still sleeping
        end_s1 = ORDER.index(("slow", "end s1:0.05"))
        assert ORDER.index(("fast", "end f2:0")) < end_s1
        assert sorted(r.cmp["seen"] for r in h.roots()) == [["f1:0", "f2:0"], ["s1:0.05", "s2:0"]]


class FailingSbb(Sbb):
    count = CmpField(int, default=0)

    @event_handler(PING, initial=True, select=("activity_context",))
    def on_ping(self, event, aci):
        if event.text == "fail":
            raise ValueError("bad event")
        self.count += 1


def test_failing_handler_does_not_affect_other_entities_or_activities():
    with SbbHarness(FailingSbb) as h:
        good, bad = h.activity("good"), h.activity("bad")
        h.fire(PING, Ping("ok"), good)
        assert h.fire(PING, Ping("fail"), bad).failed == 1
        h.fire(PING, Ping("ok"), good)
        h.fire(PING, Ping("ok"), bad)
        counts = sorted(r.cmp.get("count", 0) for r in h.roots())
        assert counts == [1, 2]


class EndWatcher(Sbb):
    @event_handler(PING, initial=True)
    def on_ping(self, event, aci):
        ORDER.append(("ping", event.text))

    @event_handler(ACTIVITY_END)
    def on_end(self, event, aci):
        ORDER.append(("end", aci.activity.name))


def test_activity_end_is_delivered_after_pending_events():
    with SbbHarness(EndWatcher) as h:
        act = h.activity("a")
        c = h.container
        c.fire_event("harness", act, PING, Ping("1"))
        c.fire_event("harness", act, PING, Ping("2"))
        c.end_activity(("harness", act))
        h.run_until_idle()
        assert ORDER == [("ping", "1"), ("ping", "2"), ("end", "a")]
        assert h.roots() == []
        from slee.errors import UnrecognizedActivityError

        with pytest.raises(UnrecognizedActivityError):
            c.fire_event("harness", act, PING, Ping("3"))


def test_a_selector_may_ask_for_existing_entities_only():
    from tests.slee.sbbs import ObserverSbb

    with SbbHarness(ObserverSbb) as h:
        act = h.activity()
        h.fire(PING, Ping("observe"), act, address="a@example.com")
        assert h.entities() == []  # nothing created
        h.fire(PING, Ping("create"), act, address="a@example.com")
        h.fire(PING, Ping("observe"), act, address="a@example.com")
        h.fire(PING, Ping("observe"), h.activity(), address="b@example.com")  # no entity for b
        assert [e.cmp["seen"] for e in h.entities()] == [["create", "observe"]]


def test_a_root_goes_when_its_last_attached_child_is_removed():
    """JSR 240 §5.8.3: the root's attachment count includes its children's; a child's
    removal that brings it to zero removes the root."""
    from types import SimpleNamespace

    from tests.slee.sbbs import DONE, SPAWN, HolderSbb

    with SbbHarness(HolderSbb) as h:
        first, other = h.activity(), h.activity()
        h.fire(SPAWN, SimpleNamespace(payload=other), first, address="a@example.com")
        h.end(first)  # the root is attached to nothing now; its child (on ``other``) keeps it
        assert len(h.entities()) == 2
        h.fire(DONE, Ping("bye"), other)  # the child removes itself
        assert h.entities() == []


NESTED: list[int] = []
HARNESS: list[SbbHarness] = []


class NestedDrainSbb(Sbb):
    """Drains the container from inside a handler, as an I/O callback run from one would."""

    @event_handler(PING, initial=True, select=("address",))
    def on_ping(self, event, aci):
        NESTED.append(HARNESS[0].container.drain())


def test_deliver_now_runs_queued_events_at_once_and_never_inside_a_delivery():
    NESTED.clear()
    with SbbHarness(NestedDrainSbb) as h:
        HARNESS[:] = [h]
        for who in ("alice", "bob"):
            h.container.fire_event("harness", h.activity(who), PING, Ping(), Address("sip", f"{who}@example.com"))
        assert h.roots() == []  # queued: the SIP RA calls deliver_now at the end of its read
        h.container.deliver_now()
        assert len(h.roots()) == 2
        assert NESTED == [0, 0]  # the drain inside a delivery delivered nothing
        h.container.deliver_now()  # nothing queued: nothing happens
        assert len(h.roots()) == 2

"""Timer, naming, null activities, profiles, alarms, usage and tracer facilities."""

import pytest

from slee import (
    ACTIVITY_END,
    TIMER_EVENT,
    AlarmLevel,
    CmpField,
    EventTypeId,
    ProfileAttribute,
    ProfileSpec,
    Sbb,
    TimerOptions,
    TimerPreserveMissed,
    TraceLevel,
    event_handler,
)
from slee.errors import NameAlreadyBoundError, ProfileError
from slee.testing import SbbHarness
from tests.slee.sbbs import ARM, PING, Ping, TimerSbb

CANCEL = EventTypeId("test.Cancel", "slee.tests", "1.0")


def test_one_shot_timer_fires_once_and_null_activity_ends_when_unreferenced():
    with SbbHarness(TimerSbb) as h:
        h.fire(ARM, Ping(""), h.activity(), address="a@x")
        root = h.root()
        assert len(h.timers()) == 1
        assert h.advance(29.9) == 0
        assert h.advance(0.2) == 1
        assert h.root().cmp["fired"] == 1
        assert h.timers() == []
        assert h.advance(100) == 0
        assert root.id in {e.id for e in h.entities()}


def test_periodic_timer_repetitions():
    with SbbHarness(TimerSbb) as h:
        h.fire(ARM, Ping("10"), h.activity(), address="a@x")
        fired = h.advance(30 + 10 + 10 + 50)
        assert fired == 3 and h.root().cmp["fired"] == 3
        events = [f.event for f in h.timer_events()]
        assert [e.remaining_repetitions for e in events] == [2, 1, 0]
        assert h.timers() == []


def test_missed_periodic_timer_preserve_last_and_all():
    class Periodic(Sbb):
        fired = CmpField(list)

        @event_handler(ARM, initial=True)
        def on_arm(self, event, aci):
            pm = TimerPreserveMissed(event.text)
            self.context.timer_facility.set_timer_in(aci, 1.0, period=1.0, repetitions=0,
                                                     options=TimerOptions(preserve_missed=pm))

        @event_handler(TIMER_EVENT)
        def on_timer(self, event, aci):
            self.fired = [*(self.fired or []), event.missed_repetitions]

    for mode, expected in (("last", [4]), ("all", [0, 0, 0, 0, 0])):
        with SbbHarness(Periodic) as h:
            h.fire(ARM, Ping(mode), h.activity())
            h.clock.advance(5.5)  # jump without running timers: they are late
            h.container.run_timers()
            h.run_until_idle()
            assert h.root().cmp["fired"] == expected, mode


def test_timer_cancel_in_transaction():
    class Canceller(Sbb):
        tid = CmpField(str)
        fired = CmpField(int, default=0)

        @event_handler(ARM, initial=True, select=("activity_context",))
        def on_arm(self, event, aci):
            self.tid = self.context.timer_facility.set_timer_in(aci, 5.0)

        @event_handler(CANCEL)
        def on_cancel(self, event, aci):
            self.context.timer_facility.cancel_timer(self.tid)
            if event.text == "fail":
                raise RuntimeError("undo the cancel")

        @event_handler(TIMER_EVENT)
        def on_timer(self, event, aci):
            self.fired += 1

    with SbbHarness(Canceller, event_types=[CANCEL]) as h:
        act = h.activity("a")
        h.fire(ARM, Ping(), act)
        h.fire(CANCEL, Ping("fail"), act)
        assert len(h.timers()) == 1  # the rolled-back cancel did nothing
        h.fire(CANCEL, Ping(), act)
        assert h.timers() == []
        assert h.advance(10) == 0 and h.root().cmp.get("fired", 0) == 0


def test_ending_activity_cancels_its_timers():
    class Armer(Sbb):
        @event_handler(ARM, initial=True)
        def on_arm(self, event, aci):
            self.context.timer_facility.set_timer_in(aci, 5.0)

        @event_handler(TIMER_EVENT)
        def on_timer(self, event, aci):
            raise AssertionError("must not fire")

    with SbbHarness(Armer) as h:
        act = h.activity("a")
        h.fire(ARM, Ping(), act)
        h.end(act)
        assert h.timers() == [] and h.advance(10) == 0


class Namer(Sbb):
    @event_handler(PING, initial=True, select=("activity_context",))
    def on_ping(self, event, aci):
        naming = self.context.naming
        if event.text == "bind":
            naming.bind(aci, "shared")
        elif event.text == "lookup":
            found = naming.lookup("shared")
            self.context.get_tracer().info("lookup=%s", found.activity.name if found else None)
        elif event.text == "unbind":
            naming.unbind("shared")
        elif event.text == "again":
            naming.bind(aci, "shared")

    @event_handler(ACTIVITY_END)
    def on_end(self, event, aci):
        pass


def test_naming_bind_lookup_unbind_and_end():
    with SbbHarness(Namer) as h:
        a, b = h.activity("a"), h.activity("b")
        h.fire(PING, Ping("bind"), a)
        h.fire(PING, Ping("lookup"), b)
        assert "lookup=a" in h.traces.messages()
        outcome = h.fire(PING, Ping("again"), b)
        assert outcome.failed == 1
        assert any(isinstance(r.exc_info[1], NameAlreadyBoundError) for r in h.traces.records if r.exc_info)
        h.fire(PING, Ping("unbind"), b)
        assert h.container.naming.names() == {}
        h.fire(PING, Ping("bind"), a)
        h.end(a)  # ending the activity drops its names
        assert h.container.naming.lookup("shared") is None


class Subscriber(ProfileSpec):
    addresses = ProfileAttribute(list, default=[])
    ha1 = ProfileAttribute(str)
    quota = ProfileAttribute(int, default=10, indexed=True)


class ProfileRouted(Sbb):
    hits = CmpField(int, default=0)

    @event_handler(PING, initial=True, select=("address_profile",))
    def on_ping(self, event, aci):
        self.hits += 1


def test_address_profile_selection_and_queries():
    with SbbHarness(ProfileRouted, profile_tables={"subscribers": Subscriber},
                    address_profile_table="subscribers") as h:
        table = h.profile_table("subscribers")
        table.create("alice", addresses=["alice@x", "alice@y"], ha1="aa")
        table.create("bob", addresses=["bob@x"], quota=5)
        for addr in ("alice@x", "alice@y", "bob@x", "carol@x"):
            h.fire(PING, Ping(), h.activity(), address=addr)
        assert sorted((r.convergence_name, r.cmp["hits"]) for r in h.roots()) == [
            ("profile=alice", 2), ("profile=bob", 1)]
        assert table.find("quota", 5) == ["bob"] and table.find("ha1", "aa") == ["alice"]
        with pytest.raises(ProfileError, match="takes int"):
            table.set("bob", "quota", "lots")
        with pytest.raises(ProfileError, match="no attribute"):
            table.set("bob", "nope", 1)
        table.remove("bob")
        assert table.find("quota", 5) == [] and "bob" not in table


def test_alarms_usage_and_trace_levels():
    with SbbHarness(ProfileRouted) as h:
        alarms = h.container.alarms.for_component("svc")
        aid = alarms.raise_alarm("overload", "udp", AlarmLevel.MAJOR, "queue above 1000")
        assert alarms.raise_alarm("overload", "udp", "MAJOR", "queue above 1000") == aid
        assert [a.alarm_type for a in h.container.alarms.list()] == ["overload"]
        assert alarms.clear_alarm("overload", "udp") and h.container.alarms.list() == []

        usage = h.container.usage.parameter_set("svc", "sbb")
        usage.increment("requests")
        usage.increment("requests", 2)
        usage.sample("latency", 3.0)
        usage.sample("latency", 1.0)
        snap = usage.snapshot()
        assert snap["counters"] == {"requests": 3}
        assert snap["samples"]["latency"] == {"count": 2, "min": 1.0, "max": 3.0, "mean": 2.0, "last": 1.0}

        reg = h.container.tracers
        tracer = reg.get("svc", "sip.register")
        reg.set_level("svc", "sip", "WARNING")
        assert not tracer.is_enabled(TraceLevel.INFO) and tracer.is_enabled(TraceLevel.SEVERE)
        reg.set_level("svc", "sip.register", TraceLevel.FINEST)
        assert tracer.is_finest_enabled
        with pytest.raises(ValueError, match="unknown trace level"):
            reg.set_level("svc", "root", "LOUD")


def test_null_activity_ends_when_nothing_attached():
    class Lonely(Sbb):
        @event_handler(PING, initial=True)
        def on_ping(self, event, aci):
            self.context.null_activity_factory.create_null_activity()

    with SbbHarness(Lonely) as h:
        before = len(h.container.activity_contexts)
        h.fire(PING, Ping(), h.activity("a"))
        h.run_until_idle()
        # only the harness activity "a" was added; the unreferenced null activity ended
        assert len(h.container.activity_contexts) == before + 1


def test_profile_changes_fire_events_after_commit():
    from slee import ActivityContextInterface
    from slee.events import PROFILE_ADDED, PROFILE_REMOVED, PROFILE_UPDATED

    seen: list[tuple[str, str, object, object]] = []

    class Watcher(Sbb):
        @event_handler(PROFILE_ADDED, initial=True, select=("address",))
        def on_added(self, event, aci: ActivityContextInterface):
            seen.append(("added", event.profile, None, event.after["quota"]))

        @event_handler(PROFILE_UPDATED, initial=True, select=("address",))
        def on_updated(self, event, aci):
            seen.append(("updated", event.profile, event.before["quota"], event.after["quota"]))

        @event_handler(PROFILE_REMOVED, initial=True, select=("address",))
        def on_removed(self, event, aci):
            seen.append(("removed", event.profile, event.before["quota"], None))

    with SbbHarness(Watcher, profile_tables={"subscribers": Subscriber}) as h:
        table = h.profile_table("subscribers")
        table.create("alice", quota=1)
        table.set("alice", "quota", 2)
        with pytest.raises(RuntimeError), h.transaction():
            table.set("alice", "quota", 99)
            raise RuntimeError("roll back: no event")
        table.remove("alice")
        h.run_until_idle()
        assert seen == [("added", "alice", None, 1), ("updated", "alice", 1, 2), ("removed", "alice", 2, None)]

"""SBBs used by the runtime tests: each records its lifecycle callbacks in a shared log."""

from __future__ import annotations

from dataclasses import dataclass

from slee import (
    ACTIVITY_END,
    TIMER_EVENT,
    ChildRelation,
    CmpField,
    EventTypeId,
    Sbb,
    event_handler,
    initial_event_selector,
    local_method,
)

PING = EventTypeId("test.Ping", "slee.tests", "1.0")
BOOM = EventTypeId("test.Boom", "slee.tests", "1.0")
SPAWN = EventTypeId("test.Spawn", "slee.tests", "1.0")
DONE = EventTypeId("test.Done", "slee.tests", "1.0")
ARM = EventTypeId("test.Arm", "slee.tests", "1.0")

LOG: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Ping:
    text: str = ""


class RecordingSbb(Sbb):
    """Logs every lifecycle callback with the entity it was for."""

    def _log(self, what: str) -> None:
        entity = self._slee_entity
        LOG.append((what, entity.id if entity is not None else "-"))

    def set_sbb_context(self, context):
        super().set_sbb_context(context)
        self._log("set_sbb_context")

    def unset_sbb_context(self):
        self._log("unset_sbb_context")

    def sbb_create(self):
        self._log("sbb_create")

    def sbb_post_create(self):
        self._log("sbb_post_create")

    def sbb_activate(self):
        self._log("sbb_activate")

    def sbb_passivate(self):
        self._log("sbb_passivate")

    def sbb_load(self):
        self._log("sbb_load")

    def sbb_store(self):
        self._log("sbb_store")

    def sbb_remove(self):
        self._log("sbb_remove")

    def sbb_exception_thrown(self, exception, event, aci):
        self._log("sbb_exception_thrown")

    def sbb_rolled_back(self, context):
        self._log("sbb_rolled_back")


class CounterSbb(RecordingSbb):
    """Counts pings per convergence name (address); Boom writes state, then raises."""

    count = CmpField(int, default=0)
    notes = CmpField(list)

    @event_handler(PING, initial=True, select=("address",))
    def on_ping(self, event, aci):
        self._log("on_ping")
        self.count += 1

    @event_handler(BOOM, initial=True, select=("address",))
    def on_boom(self, event, aci):
        self.count += 100
        aci.activity  # noqa: B018  (touch the ACI inside the failed transaction)
        self.context.timer_facility.set_timer_in(aci, 10.0)
        self.fire_event(DONE, Ping("from-boom"), aci)
        raise RuntimeError("boom")

    @event_handler(ACTIVITY_END)
    def on_end(self, event, aci):
        self._log("on_end")


class ChildSbb(RecordingSbb):
    value = CmpField(str)

    @local_method
    def remember(self, value: str) -> str:
        self.value = value
        return value.upper()

    @event_handler(DONE)
    def on_done(self, event, aci):
        self._log("child_on_done")


class ParentSbb(RecordingSbb):
    kids = ChildRelation(ChildSbb, default_priority=5)

    @event_handler(SPAWN, initial=True, select=("activity_context",))
    def on_spawn(self, event, aci):
        child = self.kids.create()
        aci.attach(child)
        assert child.remember(event.text) == event.text.upper()
        self.fire_event(DONE, Ping("done"), aci)

    @event_handler(DONE)
    def on_done(self, event, aci):
        self._log("parent_on_done")


class TimerSbb(Sbb):
    fired = CmpField(int, default=0)
    timer_id = CmpField(str)
    null = CmpField(object)

    @event_handler(ARM, initial=True, select=("address",))
    def on_arm(self, event, aci):
        null = self.context.null_activity_factory.create_null_activity()
        null_aci = self.context.aci_for(null)
        null_aci.attach(self.context.sbb_local_object)
        period = float(event.text) if event.text else None
        self.timer_id = self.context.timer_facility.set_timer_in(
            null_aci, 30.0, period=period, repetitions=3 if period else 1)

    @event_handler(TIMER_EVENT)
    def on_timer(self, event, aci):
        self.fired += 1


class SelectorSbb(Sbb):
    """Custom convergence: one entity per domain of the address; 'ignore' is not initial."""

    seen = CmpField(list)

    @initial_event_selector
    def by_domain(self, ies):
        if ies.address is None or "ignore" in ies.address.address:
            ies.initial_event = False
            return ies
        ies.select = set()
        ies.custom_name = ies.address.address.split("@")[1]
        return ies

    @event_handler(PING, initial=True, selector="by_domain")
    def on_ping(self, event, aci):
        self.seen = [*(self.seen or []), event.text]


class KeeperSbb(Sbb):
    """Keeps one CMP value of each kind a service stores (for packing while passivated)."""

    text = CmpField(str)
    number = CmpField(float)
    blob = CmpField(bytes)
    table = CmpField(dict)
    items = CmpField(list)
    where = CmpField(object)  # an ACI
    pair = CmpField(object)  # a tuple: comes back a list from JSON, so never packed
    seen = CmpField(list)
    kid = CmpField(object)  # an SBB local object
    kids = ChildRelation(ChildSbb)

    @event_handler(PING, initial=True, select=("address",))
    def on_ping(self, event, aci):
        if event.text == "fill":
            self.text, self.number, self.blob = "é ü", 0.1 + 0.2, b"\x00\xffbin"
            self.table = {"a": {"b": [1, None, True]}, "c": b"x"}
            self.items = ["x", 2, {"k": "v"}]
            self.where = aci
            self.kid = self.kids.create()
        elif event.text == "tuple":
            self.pair = (1, 2)
        self.seen = [*(self.seen or []), [type(self.blob).__name__, type(self.where).__name__,
                                         self.where is not None and self.where.activity is aci.activity,
                                         self.number]]


class ObserverSbb(Sbb):
    """Creates its entity on "create" pings only; "observe" pings reach an existing one."""

    seen = CmpField(list)

    @initial_event_selector
    def pick(self, ies):
        ies.select = {"address"}
        ies.create = ies.event.text != "observe"
        return ies

    @event_handler(PING, initial=True, select=("address",), selector="pick")
    def on_ping(self, event, aci):
        self.seen = [*(self.seen or []), event.text]


class LeavingChildSbb(Sbb):
    @event_handler(DONE)
    def on_done(self, event, aci):
        self.context.sbb_local_object.remove()


class HolderSbb(Sbb):
    """Its child, attached to another activity, is what keeps it (as a presentity's
    subscriptions keep it)."""

    kids = ChildRelation(LeavingChildSbb)

    @event_handler(SPAWN, initial=True, select=("address",))
    def on_spawn(self, event, aci):
        child = self.kids.create()
        self.context.aci_for(event.payload).attach(child)

"""Per-SBB unit-test harness: one SBB class, a real container, fakes around it.

The harness runs the real event router, SBB lifecycle and SLEE transactions in memory (no
store file, no sockets) with a ``FakeClock``. Tests fire events on fake activities, move the
clock, and assert on CMP fields, attachments, timers, events the SBB fired, child entities
and whatever the SBB sent through the fake RA providers the test hands in::

    h = SbbHarness(CounterSbb)
    call = h.activity("call-1")
    h.fire(PING, Ping(), call, address=Address("sip", "alice@example.com"))
    assert h.root().cmp["count"] == 1

``running_container`` is the integration-test counterpart: a started container with a real
SQLite store in a directory of the test's choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slee._entity import SbbDescriptor, SbbEntity
from slee._ids import EventTypeId, ResourceAdaptorId, ResourceAdaptorTypeId, SbbId, ServiceId
from slee.activity import ActivityContext, ActivityContextInterface
from slee.clock import FakeClock
from slee.container import Container, ContainerConfig, _QueuedEvent
from slee.events import ACTIVITY_END, TIMER_EVENT, Address, EventType
from slee.facilities.profile import ProfileSpec, ProfileTable
from slee.facilities.tracer import TraceLevel
from slee.ra.spi import EventOutcome, ResourceAdaptor, ResourceAdaptorType
from slee.sbb import Sbb

__all__ = [
    "EntityView",
    "FakeActivity",
    "FiredEvent",
    "SbbHarness",
    "TraceCapture",
    "running_container",
]

HARNESS_SERVICE = ServiceId("harness-service", "slee.testing", "1.0")
HARNESS_RA_TYPE = ResourceAdaptorType(ResourceAdaptorTypeId("harness", "slee.testing", "1.0"), {})


class _HarnessRa(ResourceAdaptor):
    """The RA entity behind every fake activity and every fake provider link."""

    ra_id = ResourceAdaptorId("harness", "slee.testing", "1.0")
    ra_type = HARNESS_RA_TYPE

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.provider: Any = None
        self.ended: list[Hashable] = []

    def get_provider(self) -> Any:
        return self.provider

    def activity_ended(self, handle: Hashable) -> None:
        self.ended.append(handle)


@dataclass(frozen=True, slots=True)
class FakeActivity:
    """A stand-in activity (a dialog, a transaction, ...) identified by name."""

    name: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class FiredEvent:
    """An event some SBB fired (or a timer produced) while the harness ran."""

    event_type: EventTypeId
    event: Any
    activity_context_id: str
    activity: Any
    address: Address | None


class CmpView(dict):
    """An entity's CMP fields as stored: a field at its default is not kept (``CmpField``
    drops it), so it is absent here, but ``view["name"]`` still gives its default."""

    def __init__(self, values: dict[str, Any], fields: dict[str, Any]) -> None:
        super().__init__(values)
        self._fields = fields

    def __missing__(self, name: str) -> Any:
        field = self._fields.get(name)
        if field is None:
            raise KeyError(name)
        return field.default_value()


@dataclass(slots=True)
class EntityView:
    """A read-only snapshot of an SBB entity for assertions."""

    id: str
    sbb: SbbId
    cmp: dict[str, Any]
    attached: list[Any]  # activity objects (FakeActivity, NullActivity, ...)
    children: dict[str, list[str]]
    priority: int
    convergence_name: str | None
    parent_id: str | None
    obj: Sbb | None


class TraceCapture(logging.Handler):
    """Collects tracer output so tests can assert on what an SBB traced."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, min_level: int = 0) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= min_level]


@dataclass
class SbbHarness:
    """Instantiate one SBB class (as a service's root) in an in-memory container."""

    sbb_class: type[Sbb]
    providers: dict[str, Any] = field(default_factory=dict)
    event_types: Iterable[EventTypeId] = ()
    profile_specs: Iterable[type[ProfileSpec]] = ()
    profile_tables: dict[str, type[ProfileSpec]] = field(default_factory=dict)
    address_profile_table: str | None = None
    priority: int = 0
    service_id: ServiceId = HARNESS_SERVICE
    config: dict[str, Any] = field(default_factory=dict)
    start_time: float = 1_700_000_000.0

    def __post_init__(self) -> None:
        self.clock = FakeClock(self.start_time)
        # no idle sweep on the real clock: tests see passivation only when they ask for it
        self.container = Container(clock=self.clock, config=ContainerConfig(ready_idle_s=0))
        self.loop = asyncio.new_event_loop()
        self.fired: list[FiredEvent] = []
        self.outcomes: list[EventOutcome] = []
        self.traces = TraceCapture()
        self._activity_names = itertools.count(1)  # not the count of live activities: they end
        logging.getLogger("slee.trace").addHandler(self.traces)
        logging.getLogger("slee.trace").setLevel(1)
        self.container.tracers.default_level = TraceLevel.FINEST
        c = self.container
        c.install_ra(_HarnessRa)
        for eid in self._referenced_event_types(self.sbb_class) | set(self.event_types):
            if eid not in c.event_types:
                c.install_event_type(EventType(eid, None, None))
        self._activities = c.create_ra_entity("harness", _HarnessRa.ra_id)
        links: dict[str, str] = {}
        for link, provider in self.providers.items():
            entity = c.create_ra_entity(f"link:{link}", _HarnessRa.ra_id)
            entity.ra.provider = provider
            links[link] = entity.name
        for spec in self.profile_specs:
            c.profiles.register_spec(spec)
        for table, spec in self.profile_tables.items():
            c.profiles.register_spec(spec)
            c.profiles.create_table(table, spec)
        self.descriptor: SbbDescriptor = c.describe(self.sbb_class)
        self.service = c.install_service(self.service_id, self.descriptor, default_priority=self.priority,
                                         ra_links=links, address_profile_table=self.address_profile_table,
                                         config=self.config)
        original = c._enqueue

        def recording_enqueue(ac: ActivityContext, item: _QueuedEvent) -> None:
            if not getattr(self, "_firing", False) and item.event_type is not ACTIVITY_END:
                self.fired.append(FiredEvent(item.event_type, item.event, ac.id, ac.activity, item.address))
            original(ac, item)

        c._enqueue = recording_enqueue  # type: ignore[method-assign]
        c.activate_service(self.service_id)
        self.run_until_idle()
        self.fired.clear()

    @staticmethod
    def _referenced_event_types(cls: type[Sbb]) -> set[EventTypeId]:
        out: set[EventTypeId] = set()
        todo, seen = [cls], set()
        while todo:
            klass = todo.pop()
            if klass in seen:
                continue
            seen.add(klass)
            for name in dir(klass):
                for spec in getattr(getattr(klass, name, None), "__slee_handlers__", ()):
                    out.add(spec.event_type)
            from slee.sbb import ChildRelation

            for attr in vars(klass).values():
                if isinstance(attr, ChildRelation) and isinstance(attr.child, type):
                    todo.append(attr.child)
        return out

    # -- driving ------------------------------------------------------------------------
    def activity(self, name: str | None = None, payload: Any = None) -> FakeActivity:
        """Start a fake activity (like an RA would) and return it."""
        act = FakeActivity(name or f"activity-{next(self._activity_names)}", payload)
        self.container.start_activity("harness", act, act)
        return act

    def activity_for(self, activity: Any) -> Any:
        """Start ``activity`` (any hashable object, e.g. a SIP server transaction) as an
        activity of the harness RA, if it is not one yet; returns it for ``fire``."""
        if ("harness", activity) not in self.container.activity_contexts:
            self.container.start_activity("harness", activity, activity)
        return activity

    def fire(self, event_type: EventTypeId, event: Any, activity: Any = None, *,
             address: Address | str | None = None) -> EventOutcome:
        """Fire an event as the RA would, run the router until idle, return the outcome."""
        if activity is None:
            activity = self.activity()
        if isinstance(address, str):
            address = Address("sip", address)
        outcome: list[EventOutcome] = []
        self._firing = True
        try:
            self.container.fire_event("harness", activity, event_type, event, address, outcome.append)
        finally:
            self._firing = False
        self.run_until_idle()
        if not outcome:
            raise AssertionError(f"event {event_type} was not processed (is a handler blocked?)")
        self.outcomes.append(outcome[0])
        return outcome[0]

    def end(self, activity: FakeActivity) -> None:
        """End a fake activity: ActivityEndEvent is delivered, then everything detaches."""
        self.container.end_activity(("harness", activity))
        self.run_until_idle()

    def advance(self, seconds: float) -> int:
        """Move the fake clock and deliver every timer that fell due; returns timers fired."""
        target = self.clock.now() + seconds
        fired = 0
        while True:
            nxt = self.container.timers.next_deadline()
            if nxt is None or nxt > target:
                break
            self.clock.set(max(nxt, self.clock.now()))
            fired += self.container.run_timers()
            self.run_until_idle()
        self.clock.set(target)
        return fired

    def run_until_idle(self, timeout: float = 5.0) -> None:
        ok = self.loop.run_until_complete(self._idle(timeout))
        if not ok:
            raise AssertionError("the container did not become idle (a handler awaits forever?)")

    async def _idle(self, timeout: float) -> bool:
        c = self.container
        c._loop = asyncio.get_running_loop()
        try:
            return await c.wait_idle(timeout)
        finally:
            c._loop = None

    def transaction(self) -> Any:
        """A SLEE transaction for test code that calls transactional APIs directly."""
        return self.container.transaction()

    def close(self) -> None:
        logging.getLogger("slee.trace").removeHandler(self.traces)
        self.loop.close()

    def __enter__(self) -> SbbHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inspecting -----------------------------------------------------------------------
    def entities(self, sbb: type[Sbb] | None = None) -> list[EntityView]:
        return [self._view(e) for e in self.container.entities.values()
                if sbb is None or e.descriptor.cls is sbb]

    def roots(self) -> list[EntityView]:
        return [self._view(self.container.entities[i]) for i in self.service.roots.values()]

    def root(self) -> EntityView:
        roots = self.roots()
        if len(roots) != 1:
            raise AssertionError(f"expected exactly one root SBB entity, found {len(roots)}")
        return roots[0]

    def entity(self, entity_id: str) -> EntityView:
        entity = self.container.entities.get(entity_id)
        if entity is None:
            raise AssertionError(f"no SBB entity {entity_id}")
        return self._view(entity)

    def _view(self, e: SbbEntity) -> EntityView:
        acts = [self.container.activity_contexts_by_id[a].activity for a in sorted(e.attached)
                if a in self.container.activity_contexts_by_id]
        return EntityView(e.id, e.descriptor.id, CmpView(e.cmp, e.descriptor.cmp_fields), acts, {k: list(v) for k, v in e.children.items()},
                          e.priority, e.convergence_name, e.parent_id, e.obj)

    def attached_to(self, activity: Any) -> list[EntityView]:
        for ac in self.container.activity_contexts_by_id.values():
            if ac.activity == activity:
                return [self._view(e) for e in ac.attached]
        return []

    def aci(self, activity: Any) -> ActivityContextInterface:
        for ac in self.container.activity_contexts_by_id.values():
            if ac.activity == activity:
                return ActivityContextInterface(ac, self.descriptor.id.name)
        raise AssertionError(f"{activity!r} is not a live activity")

    def timers(self) -> list[dict[str, Any]]:
        return self.container.timers.active()

    def fired_of(self, event_type: EventTypeId) -> list[FiredEvent]:
        return [f for f in self.fired if f.event_type == event_type]

    def timer_events(self) -> list[FiredEvent]:
        return self.fired_of(TIMER_EVENT)

    def profile_table(self, name: str) -> ProfileTable:
        return self.container.profiles.get_table(name)

    def usage(self, set_name: str | None = None) -> dict[str, int]:
        return dict(self.container.usage.parameter_set(self.service_id, self.descriptor.id, set_name).counters)

    def activity_ended(self, activity: FakeActivity) -> bool:
        return activity in self._activities.ra.ended


@contextlib.asynccontextmanager
async def running_container(data_dir: str | Path, *, store_url: str | None = None, clock: Any = None) -> AsyncIterator[Container]:
    """A started container with a real store (SQLite file in ``data_dir`` unless a URL is given)."""
    from slee.store import Store

    url = store_url or f"sqlite:///{Path(data_dir).resolve() / 'slee.db'}"
    store = Store.open(url)
    container = Container(store=store, clock=clock)
    await container.start()
    try:
        yield container
    finally:
        await container.stop()
        store.close()

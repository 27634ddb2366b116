"""The container: registries, activity contexts, SBB entities and the event router.

Event routing follows JSR 240 §8: an event fired on an activity is queued on its activity
context. Activities with queued events take turns on the event loop, one event at a time
per activity, so events of one activity are delivered in order while different activities
interleave. For each event, initial-event processing runs first for every ACTIVE service
whose root SBB declares the event initial (find or create the root entity by convergence
name and attach it), then the event goes to every attached SBB entity with a handler, in
priority order, skipping masked events; entities attached during delivery get it too.
Every delivery to an entity runs in its own SLEE transaction. Handlers may be ``async``:
the rest of that activity's delivery then continues in a task while other activities go on.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slee._entity import HandlerInfo, SbbDescriptor, SbbEntity, SbbObjectPool, describe_sbb
from slee._ids import EventTypeId, ResourceAdaptorId, SbbId, ServiceId
from slee.activity import (
    ActivityContext,
    ActivityContextInterface,
    ActivityContextNamingFacility,
    ActivityState,
    NullActivity,
    NullActivityFactory,
)
from slee.clock import Clock, SystemClock
from slee.cluster import WorkerInfo
from slee.errors import (
    ActivityAlreadyExistsError,
    ActivityIsEndingError,
    InvalidStateError,
    UnrecognizedActivityError,
    UnrecognizedEventError,
    ValidationError,
)
from slee.events import (
    ACTIVITY_END,
    SERVICE_STARTED,
    ActivityEndEvent,
    Address,
    EventType,
    EventTypeRegistry,
    ServiceStartedEvent,
)
from slee.facilities.alarm import AlarmFacility
from slee.facilities.profile import ProfileFacility
from slee.facilities.timer import TimerFacility
from slee.facilities.tracer import TracerRegistry
from slee.facilities.usage import UsageRegistry
from slee.ra.spi import (
    EventOutcome,
    RaEntity,
    RaEntityState,
    ResourceAdaptor,
    ResourceAdaptorContext,
    SleeEndpoint,
    check_config,
)
from slee.sbb import (
    InitialEventSelector,
    RolledBackContext,
    Sbb,
    SbbLocalObject,
    decode_cmp,
    encode_cmp,
)
from slee.service import Service, ServiceState
from slee.transaction import SleeTransaction, TransactionManager, current_transaction, is_delete

log = logging.getLogger("slee.container")
_IDLE_MARK = object()  # in the Ready LRU: where the last idle sweep stopped (Container._idle_sweep)
_IDLE_BATCH = 16  # entities an idle sweep passivates per loop turn (~10 us each warm, ~40 us cold)


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    drain_budget: int = 512  # events processed per loop turn before yielding to I/O
    pool_size: int = 64  # pooled SBB objects kept per SBB class
    max_ready_objects: int = 1_024  # SBB objects kept bound to entities; beyond, LRU ones passivate
    # Ready SBB objects unused for between this and twice this many seconds are passivated
    # (their entity's state packed, see SbbEntity.pack); 0 keeps them until the cap above.
    ready_idle_s: float = 1.0
    worker: WorkerInfo | None = None  # this container is one of several worker processes (slee.workers)
    durability: str = "write"  # when a commit is acknowledged (slee.store.DURABILITY)


@dataclass(slots=True)
class _QueuedEvent:
    event_type: EventTypeId
    event: Any
    address: Address | None
    callback: Callable[[EventOutcome], None] | None


@dataclass(frozen=True, slots=True)
class EventContext:
    """Passed as a third handler argument when the handler asks for it."""

    event_type: EventTypeId
    address: Address | None
    activity_context_id: str


def _keep_old_defaults(entity: SbbEntity, target: SbbDescriptor) -> None:
    """A CMP field at its default is not stored (CmpField.__set__). Before an entity moves to
    a version that declares another default for such a field, store the old default, so the
    value the entity had is what the new code reads."""
    for name, field in entity.descriptor.cmp_fields.items():
        new_field = target.cmp_fields.get(name)
        if name not in entity.cmp and new_field is not None and new_field.default_value() != field.default_value():
            entity.cmp[name] = field.default_value()
            entity.written(name)


class Container:
    """A SLEE: give it a store (or none, for tests) and a clock; install, activate, fire."""

    def __init__(self, *, store: Any = None, clock: Clock | None = None, config: ContainerConfig | None = None) -> None:
        self.config = config or ContainerConfig()
        self.clock: Clock = clock or SystemClock()
        self.store = store
        self._committer: Any = None
        self.event_types = EventTypeRegistry()
        self.tracers = TracerRegistry()
        self.alarms = AlarmFacility(self.clock)
        self.usage = UsageRegistry()
        self.transactions = TransactionManager(self._write_sink if store is not None else None)
        self.transactions.on_error = self._trace_error
        self.transactions.on_store_result = self._store_result
        self._store_failing = False
        self.timers = TimerFacility(self)
        self.profiles = ProfileFacility(self)
        self.naming = ActivityContextNamingFacility(self)
        self.null_activity_factory = NullActivityFactory(self)
        self.pool = SbbObjectPool(self, self.config.pool_size)
        self._ready_lru: OrderedDict[Any, SbbEntity | None] = OrderedDict()  # and one _IDLE_MARK
        self._idle_handle: asyncio.Handle | None = None

        self.services: dict[ServiceId, Service] = {}
        self._initial: dict[EventTypeId, list[tuple[Service, HandlerInfo]]] = {}
        self.entities: dict[str, SbbEntity] = {}
        self.activity_contexts: dict[tuple[Any, Hashable], ActivityContext] = {}
        self.activity_contexts_by_id: dict[str, ActivityContext] = {}
        # id(activity object) -> its AC, for activities that are not their own handle (null
        # and service activities, some RAs'); the others are found by (RA entity, activity)
        self._ac_by_activity: dict[int, ActivityContext] = {}
        self.ra_classes: dict[ResourceAdaptorId, type[ResourceAdaptor]] = {}
        self.ra_entities: dict[str, RaEntity] = {}
        self.service_listeners: list[Callable[[Service], None]] = []

        self._boot = os.urandom(4).hex()
        self._ids = itertools.count(1)
        self._ready: deque[ActivityContext] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self.backlog = 0
        self._draining = False
        self.delivered = 0
        self.failed = 0
        self._tracer = self.tracers.get("slee", "router")

    # ==================================================================================
    # run
    # ==================================================================================
    async def start(self) -> None:
        """Bind to the running loop; from now on fired events are delivered by the loop."""
        self._loop = asyncio.get_running_loop()
        if self.store is not None and self._committer is None:
            from slee.store import GroupCommitter

            self._committer = GroupCommitter(self.store, loop=self._loop, durability=self.config.durability)
        if self._ready:
            self._schedule_drain()
        self._rearm_timer()
        if self.config.ready_idle_s > 0 and self._idle_handle is None:
            self._idle_handle = self._loop.call_later(self.config.ready_idle_s, self._idle_sweep,
                                                      context=contextvars.Context())

    def _idle_sweep(self) -> None:
        """Passivate the Ready objects not used since the last sweep.

        A marker sits in the LRU where the last sweep left it; every entity still in front of
        it has not been used since (use moves an entity to the end). An entity between two
        events of its own seconds apart (a subscription between refreshes) then costs its
        packed state instead of an unpacked one plus an SBB object. At most ``_IDLE_BATCH``
        per loop turn (packing one takes 10-40 us): a second's worth of entities at once
        would stall the loop for milliseconds.
        """
        lru = self._ready_lru
        loop = self._loop
        if not self._tasks and _IDLE_MARK in lru:  # async deliveries in flight: next time
            for _ in range(_IDLE_BATCH):
                key = next(iter(lru))
                if key is _IDLE_MARK:
                    break
                entity = lru.pop(key)
                if entity is not None and not entity.removed:
                    self._passivate_one(entity)
            else:
                if next(iter(lru)) is not _IDLE_MARK and loop is not None and not loop.is_closed():
                    self._idle_handle = loop.call_soon(self._idle_sweep, context=contextvars.Context())
                    return  # the rest after the I/O that waits
        lru.pop(_IDLE_MARK, None)
        lru[_IDLE_MARK] = None
        if loop is not None and not loop.is_closed():
            self._idle_handle = loop.call_later(self.config.ready_idle_s, self._idle_sweep,
                                                context=contextvars.Context())

    async def stop(self, timeout: float = 5.0) -> None:
        """Deactivate RA entities, let queued events finish, flush the store."""
        for entity in list(self.ra_entities.values()):
            if entity.state is RaEntityState.ACTIVE:
                try:
                    entity.ra.ra_stopping()
                except Exception as exc:
                    self._trace_error(f"RA entity {entity.name} failed to stop", exc)
        await self.wait_idle(timeout)
        for entity in list(self.ra_entities.values()):
            if entity.state is not RaEntityState.INACTIVE:
                try:
                    await entity.ra.ra_inactive()
                except Exception as exc:
                    self._trace_error(f"RA entity {entity.name} failed to deactivate", exc)
                entity.state = RaEntityState.INACTIVE
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if self._committer is not None:
            await self._committer.close()
            self._committer = None

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no events are queued or being delivered; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._ready:
                self.drain()
            if not self._ready and not self._tasks and not self._busy_acs():
                committer = self._committer
                if committer is None or committer.idle:
                    return True
                # Durable writes release acknowledgements, which may end activities and
                # queue events: idle only once nothing is left to write either.
                await committer.flush()
                continue
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0 if self._ready else 0.001)

    async def flush(self) -> None:
        """Wait until every store write handed to the group committer so far is durable."""
        if self._committer is not None:
            await self._committer.flush()

    def _busy_acs(self) -> bool:
        return self.backlog > 0

    def _schedule_drain(self) -> None:
        if self._drain_scheduled or self._loop is None:
            return
        self._drain_scheduled = True
        self._loop.call_soon(self._drain_soon, context=contextvars.Context())  # no caller's transaction

    def _drain_soon(self) -> None:
        self._drain_scheduled = False
        self.drain(self.config.drain_budget)
        if self._ready:
            self._schedule_drain()

    def deliver_now(self) -> None:
        """Deliver the events fired so far at once, instead of on the loop's next turn, and
        hand the store what they wrote. For an RA at the end of an I/O callback (never from
        an event handler): the events of one batch of datagrams are delivered together, and
        their writes still go to the store as one group."""
        if self._draining or not self._ready:
            return
        self.drain(self.config.drain_budget)
        if self._committer is not None:
            self._committer.dispatch_now()

    def drain(self, budget: int = 1 << 30) -> int:
        """Deliver queued events (one per activity per turn) until idle or ``budget`` spent."""
        if self._draining:
            return 0
        self._draining = True
        try:
            return self._drain(budget)
        finally:
            self._draining = False

    def _drain(self, budget: int) -> int:
        ready = self._ready
        done = 0
        while ready and done < budget:
            ac = ready.popleft()
            if ac.busy or not ac.queue:
                continue
            item = ac.queue.popleft()
            ac.busy = True
            done += 1
            pending = None
            try:
                pending = _Delivery(self, ac, item).run()
            except Exception as exc:  # a router bug must not wedge the activity
                self._trace_error(f"event delivery on {ac.id} failed", exc)
            if pending is not None:
                task = asyncio.ensure_future(self._finish_async(ac, pending))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._delivery_done(ac)
        return done

    async def _finish_async(self, ac: ActivityContext, pending: Any) -> None:
        try:
            await pending
        except Exception as exc:
            self._trace_error(f"async event delivery on {ac.id} failed", exc)
        finally:
            self._delivery_done(ac)
            if self._ready:
                self._schedule_drain()

    def _delivery_done(self, ac: ActivityContext) -> None:
        if len(self._ready_lru) > self.config.max_ready_objects and not self._tasks:
            self.passivate(len(self._ready_lru) - self.config.max_ready_objects)
        ac.busy = False
        self.backlog -= 1
        if ac.queue:
            self._ready.append(ac)
        else:
            ac.queue = None  # long-lived idle activities (one per registered user) stay small
            if ac.implicit_end:  # its last event may have been what kept it alive
                self._check_implicit_end(None, ac)

    # ==================================================================================
    # transactions and the store
    # ==================================================================================
    @contextmanager
    def transaction(self) -> Iterator[SleeTransaction]:
        """Run management or test code in a SLEE transaction (joins one that is active)."""
        outer = current_transaction.get()
        if outer is not None:
            yield outer
            return
        tm = self.transactions
        txn, token = tm.begin()
        try:
            yield txn
            self._before_commit(txn)
        except BaseException:
            tm.rollback(txn, token)
            raise
        tm.commit(txn, token)

    def _before_commit(self, txn: SleeTransaction) -> None:
        """sbb_store on every loaded entity, then remove roots left with no attachment."""
        seen: set[int] = set()
        for entity in txn.loaded:
            if id(entity) in seen or entity.removed or entity.obj is None:
                continue
            seen.add(id(entity))
            entity.obj.sbb_store()
        if txn.gc:
            for root in list(dict.fromkeys(txn.gc)):
                if not root.removed and not self._tree_attached(root):
                    self._remove_entity_tree(root)
            txn.gc.clear()

    def _write_sink(self, writes: list[tuple[str, str, Any]], on_durable: Callable[[BaseException | None], None]) -> None:
        from slee.store import Delete, Put

        changes = [Delete(ns, key) if is_delete(v) else Put(ns, key, v) for ns, key, v in writes]
        committer = self._committer
        if committer is None:  # not started yet (install/restore time): write synchronously
            try:
                self.store.apply(changes)
            except Exception as exc:
                on_durable(exc)
                return
            on_durable(None)
            return
        committer.submit(changes, on_done=on_durable)

    def _store_result(self, error: BaseException | None) -> None:
        """Raise the store alarm on a failed write; clear it on the next one that succeeds."""
        if error is not None and not self._store_failing:
            self._store_failing = True
            self.alarms.raise_alarm("slee", "store.write-failed", "store", "MAJOR",
                                    f"store writes fail ({error!r}); acknowledgements are withheld", error)
        elif error is None and self._store_failing:
            self._store_failing = False
            self.alarms.clear_alarm("slee", "store.write-failed", "store")

    def _system_writes(self) -> SleeTransaction:
        return SleeTransaction()

    def _flush_system_writes(self, txn: SleeTransaction) -> None:
        writes = txn._collect_writes()
        if writes and self.store is not None:
            self._write_sink(writes, lambda e: e and self._trace_error("store write", e))

    def _persist_ac(self, txn: Any, ac: ActivityContext) -> None:
        kind, key, state = "ra", None, None
        if isinstance(ac.activity, NullActivity):
            kind, key = "null", ac.activity.id
        elif ac.ra_entity is not None and ac.ra_entity in self.ra_entities:
            ra = self.ra_entities[ac.ra_entity].ra
            key = ra.handle_key(ac.handle)
            state = ra.activity_state(ac.handle, ac.activity)
        txn.put("ac", ac.id, {"kind": kind, "ra": ac.ra_entity, "key": key, "state": state,
                              "attrs": {k: encode_cmp(v) for k, v in ac.attributes.items()}})

    # ==================================================================================
    # installation
    # ==================================================================================
    def install_event_type(self, event_type: EventType) -> None:
        self.event_types.install(event_type)

    def install_ra(self, ra_cls: type[ResourceAdaptor]) -> None:
        """Make an RA class available (normally found through the pluggy entry points)."""
        owner = ra_cls.ra_type.id
        for eid, cls in ra_cls.ra_type.event_types.items():
            self.event_types.install(EventType(eid, cls, owner))
        self.ra_classes[ra_cls.ra_id] = ra_cls

    def describe(self, sbb_cls: type, sbb_id: SbbId | None = None) -> SbbDescriptor:
        sid = sbb_id or SbbId(sbb_cls.sbb_name or sbb_cls.__name__, sbb_cls.sbb_vendor or "unknown",
                              sbb_cls.sbb_version or "1.0")
        return describe_sbb(sbb_cls, sid, known_event=lambda e: e in self.event_types)

    def install_service(
        self,
        service_id: ServiceId,
        root: type[Sbb] | SbbDescriptor,
        *,
        default_priority: int = 0,
        ra_links: dict[str, str] | None = None,
        address_profile_table: str | None = None,
        deployable_unit: Any = None,
        config: dict[str, Any] | None = None,
    ) -> Service:
        if service_id in self.services:
            raise ValidationError(f"service {service_id} is already installed")
        if not -128 <= default_priority <= 127:
            raise ValidationError(f"service {service_id}: default priority {default_priority} is outside -128..127")
        descriptor = root if isinstance(root, SbbDescriptor) else self.describe(root)
        if not descriptor.initial_handlers:
            raise ValidationError(f"{descriptor.source}: root SBB {descriptor.id} of {service_id} declares no initial event")
        service = Service(service_id, descriptor, default_priority, dict(ra_links or {}), address_profile_table,
                          deployable_unit, config=dict(config or {}))
        self._collect_descriptors(descriptor, service.descriptors)
        self.services[service_id] = service
        return service

    def _collect_descriptors(self, d: SbbDescriptor, out: dict[str, SbbDescriptor]) -> None:
        if str(d.id) in out:
            return
        out[str(d.id)] = d
        for _rel, child in d.child_relations.values():
            if child is not None:
                self._collect_descriptors(child, out)

    def activate_service(self, service_id: ServiceId) -> None:
        service = self._service(service_id)
        if service.state is ServiceState.ACTIVE:
            raise InvalidStateError(f"service {service_id} is already ACTIVE")
        if service.state is ServiceState.STOPPING:
            raise InvalidStateError(f"service {service_id} is STOPPING; wait until it is INACTIVE")
        for link, entity in service.ra_links.items():
            if entity not in self.ra_entities:
                raise InvalidStateError(f"service {service_id}: RA link {link!r} names RA entity {entity!r}, which does not exist")
        self._set_state(service, ServiceState.ACTIVE)
        self._rebuild_initial()
        handle = ("service", str(service_id))
        if ("service", handle) not in self.activity_contexts:
            ac = self._new_ac("service", handle, service, None, ac_id=f"service/{service_id}")
            self.enqueue_event(ac, SERVICE_STARTED, ServiceStartedEvent(str(service_id)), None)

    def deactivate_service(self, service_id: ServiceId) -> None:
        service = self._service(service_id)
        if service.state is not ServiceState.ACTIVE:
            raise InvalidStateError(f"service {service_id} is {service.state.value}, not ACTIVE")
        self._set_state(service, ServiceState.STOPPING)
        self._rebuild_initial()
        key = ("service", ("service", str(service_id)))
        if key in self.activity_contexts:
            self.end_activity(key)
        self._check_service_stopped(service)

    def swap_services(self, old: ServiceId, new: ServiceId) -> None:
        """Deactivate ``old`` and activate ``new`` in one step (hot upgrade, Rhino style)."""
        old_service, new_service = self._service(old), self._service(new)
        if old_service.state is not ServiceState.ACTIVE:
            raise InvalidStateError(f"service {old} is {old_service.state.value}, not ACTIVE")
        if new_service.state is not ServiceState.INACTIVE:
            raise InvalidStateError(f"service {new} is {new_service.state.value}, not INACTIVE")
        self.activate_service(new)
        self.deactivate_service(old)

    def migrate_service(self, old: ServiceId, new: ServiceId) -> int:
        """Upgrade in place: the old version's SBB entities continue under the new version's
        code (same ids, CMP state, attachments, children, timers), new initial events go to
        the new version, and the old version is INACTIVE at once.

        For long-lived stateful services (presence, registrations) where draining would split
        one user's state over two versions. SBB classes are matched by SBB name; every SBB
        with live entities, and every child relation they use, must exist in the new version.
        Call it between event deliveries (no handler awaiting). Returns the entities moved.
        """
        old_service, new_service = self._service(old), self._service(new)
        if old_service.state is not ServiceState.ACTIVE:
            raise InvalidStateError(f"service {old} is {old_service.state.value}, not ACTIVE")
        if new_service.state is not ServiceState.INACTIVE:
            raise InvalidStateError(f"service {new} is {new_service.state.value}, not INACTIVE")
        if self._tasks:
            raise InvalidStateError("an asynchronous event handler is running; try again")
        by_name = {d.id.name: d for d in new_service.descriptors.values()}
        moving = [e for e in self.entities.values() if e.service is old_service]
        mapping: dict[str, SbbDescriptor] = {}
        for entity in moving:
            name = entity.descriptor.id.name
            target = by_name.get(name)
            if target is None:
                raise ValidationError(f"service {new} has no SBB named {name!r}, which has live entities in {old}; "
                                      "migration needs every such SBB (or upgrade without --migrate to drain)")
            missing = [r for r in entity.children if r not in target.child_relations]
            if missing:
                raise ValidationError(f"SBB {target.id} lacks child relation(s) {missing} that live "
                                      f"{name} entities use")
            mapping[name] = target
        self.passivate_entities(moving)  # old code's objects leave; new ones activate on demand
        with self.transaction() as txn:
            for entity in moving:
                target = mapping[entity.descriptor.id.name]
                _keep_old_defaults(entity, target)
                entity.service = new_service
                entity.descriptor = target
                txn.mark_dirty(entity)
            new_service.roots.update(old_service.roots)
            new_service.entity_count += len(moving)
            old_service.roots.clear()
            old_service.entity_count = 0
        self.activate_service(new)
        self.deactivate_service(old)  # no entities left: STOPPING -> INACTIVE at once
        return len(moving)

    def passivate_entities(self, entities: list[SbbEntity]) -> None:
        """Passivate the Ready objects of these entities (sbb_passivate, back to their pool)."""
        for entity in entities:
            self._ready_lru.pop(entity.id, None)
            self._passivate_one(entity)

    def _passivate_one(self, entity: SbbEntity) -> bool:
        """Ready -> Pooled for one entity's object; False if it had none."""
        obj = entity.obj
        if obj is None:
            return False
        try:
            obj.sbb_passivate()
        except Exception as exc:
            self._trace_error(f"{entity.descriptor.id}.sbb_passivate failed", exc)
        entity.obj = None
        self.pool.give_back(entity.descriptor, obj)
        entity.pack()
        return True

    def uninstall_service(self, service_id: ServiceId) -> None:
        service = self._service(service_id)
        if service.state is not ServiceState.INACTIVE:
            raise InvalidStateError(
                f"service {service_id} is {service.state.value} with {len(service.roots)} root SBB entities; "
                "deactivate it and wait until it is INACTIVE"
            )
        for descriptor in service.descriptors.values():
            self.pool.drain(descriptor)
        del self.services[service_id]
        self._rebuild_initial()

    def _service(self, service_id: ServiceId) -> Service:
        service = self.services.get(service_id)
        if service is None:
            raise InvalidStateError(f"no service {service_id} is installed")
        return service

    def _set_state(self, service: Service, state: ServiceState) -> None:
        service.state = state
        self._system_put("service-state", str(service.id), state.value)
        for listener in self.service_listeners:
            try:
                listener(service)
            except Exception as exc:
                self._trace_error("service listener failed", exc)

    def _system_put(self, ns: str, key: str, value: Any) -> None:
        txn = self._system_writes()
        txn.put(ns, key, value)
        self._flush_system_writes(txn)

    def _check_service_stopped(self, service: Service) -> None:
        if service.state is ServiceState.STOPPING and not service.roots:
            self._set_state(service, ServiceState.INACTIVE)

    def _rebuild_initial(self) -> None:
        table: dict[EventTypeId, list[tuple[Service, HandlerInfo]]] = {}
        for service in self.services.values():
            if service.state is not ServiceState.ACTIVE:
                continue
            for eid, info in service.root.initial_handlers.items():
                table.setdefault(eid, []).append((service, info))
        self._initial = table

    # ==================================================================================
    # RA entities
    # ==================================================================================
    def create_ra_entity(self, name: str, ra_id: ResourceAdaptorId, config: dict[str, Any] | None = None) -> RaEntity:
        if name in self.ra_entities:
            raise InvalidStateError(f"RA entity {name!r} already exists")
        ra_cls = self.ra_classes.get(ra_id)
        if ra_cls is None:
            known = ", ".join(str(r) for r in self.ra_classes) or "none"
            raise InvalidStateError(f"no resource adaptor {ra_id} is installed (installed: {known})")
        cfg = check_config(ra_cls, dict(config or {}))
        entity = RaEntity(name, ra_id, None, cfg)  # type: ignore[arg-type]
        context = ResourceAdaptorContext(name, ra_id, SleeEndpoint(self, entity), self, cfg)
        ra = ra_cls(context)
        ra.ra_verify_configuration(cfg)
        ra.ra_configure(cfg)
        entity.ra = ra
        self.ra_entities[name] = entity
        return entity

    async def activate_ra_entity(self, name: str) -> None:
        entity = self._ra_entity(name)
        if entity.state is RaEntityState.ACTIVE:
            raise InvalidStateError(f"RA entity {name!r} is already ACTIVE")
        await entity.ra.ra_active()
        entity.state = RaEntityState.ACTIVE

    async def deactivate_ra_entity(self, name: str, timeout: float = 5.0) -> None:
        entity = self._ra_entity(name)
        if entity.state is not RaEntityState.ACTIVE:
            raise InvalidStateError(f"RA entity {name!r} is {entity.state.value}, not ACTIVE")
        entity.state = RaEntityState.STOPPING
        entity.ra.ra_stopping()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(ac.ra_entity == name for ac in self.activity_contexts_by_id.values()) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await entity.ra.ra_inactive()
        entity.state = RaEntityState.INACTIVE

    async def reconfigure_ra_entity(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """Give an RA entity a new configuration; returns the checked configuration.

        An ACTIVE entity gets ``ra_config_update`` (e.g. the SIP RA rebinds its sockets and
        keeps its dialogs); an RA that cannot update live is deactivated, reconfigured and
        activated again.
        """
        entity = self._ra_entity(name)
        ra_cls = self.ra_classes[entity.ra_id]
        cfg = check_config(ra_cls, dict(config))
        entity.ra.ra_verify_configuration(cfg)
        if entity.state is RaEntityState.ACTIVE:
            try:
                result = entity.ra.ra_config_update(cfg)
                if inspect.isawaitable(result):
                    await result
            except NotImplementedError:
                await self.deactivate_ra_entity(name)
                entity.ra.context.config = cfg
                entity.ra.ra_configure(cfg)
                await self.activate_ra_entity(name)
        else:
            entity.ra.context.config = cfg
            entity.ra.ra_configure(cfg)
        entity.config = cfg
        entity.ra.context.config = cfg
        return cfg

    def remove_ra_entity(self, name: str) -> None:
        entity = self._ra_entity(name)
        if entity.state is not RaEntityState.INACTIVE:
            raise InvalidStateError(f"RA entity {name!r} is {entity.state.value}; deactivate it first")
        users = [str(s.id) for s in self.services.values() if name in s.ra_links.values()]
        if users:
            raise InvalidStateError(f"RA entity {name!r} is linked by services {', '.join(users)}")
        del self.ra_entities[name]

    def _ra_entity(self, name: str) -> RaEntity:
        entity = self.ra_entities.get(name)
        if entity is None:
            raise InvalidStateError(f"no RA entity {name!r}; entities: {', '.join(self.ra_entities) or 'none'}")
        return entity

    def _ra_provider(self, service: Service, link: str) -> Any:
        name = service.ra_links.get(link, link)
        entity = self.ra_entities.get(name)
        if entity is None:
            raise InvalidStateError(f"service {service.id}: no RA entity is bound to link {link!r}")
        return entity.ra.get_provider()

    def _ra_aci_factory(self, context: Any, link: str) -> Any:
        return lambda activity: self._aci_for_activity(activity, context.descriptor)

    # ==================================================================================
    # activities
    # ==================================================================================
    def _new_ac(self, owner: Any, handle: Hashable, activity: Any, ra_entity: str | None, *,
                persistent: bool = False, implicit_end: bool = False, ac_id: str | None = None) -> ActivityContext:
        key = (owner, handle)
        if key in self.activity_contexts:
            raise ActivityAlreadyExistsError(f"activity {handle!r} already started")
        ac = ActivityContext(self, ac_id or f"{owner}/{self._boot}-{next(self._ids)}", handle, activity, ra_entity,
                             persistent=persistent, implicit_end=implicit_end)
        self.activity_contexts[key] = ac
        self.activity_contexts_by_id[ac.id] = ac
        if handle is not activity:  # RA activities are usually their own handle: found by it
            self._ac_by_activity[id(activity)] = ac
        return ac

    def start_activity(self, ra_entity: str, handle: Hashable, activity: Any, *, persistent: bool = False,
                       implicit_end: bool = False) -> ActivityContext:
        """``implicit_end``: the activity ends by itself once no SBB is attached to it and it
        has no names, timers or queued events (as null activities do)."""
        ac = self._new_ac(ra_entity, handle, activity, ra_entity, persistent=persistent, implicit_end=implicit_end)
        if persistent:
            txn = current_transaction.get()
            if txn is not None:
                ac.touch(txn)
            else:
                w = self._system_writes()
                ac.persist(w)
                self._flush_system_writes(w)
        return ac

    def activity_changed(self, owner: str, handle: Hashable) -> None:
        """An RA's persistent activity changed state (e.g. a dialog's CSeq): persist it, in
        the current transaction if there is one."""
        ac = self.activity_contexts.get((owner, handle))
        if ac is None or not ac.persistent:
            return
        txn = current_transaction.get()
        if txn is not None:
            ac.touch(txn)
        else:
            w = self._system_writes()
            ac.persist(w)
            self._flush_system_writes(w)

    def _create_null_activity(self) -> NullActivity:
        txn = current_transaction.get()
        null_id = f"{self._boot}-{next(self._ids)}"
        activity = NullActivity(self, null_id)
        ac = self._new_ac("null", null_id, activity, None, persistent=True, implicit_end=True, ac_id=f"null/{null_id}")
        if txn is not None:
            ac.touch(txn)
            txn.record_undo(lambda: self._drop_ac(ac))
            txn.on_commit(lambda: self._check_implicit_end(None, ac))
        return activity

    def _drop_ac(self, ac: ActivityContext) -> None:
        ac.state = ActivityState.INVALID
        self.activity_contexts.pop(self._key_of(ac), None)
        self.activity_contexts_by_id.pop(ac.id, None)
        if self._ac_by_activity.get(id(ac.activity)) is ac:
            del self._ac_by_activity[id(ac.activity)]

    def _key_of(self, ac: ActivityContext) -> tuple[Any, Hashable]:
        if isinstance(ac.activity, NullActivity):
            return ("null", ac.handle)
        if ac.id.startswith("profile-table/"):
            return ("profile-table", ac.handle)
        if isinstance(ac.activity, Service):
            return ("service", ac.handle)
        return (ac.ra_entity, ac.handle)

    def end_activity(self, key: tuple[Any, Hashable]) -> None:
        """Start ending an activity: ActivityEndEvent is queued behind its pending events."""
        ac = self.activity_contexts.get(key)
        if ac is None:
            raise UnrecognizedActivityError(f"no activity {key[1]!r} of {key[0]!r}")
        if ac.ending_requested or ac.state is not ActivityState.ACTIVE:
            return
        # Events already queued are still delivered (and may attach SBBs); the activity
        # enters ENDING when its ActivityEndEvent comes up for delivery.
        ac.ending_requested = True
        self._enqueue(ac, _QueuedEvent(ACTIVITY_END, ActivityEndEvent(ac.id), None, None))

    def _check_implicit_end(self, txn: Any, ac: ActivityContext) -> None:
        if txn is not None:
            txn.on_commit(lambda: self._check_implicit_end(None, ac))
            return
        if (ac.implicit_end and not ac.is_ending and not ac.attached and not ac.names
                and not ac.timers and not ac.queue and not ac.busy):
            self.end_activity(self._key_of(ac))

    def _activity_ended(self, ac: ActivityContext) -> None:
        """After ActivityEndEvent: detach everything, drop names and timers, forget the AC."""
        if ac.attached or ac.names or ac.timers or ac.persistent:  # else (a SIP transaction): nothing to undo
            with self.transaction() as txn:
                for entity in list(ac.attached):
                    ac.detach(entity)
                self.naming._activity_ended(txn, ac)
                self.timers.cancel_for_activity(txn, ac.id, ac.timers)
                ac.timers = frozenset()
                if ac.persistent:
                    txn.delete("ac", ac.id)
        ac.state = ActivityState.INVALID
        self.activity_contexts.pop(self._key_of(ac), None)
        self.activity_contexts_by_id.pop(ac.id, None)
        if self._ac_by_activity.get(id(ac.activity)) is ac:
            del self._ac_by_activity[id(ac.activity)]
        if ac.ra_entity is not None:
            entity = self.ra_entities.get(ac.ra_entity)
            if entity is not None:
                try:
                    entity.ra.activity_ended(ac.handle)
                except Exception as exc:
                    self._trace_error(f"RA entity {ac.ra_entity} activity_ended failed", exc)

    def _aci(self, ac_id: str, descriptor: SbbDescriptor) -> ActivityContextInterface:
        return ActivityContextInterface(self.activity_contexts_by_id[ac_id], descriptor.id.name)

    def _aci_for_activity(self, activity: Any, descriptor: SbbDescriptor) -> ActivityContextInterface:
        ac = self._ac_by_activity.get(id(activity))
        if ac is None or ac.activity is not activity:
            ac = self._ac_by_own_handle(activity)
            if ac is None:
                raise UnrecognizedActivityError(f"{activity!r} is not a started activity")
        return ActivityContextInterface(ac, descriptor.id.name)

    def _ac_by_own_handle(self, activity: Any) -> ActivityContext | None:
        """The AC of an activity that an RA started as its own handle (a SIP dialog or
        transaction): one lookup per RA entity, where an index by id() cost every
        activity a dict entry."""
        try:
            hash(activity)
        except TypeError:
            return None
        contexts = self.activity_contexts
        for owner in self.ra_entities:
            ac = contexts.get((owner, activity))
            if ac is not None and ac.activity is activity:
                return ac
        return None

    def aci_for_handle(self, ra_entity: str, handle: Hashable) -> ActivityContextInterface:
        ac = self.activity_contexts.get((ra_entity, handle))
        if ac is None:
            raise UnrecognizedActivityError(f"no activity {handle!r} of {ra_entity!r}")
        return ActivityContextInterface(ac)

    # ==================================================================================
    # firing
    # ==================================================================================
    def fire_event(self, ra_entity: str, handle: Hashable, event_type: EventTypeId, event: Any,
                   address: Address | None = None, callback: Callable[[EventOutcome], None] | None = None) -> None:
        """An RA fires an event on one of its activities (JSR 240 SleeEndpoint.fireEvent)."""
        ac = self.activity_contexts.get((ra_entity, handle))
        if ac is None:
            raise UnrecognizedActivityError(f"no activity {handle!r} of RA entity {ra_entity!r}")
        if ac.is_ending:
            raise ActivityIsEndingError(f"activity {ac.id} is ending")
        if event_type not in self.event_types:
            raise UnrecognizedEventError(f"event type {event_type} is not installed")
        self._enqueue(ac, _QueuedEvent(event_type, event, address, callback))

    def enqueue_event(self, ac: ActivityContext, event_type: EventTypeId, event: Any, address: Address | None) -> None:
        self._enqueue(ac, _QueuedEvent(event_type, event, address, None))

    def fire_event_in_transaction(self, ac: ActivityContext, event_type: EventTypeId, event: Any,
                                  address: Address | None) -> None:
        """An SBB fires an event: it is queued if and when the transaction commits."""
        if ac.is_ending:
            raise ActivityIsEndingError(f"activity {ac.id} is ending; no event can be fired on it")
        if event_type not in self.event_types:
            raise UnrecognizedEventError(f"event type {event_type} is not installed")
        txn = current_transaction.get()
        item = _QueuedEvent(event_type, event, address, None)
        if txn is None:
            self._enqueue(ac, item)
        else:
            txn.on_commit(lambda: self._enqueue(ac, item))

    def _enqueue(self, ac: ActivityContext, item: _QueuedEvent) -> None:
        queue = ac.queue
        if queue is None:
            queue = ac.queue = deque()
        queue.append(item)
        self.backlog += 1
        if not ac.busy and len(queue) == 1:
            self._ready.append(ac)
            if not self._drain_scheduled and self._loop is not None:
                self._schedule_drain()

    # ==================================================================================
    # timers
    # ==================================================================================
    def _timer_armed(self, deadline: float) -> None:
        if self._timer_deadline is None or deadline < self._timer_deadline:
            self._rearm_timer()

    def _rearm_timer(self) -> None:
        loop = self._loop
        if loop is None:
            return
        deadline = self.timers.next_deadline()
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._timer_deadline = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.now())
            self._timer_handle = loop.call_later(delay, self._on_timer, context=contextvars.Context())

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._timer_deadline = None
        self.timers.fire_due(self.clock.now())
        self._rearm_timer()

    def run_timers(self) -> int:
        """Fire every timer due now (the test harness calls this after moving the clock)."""
        return self.timers.fire_due(self.clock.now())

    # ==================================================================================
    # SBB entities
    # ==================================================================================
    def _new_entity_id(self) -> str:
        return f"{self._boot}-{next(self._ids)}"

    def _register_entity(self, txn: SleeTransaction, entity: SbbEntity) -> None:
        service = entity.service
        self.entities[entity.id] = entity
        service.entity_count += 1
        if entity.convergence_name is not None:
            service.roots[entity.convergence_name] = entity.id

        def undo() -> None:
            self.entities.pop(entity.id, None)
            service.entity_count -= 1
            if entity.convergence_name is not None and service.roots.get(entity.convergence_name) == entity.id:
                del service.roots[entity.convergence_name]
            entity.removed = True
            self._ready_lru.pop(entity.id, None)
            if entity.obj is not None:
                self.pool.give_back(entity.descriptor, entity.obj)
                entity.obj = None

        txn.record_undo(undo)
        txn.mark_dirty(entity)

    def _create_root(self, service: Service, convergence_name: str, ac: ActivityContext) -> SbbEntity:
        """Initial-event processing made a new root entity: sbb_create, sbb_post_create, attach."""
        with self.transaction() as txn:
            entity = SbbEntity(self, self._new_entity_id(), service, service.root,
                               convergence_name=convergence_name, priority=service.default_priority)
            obj = self.pool.take(service.root, service)
            obj._slee_entity = entity
            entity.obj = obj
            self._ready_lru[entity.id] = entity
            self._register_entity(txn, entity)
            obj.sbb_create()
            obj.sbb_post_create()
            txn.loaded.append(entity)
            ac.attach(entity)
        return entity

    def _create_child(self, parent: SbbEntity, relation: str) -> SbbLocalObject:
        txn = current_transaction.get()
        if txn is None:
            raise InvalidStateError("child SBB entities are created inside a transaction")
        rel, descriptor = parent.descriptor.child_relations[relation]
        assert descriptor is not None
        entity = SbbEntity(self, self._new_entity_id(), parent.service, descriptor, parent_id=parent.id,
                           relation=relation, priority=rel.default_priority)
        obj = self.pool.take(descriptor, parent.service)
        obj._slee_entity = entity
        entity.obj = obj
        self._ready_lru[entity.id] = entity
        self._register_entity(txn, entity)
        obj.sbb_create()
        kids = parent.own_children().setdefault(relation, [])
        kids.append(entity.id)
        txn.record_undo(lambda: entity.id in kids and kids.remove(entity.id))
        txn.mark_dirty(parent)
        obj.sbb_post_create()
        txn.loaded.append(entity)
        return SbbLocalObject(self, entity.id)

    def _ready_object(self, entity: SbbEntity, txn: SleeTransaction) -> Sbb:
        """Bring the entity's SBB object to Ready (activate if needed) and sbb_load it."""
        obj = entity.obj
        if obj is None:
            obj = self.pool.take(entity.descriptor, entity.service)
            obj._slee_entity = entity
            entity.obj = obj
            obj.sbb_activate()
            self._ready_lru[entity.id] = entity
        else:
            lru = self._ready_lru
            if entity.id in lru:
                lru.move_to_end(entity.id)
            else:
                lru[entity.id] = entity
        obj.sbb_load()
        txn.loaded.append(entity)
        return obj

    def passivate(self, count: int | None = None) -> int:
        """Return the least recently used Ready SBB objects to the pool (sbb_passivate)."""
        lru = self._ready_lru
        done = 0
        while lru and (count is None or done < count):
            _, entity = lru.popitem(last=False)
            if entity is not None and not entity.removed and self._passivate_one(entity):
                done += 1
        return done

    def _local_call(self, entity: SbbEntity, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            txn = current_transaction.get()
            if txn is None:
                raise InvalidStateError("SBB local methods are called inside a transaction")
            obj = self._ready_object(entity, txn)
            return getattr(obj, name)(*args, **kwargs)

        return call

    def _entity_of(self, sbb_local: Any) -> SbbEntity:
        if isinstance(sbb_local, SbbLocalObject):
            return sbb_local._entity()
        if isinstance(sbb_local, Sbb) and sbb_local._slee_entity is not None:
            return sbb_local._slee_entity
        raise TypeError(f"{sbb_local!r} is not an SBB local object")

    def _tree_attached(self, entity: SbbEntity) -> bool:
        """Whether anything in the entity's tree is attached to an activity; stops at the
        first attachment (a presentity's tree has a child per watcher)."""
        if entity.attached:
            return True
        entities = self.entities
        for kids in entity.children.values():
            for cid in kids:
                child = entities.get(cid)
                if child is not None and self._tree_attached(child):
                    return True
        return False

    def _root_of(self, entity: SbbEntity) -> SbbEntity:
        while entity.parent_id is not None:
            parent = self.entities.get(entity.parent_id)
            if parent is None:
                break
            entity = parent
        return entity

    def _after_detach(self, txn: SleeTransaction, ac: ActivityContext, entity: SbbEntity) -> None:
        txn.gc.append(self._root_of(entity))
        self._check_implicit_end(txn, ac)

    def _remove_entity_tree(self, entity: SbbEntity) -> None:
        """Remove an entity and its descendants, children first (sbb_remove on each)."""
        txn = current_transaction.get()
        if txn is None:
            with self.transaction():
                self._remove_entity_tree(entity)
            return
        if entity.removed:
            return
        for kids in list(entity.children.values()):
            for cid in list(kids):
                child = self.entities.get(cid)
                if child is not None:
                    self._remove_entity_tree(child)
        obj = self._ready_object(entity, txn)
        obj.sbb_remove()
        for ac_id in list(entity.attached):
            ac = self.activity_contexts_by_id.get(ac_id)
            if ac is not None and entity in ac.attached:
                ac.gen += 1
                ac.attached.remove(entity)
                masks = entity.masks.get(ac_id)

                def reattach(ac: ActivityContext = ac, masks: Any = masks) -> None:
                    ac._insert(entity)
                    if masks is not None:
                        entity.own_masks()[ac.id] = masks

                txn.record_undo(reattach)
                self._check_implicit_end(txn, ac)
        attached = set(entity.attached)
        entity.attached.clear()
        parent = self.entities.get(entity.parent_id) if entity.parent_id else None
        if parent is not None and entity.relation is not None:
            kids = parent.children.get(entity.relation, [])
            if entity.id in kids:
                index = kids.index(entity.id)
                kids.remove(entity.id)
                txn.record_undo(lambda: kids.insert(index, entity.id))
                txn.mark_dirty(parent)
            if attached:  # the tree's attachment count fell: the root may be left with none (§5.8.3)
                txn.gc.append(self._root_of(parent))
        service = entity.service
        self.entities.pop(entity.id, None)
        service.entity_count -= 1
        conv = entity.convergence_name
        if conv is not None and service.roots.get(conv) == entity.id:
            del service.roots[conv]
        entity.removed = True

        def undo() -> None:
            entity.removed = False
            entity.attached.update(attached)
            self.entities[entity.id] = entity
            service.entity_count += 1
            if conv is not None:
                service.roots[conv] = entity.id

        txn.record_undo(undo)
        txn.mark_dirty(entity)

        def release() -> None:
            self._ready_lru.pop(entity.id, None)
            if entity.obj is not None:
                self.pool.give_back(entity.descriptor, entity.obj)
                entity.obj = None
            if entity.parent_id is None:
                self._check_service_stopped(service)

        txn.on_commit(release)

    def _set_priority(self, entity: SbbEntity, priority: int) -> None:
        if not -128 <= priority <= 127:
            raise ValueError("SBB priority must be within -128..127")
        txn = current_transaction.get()
        if txn is None:
            raise InvalidStateError("priorities are changed inside a transaction")
        old = entity.priority
        entity.priority = priority

        def resort() -> None:
            for ac_id in entity.attached:
                ac = self.activity_contexts_by_id.get(ac_id)
                if ac is not None:
                    ac.resort()

        resort()

        def undo() -> None:
            entity.priority = old
            resort()

        txn.record_undo(undo)
        txn.mark_dirty(entity)

    def _mask_events(self, sbb: Sbb, event_types: set[EventTypeId], aci: ActivityContextInterface) -> None:
        entity = sbb._slee_entity
        if entity is None:
            raise InvalidStateError("the SBB object is not in the Ready state")
        ac = aci._ac
        if entity not in ac.attached:
            raise InvalidStateError(f"SBB entity {entity.id} is not attached to {ac.id}")
        unknown = [e for e in event_types if e not in entity.descriptor.handlers]
        if unknown:
            raise ValueError(f"{entity.descriptor.id} has no handler for {', '.join(map(str, unknown))}")
        txn = current_transaction.get()
        if txn is None:
            raise InvalidStateError("event masks are set inside a transaction")
        old = entity.masks.get(ac.id)
        entity.own_masks()[ac.id] = set(event_types)

        def undo() -> None:
            if old is None:
                entity.own_masks().pop(ac.id, None)
            else:
                entity.own_masks()[ac.id] = old

        txn.record_undo(undo)
        txn.mark_dirty(entity)

    # ==================================================================================
    # restore after a restart
    # ==================================================================================
    def restore(self) -> dict[str, int]:
        """Reload profiles, persistent activities, naming, SBB entities and timers from the store.

        Call after the deployable units are installed (so services and specs exist) and the
        RA entities are created. Entities attached only to activities that did not survive
        (e.g. SIP transactions) are removed, as their root would be after ActivityEndEvent.
        """
        if self.store is None:
            return {}
        store = self.store
        counts = {"profiles": 0, "activities": 0, "entities": 0, "timers": 0, "names": 0}
        for name, doc in store.load("profile-table").items():
            table = self.profiles._restore_table(name, doc["spec"])
            if table is None:
                log.warning("profile table %s uses specification %s, which is not installed; not loaded", name, doc["spec"])
                continue
            for profile, values in store.load(f"profile/{name}").items():
                table._restore(profile, values)
                counts["profiles"] += 1
        drop = self._system_writes()
        for ac_id, doc in store.load("ac").items():
            ac = None
            if doc["kind"] == "null":
                null_id = doc["key"]
                ac = self._new_ac("null", null_id, NullActivity(self, null_id), None, persistent=True,
                                  implicit_end=True, ac_id=ac_id)
            elif doc["kind"] == "ra" and doc.get("ra") in self.ra_entities:
                ra = self.ra_entities[doc["ra"]].ra
                restored = ra.restore_activity(doc["key"], doc.get("state"))
                if restored is not None:
                    handle, activity = restored
                    ac = self._new_ac(doc["ra"], handle, activity, doc["ra"], persistent=True, ac_id=ac_id)
            if ac is None:
                drop.delete("ac", ac_id)
                continue
            if doc.get("attrs"):
                ac.attributes = {k: decode_cmp(v, self) for k, v in doc["attrs"].items()}
            counts["activities"] += 1
        for name, ac_id in store.load("naming").items():
            ac = self.activity_contexts_by_id.get(ac_id)
            if ac is None:
                drop.delete("naming", name)
            else:
                self.naming._restore(name, ac)
                counts["names"] += 1
        docs = store.load("sbb")
        for entity_id, doc in docs.items():
            service = self.services.get(ServiceId.parse(doc["service"]))
            descriptor = service.descriptors.get(doc["sbb"]) if service else None
            if service is None or descriptor is None:
                log.warning("SBB entity %s belongs to %s/%s, which is not installed; removed", entity_id, doc["service"], doc["sbb"])
                drop.delete("sbb", entity_id)
                continue
            entity = SbbEntity(self, entity_id, service, descriptor, parent_id=doc["parent"], relation=doc["relation"],
                               convergence_name=doc["conv"], priority=doc["priority"])
            if doc["children"]:
                entity.children = {k: list(v) for k, v in doc["children"].items()}
            entity.stored = True
            self.entities[entity_id] = entity
            service.entity_count += 1
            if entity.convergence_name is not None:
                service.roots[entity.convergence_name] = entity_id
            counts["entities"] += 1
        for entity_id, doc in docs.items():
            entity = self.entities.get(entity_id)
            if entity is None:
                continue
            entity.cmp = {k: decode_cmp(v, self, entity.descriptor.id.name) for k, v in doc["cmp"].items()}
            for ac_id in doc["acs"]:
                ac = self.activity_contexts_by_id.get(ac_id)
                if ac is not None:
                    entity.attached.add(ac_id)
                    ac._insert(entity)
            for ac_id, evs in doc.get("masks", {}).items():
                if ac_id in entity.attached:
                    entity.own_masks()[ac_id] = {EventTypeId.parse(e) for e in evs}
        self._flush_system_writes(drop)
        for timer_id, doc in store.load("timer").items():
            if self.timers._restore(timer_id, doc):
                counts["timers"] += 1
        with self.transaction() as txn:
            for entity in list(self.entities.values()):
                if entity.parent_id is None and not entity.removed:
                    txn.gc.append(entity)
        for ac in list(self.activity_contexts_by_id.values()):
            self._check_implicit_end(None, ac)
        self._rearm_timer()
        return counts

    # ==================================================================================
    # misc
    # ==================================================================================
    def _trace_error(self, what: str, exc: BaseException) -> None:
        self._tracer.severe("%s: %s", what, exc, exc=exc)

    def status(self) -> dict[str, Any]:
        return {
            "services": [s.to_json() for s in self.services.values()],
            "ra_entities": [e.to_json() for e in self.ra_entities.values()],
            "activities": len(self.activity_contexts_by_id),
            "sbb_entities": len(self.entities),
            "backlog": self.backlog,
            "delivered": self.delivered,
            "failed": self.failed,
            "transactions": {"committed": self.transactions.committed, "rolled_back": self.transactions.rolled_back},
            "timers": len(self.timers._timers),
            "alarms": len(self.alarms.list()),
            "store_commits": self._committer.stats if self._committer is not None else None,
        }


class _Delivery:
    """The processing of one event on one activity; resumable when a handler is async."""

    __slots__ = ("ac", "container", "delivered", "failed", "gen", "index", "initial", "item", "seen")

    def __init__(self, container: Container, ac: ActivityContext, item: _QueuedEvent) -> None:
        self.container = container
        self.ac = ac
        self.item = item
        self.seen: set[str] = set()
        self.delivered = 0
        self.failed = 0
        self.initial = 0
        self.index = 0
        self.gen = -1

    def run(self) -> Any:
        ac = self.ac
        if ac.state is ActivityState.INVALID:
            self._finish()
            return None
        item = self.item
        if item.event_type is ACTIVITY_END:
            ac.state = ActivityState.ENDING
        candidates = self.container._initial.get(item.event_type)
        if candidates and item.event_type is not ACTIVITY_END:
            for service, info in candidates:
                if service.state is ServiceState.ACTIVE:
                    self._initial_event(service, info)
        return self._deliver_loop()

    # JSR 240 §8.6: initial event processing -------------------------------------------------
    def _initial_event(self, service: Service, info: HandlerInfo) -> None:
        item, ac, container = self.item, self.ac, self.container
        if item.event_type == SERVICE_STARTED and item.event.service_id != str(service.id):
            return
        select = info.spec.select
        custom: str | None = None
        if info.spec.selector is not None:
            ies = InitialEventSelector(item.event, item.event_type, ac.activity, item.address, set(select))
            probe = container.pool.take(service.root, service)
            try:
                result = getattr(probe, info.spec.selector)(ies) or ies
            except Exception as exc:
                container._trace_error(f"initial event selector {service.root.id}.{info.spec.selector} failed", exc)
                return
            finally:
                container.pool.give_back(service.root, probe)
            if not result.initial_event:
                return
            select, custom, address = tuple(result.select), result.custom_name, result.address
            create = result.create
        else:
            address = item.address
            create = True
        parts: list[str] = []
        for var in select:
            if var == "activity_context":
                parts.append(f"ac={ac.id}")
            elif var == "address":
                if address is None:
                    return  # no address: not initial for this service (§8.6.3)
                parts.append(f"addr={address}")
            elif var == "address_profile":
                if address is None or service.address_profile_table is None:
                    return
                table = container.profiles.tables.get(service.address_profile_table)
                profile = table.find_by_address(address.address) if table else None
                if profile is None:
                    return
                parts.append(f"profile={profile}")
            elif var == "event_type":
                parts.append(f"type={item.event_type}")
            elif var == "event":
                parts.append(f"event={id(item.event)}-{container._new_entity_id()}")
        if custom is not None:
            parts.append(f"custom={custom}")
        if not parts:
            return
        name = "|".join(parts)
        entity_id = service.roots.get(name)
        if entity_id is None and not create:
            return  # the selector wants existing entities only
        self.initial += 1
        try:
            if entity_id is None:
                container._create_root(service, name, ac)
            else:
                entity = container.entities[entity_id]
                if ac.id not in entity.attached:
                    with container.transaction():
                        ac.attach(entity)
        except Exception as exc:
            self.failed += 1
            container._trace_error(f"initial event processing for {service.id} failed", exc)

    # delivery in priority order -----------------------------------------------------------
    def _next_target(self) -> SbbEntity | None:
        ac = self.ac
        if ac.gen != self.gen:
            self.gen = ac.gen
            self.index = 0
        attached = ac.attached
        event_type = self.item.event_type
        seen = self.seen
        while self.index < len(attached):
            entity = attached[self.index]
            self.index += 1
            if entity.id in seen:
                continue
            seen.add(entity.id)
            if event_type not in entity.descriptor.handlers:
                continue
            masks = entity.masks
            if masks and event_type in masks.get(ac.id, ()):
                continue
            return entity
        return None

    def _deliver_loop(self) -> Any:
        while True:
            entity = self._next_target()
            if entity is None:
                break
            pending = self._deliver_one(entity)
            if pending is not None:
                return self._resume(pending)
        self._finish()
        return None

    async def _resume(self, pending: Any) -> None:
        await pending
        rest = self._deliver_loop()
        if rest is not None:
            await rest

    def _deliver_one(self, entity: SbbEntity) -> Any:
        container = self.container
        tm = container.transactions
        item = self.item
        info = entity.descriptor.handlers[item.event_type]
        aci = ActivityContextInterface(self.ac, entity.descriptor.id.name)
        txn, token = tm.begin()
        obj = None
        try:
            obj = container._ready_object(entity, txn)
            method = getattr(obj, info.method)
            if info.arity == 2:
                result = method(item.event, aci)
            else:
                result = method(item.event, aci, EventContext(item.event_type, item.address, self.ac.id))
            if info.is_async or inspect.isawaitable(result):
                task = asyncio.ensure_future(self._finish_async_handler(entity, obj, txn, result, aci))
                container._tasks.add(task)
                task.add_done_callback(container._tasks.discard)
                current_transaction.reset(token)
                return task
            container._before_commit(txn)
            tm.commit(txn, token)
            self.delivered += 1
            container.delivered += 1
        except Exception as exc:
            self._handler_failed(entity, obj, txn, token, exc, aci)
        return None

    async def _finish_async_handler(self, entity: SbbEntity, obj: Sbb, txn: SleeTransaction, result: Any,
                                    aci: ActivityContextInterface) -> None:
        tm = self.container.transactions
        try:
            await result
            self.container._before_commit(txn)
            tm.commit(txn)
            self.delivered += 1
            self.container.delivered += 1
        except Exception as exc:
            self._handler_failed(entity, obj, txn, None, exc, aci)

    def _handler_failed(self, entity: SbbEntity, obj: Sbb | None, txn: SleeTransaction, token: Any,
                        exc: BaseException, aci: ActivityContextInterface) -> None:
        container = self.container
        self.failed += 1
        container.failed += 1
        item = self.item
        if obj is not None:
            try:
                obj.sbb_exception_thrown(exc, item.event, aci)
            except Exception as inner:
                container._trace_error(f"{entity.descriptor.id}.sbb_exception_thrown failed", inner)
        container.transactions.rollback(txn, token)
        container.tracers.get(f"{entity.service.id}/{entity.descriptor.id.name}").severe(
            "handler for %s on %s raised %r; transaction rolled back", item.event_type, self.ac.id, exc, exc=exc
        )
        if entity.removed or entity.id not in container.entities:
            return
        try:
            with container.transaction() as txn2:
                again = container._ready_object(entity, txn2)
                again.sbb_rolled_back(RolledBackContext(item.event, aci))
        except Exception as inner:
            container._trace_error(f"{entity.descriptor.id}.sbb_rolled_back failed", inner)

    def _finish(self) -> None:
        container = self.container
        item = self.item
        if item.event_type is ACTIVITY_END or item.event_type == ACTIVITY_END:
            container._activity_ended(self.ac)
        elif self.ac.implicit_end:
            container._check_implicit_end(None, self.ac)
        if item.callback is not None:
            try:
                item.callback(EventOutcome(self.delivered, self.failed, self.initial))
            except Exception as exc:
                container._trace_error("event processed callback failed", exc)


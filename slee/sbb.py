"""The SBB programming model (JSR 240 §5, §6): what a service author writes.

An SBB is a Python class deriving from ``Sbb``. It declares, in Python:

- event handlers with ``@event_handler(EVENT_TYPE_ID, initial=..., select=...)``;
- an optional custom initial-event selector with ``@initial_event_selector``;
- CMP fields as ``CmpField`` class attributes (persisted, transactional);
- child relations as ``ChildRelation`` class attributes;
- its local interface as methods marked ``@local_method`` (callable by parent SBBs).

The container validates all of this when the SBB is installed (``slee._entity.describe_sbb``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slee._ids import EventTypeId, SbbId
from slee.errors import NoSuchObjectError
from slee.events import Address

if TYPE_CHECKING:
    from slee._entity import SbbEntity
    from slee.activity import ActivityContextInterface
    from slee.container import Container

SELECT_VARIABLES = ("activity_context", "address", "address_profile", "event_type", "event")

_MISSING = object()


# -- declarations ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HandlerSpec:
    event_type: EventTypeId
    initial: bool
    select: tuple[str, ...]
    selector: str | None
    mask_on_attach: bool


def event_handler(
    event_type: EventTypeId,
    *,
    initial: bool = False,
    select: tuple[str, ...] | list[str] = ("activity_context",),
    selector: str | None = None,
    mask_on_attach: bool = False,
) -> Callable:
    """Declare an event handler ``def on_x(self, event, aci)`` (or ``async def``).

    ``initial`` makes the event create root entities of a service whose root SBB this is;
    ``select`` lists the initial-event-select variables that form the convergence name;
    ``selector`` names an ``@initial_event_selector`` method for custom names.
    """
    bad = [v for v in select if v not in SELECT_VARIABLES]
    if bad:
        raise ValueError(f"unknown initial-event-select variable(s) {bad}; use {SELECT_VARIABLES}")

    def mark(fn: Callable) -> Callable:
        specs = list(getattr(fn, "__slee_handlers__", ()))
        specs.append(HandlerSpec(event_type, initial, tuple(select), selector, mask_on_attach))
        fn.__slee_handlers__ = tuple(specs)
        return fn

    return mark


def initial_event_selector(fn: Callable) -> Callable:
    """Mark ``def select(self, ies: InitialEventSelector) -> InitialEventSelector``."""
    fn.__slee_selector__ = True
    return fn


def local_method(fn: Callable) -> Callable:
    """Expose a method on the SBB local interface (callable through an ``SbbLocalObject``)."""
    fn.__slee_local__ = True
    return fn


@dataclass(slots=True)
class InitialEventSelector:
    """What a custom selector sees and may change (JSR 240 §8.6.4)."""

    event: Any
    event_type: EventTypeId
    activity: Any
    address: Address | None
    select: set[str] = field(default_factory=set)
    custom_name: str | None = None
    initial_event: bool = True
    # False: deliver only to a root entity that already has this convergence name, never
    # create one (an extension of JSR 240, where an initial event always creates). For
    # events that only matter to existing state: a registration change of a presentity
    # nobody watches.
    create: bool = True

    def select_activity_context(self, on: bool = True) -> None:
        self._flag("activity_context", on)

    def select_address(self, on: bool = True) -> None:
        self._flag("address", on)

    def select_event_type(self, on: bool = True) -> None:
        self._flag("event_type", on)

    def select_event(self, on: bool = True) -> None:
        self._flag("event", on)

    def _flag(self, name: str, on: bool) -> None:
        (self.select.add if on else self.select.discard)(name)


class CmpField:
    """A container-managed persistent field: transactional, persisted, typed.

    Values must be JSON-like (None, bool, int, float, str, bytes, lists and dicts of those),
    ``SbbLocalObject``s or ``ActivityContextInterface``s; ``type_`` is checked on write.

    ``stored=False`` (an extension of JSR 240): the field is kept with its entity, across
    passivation, and rolled back with its transaction, but a change of it alone writes
    nothing to the store, and after a restart it reads as its default. For state that means
    nothing after a restart, such as "a request we sent awaits its answer": the answer to
    every NOTIFY would otherwise rewrite the subscription's stored document.
    """

    def __init__(self, type_: type | tuple[type, ...] = object, *, default: Any = None, stored: bool = True) -> None:
        self.type = type_
        self.default = default
        self.stored = stored
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def default_value(self) -> Any:
        """What the field reads as when it is not set (a callable default is a factory)."""
        default = self.default
        return default() if callable(default) else default

    def __get__(self, sbb: Sbb | None, owner: type | None = None) -> Any:
        if sbb is None:
            return self
        entity = sbb._slee_entity
        if entity is None:
            raise RuntimeError(f"CMP field {self.name} read outside the Ready state")
        value = entity.cmp.get(self.name, _MISSING)
        return self.default_value() if value is _MISSING else value

    def __set__(self, sbb: Sbb, value: Any) -> None:
        if value is not None and self.type is not object and not isinstance(value, self.type):
            raise TypeError(
                f"CMP field {type(sbb).__name__}.{self.name} takes {getattr(self.type, '__name__', self.type)}, "
                f"not {type(value).__name__}"
            )
        entity = sbb._slee_entity
        if entity is None:
            raise RuntimeError(f"CMP field {self.name} written outside the Ready state")
        default = self.default
        if value is default or (type(value) is type(default) and value == default and not callable(default)):
            # A field at its default is not kept: reading it gives the default anyway, and a
            # subscription's dozen flags and counters at their defaults were a larger dict.
            entity.clear_cmp(self.name, stored=self.stored)
        else:
            entity.set_cmp(self.name, value, stored=self.stored)


class ChildRelation:
    """Declares a child relation: ``self.<name>.create()`` makes a child SBB entity."""

    def __init__(self, child: type | str, *, default_priority: int = 0) -> None:
        self.child = child  # the class, or "module:Class" resolved at install time
        self.default_priority = default_priority
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, sbb: Sbb | None, owner: type | None = None) -> Any:
        if sbb is None:
            return self
        entity = sbb._slee_entity
        if entity is None:
            raise RuntimeError(f"child relation {self.name} used outside the Ready state")
        return ChildRelationView(entity, self.name)


class ChildRelationView:
    """The live collection of one entity's children in one relation."""

    __slots__ = ("_entity", "_name")

    def __init__(self, entity: SbbEntity, name: str) -> None:
        self._entity = entity
        self._name = name

    def create(self) -> SbbLocalObject:
        return self._entity.container._create_child(self._entity, self._name)

    def __iter__(self) -> Iterator[SbbLocalObject]:
        container = self._entity.container
        return iter([SbbLocalObject(container, cid) for cid in self._entity.children.get(self._name, ())])

    def __len__(self) -> int:
        return len(self._entity.children.get(self._name, ()))

    def remove_all(self) -> None:
        for child in list(self):
            child.remove()


# -- runtime objects ---------------------------------------------------------------------
class SbbLocalObject:
    """A reference to an SBB entity, used by other SBBs (JSR 240 §5.6).

    Calls to ``@local_method``s run synchronously in the caller's transaction, on the target
    entity's SBB object (activated and loaded as needed).
    """

    __slots__ = ("_container", "_entity_id")

    def __init__(self, container: Container, entity_id: str) -> None:
        self._container = container
        self._entity_id = entity_id

    @property
    def entity_id(self) -> str:
        return self._entity_id

    def _entity(self) -> SbbEntity:
        entity = self._container.entities.get(self._entity_id)
        if entity is None or entity.removed:
            raise NoSuchObjectError(f"SBB entity {self._entity_id} no longer exists")
        return entity

    def remove(self) -> None:
        """Remove this entity and its descendants (cascading, children first)."""
        self._container._remove_entity_tree(self._entity())

    def get_sbb_priority(self) -> int:
        return self._entity().priority

    def set_sbb_priority(self, priority: int) -> None:
        self._container._set_priority(self._entity(), priority)

    def is_identical(self, other: object) -> bool:
        return isinstance(other, SbbLocalObject) and other._entity_id == self._entity_id

    def __eq__(self, other: object) -> bool:
        return self.is_identical(other)

    def __hash__(self) -> int:
        return hash(self._entity_id)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        entity = self._entity()
        if name not in entity.descriptor.local_methods:
            raise AttributeError(f"{entity.descriptor.cls.__name__} has no local method {name!r}")
        return self._container._local_call(entity, name)

    def __repr__(self) -> str:
        return f"<SbbLocalObject {self._entity_id}>"


class SbbContext:
    """Given to each SBB object by ``set_sbb_context`` (JSR 240 §6.6)."""

    __slots__ = ("_container", "_sbb", "descriptor", "service")

    def __init__(self, container: Container, descriptor: Any, service: Any, sbb: Sbb) -> None:
        self._container = container
        self.descriptor = descriptor
        self.service = service
        self._sbb = sbb

    @property
    def sbb_id(self) -> SbbId:
        return self.descriptor.id

    @property
    def service_id(self) -> Any:
        return self.service.id

    @property
    def sbb_local_object(self) -> SbbLocalObject:
        entity = self._sbb._slee_entity
        if entity is None:
            raise RuntimeError("the SBB object is not in the Ready state")
        return SbbLocalObject(self._container, entity.id)

    @property
    def activities(self) -> list[ActivityContextInterface]:
        entity = self._sbb._slee_entity
        if entity is None:
            return []
        return [self._container._aci(ac_id, self.descriptor) for ac_id in sorted(entity.attached)]

    def now(self) -> float:
        """The container's clock in epoch seconds (a fake clock under slee.testing)."""
        return self._container.clock.now()

    @property
    def service_config(self) -> dict[str, Any]:
        """The service's configuration entries (from its deployment recipe)."""
        return self.service.config

    # facilities
    @property
    def timer_facility(self) -> Any:
        return self._container.timers

    @property
    def null_activity_factory(self) -> Any:
        return self._container.null_activity_factory

    @property
    def naming(self) -> Any:
        return self._container.naming

    @property
    def alarm_facility(self) -> Any:
        return self._container.alarms.for_component(str(self.descriptor.id))

    @property
    def profile_facility(self) -> Any:
        return self._container.profiles

    def get_tracer(self, name: str = "root") -> Any:
        return self._container.tracers.get(f"{self.service.id}/{self.descriptor.id.name}", name)

    def usage(self, parameter_set: str | None = None) -> Any:
        return self._container.usage.parameter_set(self.service.id, self.descriptor.id, parameter_set)

    def ra(self, link_name: str) -> Any:
        """The provider of the RA entity bound to ``link_name`` in this SBB's deployable unit."""
        return self._container._ra_provider(self.service, link_name)

    def ra_aci_factory(self, link_name: str) -> Any:
        return self._container._ra_aci_factory(self, link_name)

    def aci_for(self, activity: Any, link_name: str | None = None) -> ActivityContextInterface:
        """The ACI of an activity object this SBB holds (e.g. a new client transaction)."""
        return self._container._aci_for_activity(activity, self.descriptor)

    def as_aci(self, aci: ActivityContextInterface, aci_class: type) -> Any:
        """A typed view of ``aci`` with this SBB's ``AciAttribute``s."""
        return aci_class(aci._ac, self.descriptor.id.name)

    def mask_event(self, event_types: list[EventTypeId] | tuple[EventTypeId, ...], aci: ActivityContextInterface) -> None:
        self._container._mask_events(self._sbb, set(event_types), aci)

    def get_event_mask(self, aci: ActivityContextInterface) -> set[EventTypeId]:
        entity = self._sbb._slee_entity
        return set(entity.masks.get(aci._ac.id, ())) if entity else set()

    def fire_event(self, event_type: EventTypeId, event: Any, aci: ActivityContextInterface, address: Address | None = None) -> None:
        """Fire an event on an activity; it is queued when this transaction commits."""
        self._container.fire_event_in_transaction(aci._ac, event_type, event, address)

    def set_rollback_only(self) -> None:
        from slee.transaction import require_transaction

        require_transaction().set_rollback_only()

    def get_rollback_only(self) -> bool:
        from slee.transaction import require_transaction

        return require_transaction().rollback_only


class Sbb:
    """Base class of every SBB. Override the lifecycle callbacks you need (all optional).

    Lifecycle (JSR 240 §6.3): Does-Not-Exist -> Pooled (``__init__``, ``set_sbb_context``);
    Pooled -> Ready by ``sbb_create`` + ``sbb_post_create`` (new entity) or ``sbb_activate``
    (existing entity); in Ready, ``sbb_load`` before and ``sbb_store`` after the work of each
    transaction; Ready -> Pooled by ``sbb_passivate`` or ``sbb_remove``; Pooled ->
    Does-Not-Exist by ``unset_sbb_context``.
    """

    context: SbbContext
    _slee_entity: SbbEntity | None = None

    # identity: defaults come from the deployable unit when not set
    sbb_name: str | None = None
    sbb_vendor: str | None = None
    sbb_version: str | None = None

    def set_sbb_context(self, context: SbbContext) -> None:
        self.context = context

    def unset_sbb_context(self) -> None:
        pass

    def sbb_create(self) -> None:
        pass

    def sbb_post_create(self) -> None:
        pass

    def sbb_activate(self) -> None:
        pass

    def sbb_passivate(self) -> None:
        pass

    def sbb_load(self) -> None:
        pass

    def sbb_store(self) -> None:
        pass

    def sbb_remove(self) -> None:
        pass

    def sbb_exception_thrown(self, exception: BaseException, event: Any, aci: ActivityContextInterface | None) -> None:
        """Called in the failed transaction, before it is rolled back."""

    def sbb_rolled_back(self, context: RolledBackContext) -> None:
        """Called in a new transaction after a transaction of this entity rolled back."""

    # convenience
    def fire_event(self, event_type: EventTypeId, event: Any, aci: ActivityContextInterface, address: Address | None = None) -> None:
        self.context.fire_event(event_type, event, aci, address)

    @property
    def tracer(self) -> Any:
        return self.context.get_tracer()


@dataclass(frozen=True, slots=True)
class RolledBackContext:
    """What ``sbb_rolled_back`` learns: the event and activity of the failed delivery."""

    event: Any
    aci: ActivityContextInterface | None
    removed_rolled_back: bool = False


# -- CMP value encoding for the store ----------------------------------------------------
_PLAIN = frozenset({str, int, float, bool, type(None)})


def encode_cmp(value: Any) -> Any:
    """A CMP value as JSON-able data (type dispatch: this runs for every persisted write)."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is list or t is tuple:
        return [v if type(v) in _PLAIN else encode_cmp(v) for v in value]
    if t is dict:
        if "$t" not in value and all(type(k) is str for k in value):
            return {k: v if type(v) in _PLAIN else encode_cmp(v) for k, v in value.items()}
        return {"$t": "map", "v": [[encode_cmp(k), encode_cmp(v)] for k, v in value.items()]}
    if t is SbbLocalObject:
        return {"$t": "sbb", "v": value._entity_id}
    if isinstance(value, bytes):
        return {"$t": "bytes", "v": base64.b64encode(value).decode()}
    from slee.activity import ActivityContextInterface

    if isinstance(value, ActivityContextInterface):
        return {"$t": "ac", "v": value._ac.id}
    if isinstance(value, Address):
        return {"$t": "addr", "v": [value.plan, value.address]}
    if isinstance(value, bool | int | float | str):  # subclasses (enum.IntEnum, str enums)
        return value
    if isinstance(value, list | tuple):
        return [encode_cmp(v) for v in value]
    if isinstance(value, dict):
        return encode_cmp(dict(value))
    raise TypeError(f"{type(value).__name__} cannot be stored in a CMP field")


def decode_cmp(value: Any, container: Container, sbb_name: str = "") -> Any:
    """The inverse of ``encode_cmp``. ``sbb_name``: the SBB whose state this is, so that an
    activity context reference reads the same ACI attributes as the one that was stored."""
    if isinstance(value, list):
        return [decode_cmp(v, container, sbb_name) for v in value]
    if isinstance(value, dict):
        tag = value.get("$t")
        if tag is None:
            return {k: decode_cmp(v, container, sbb_name) for k, v in value.items()}
        v = value["v"]
        if tag == "bytes":
            return base64.b64decode(v)
        if tag == "sbb":
            return SbbLocalObject(container, v)
        if tag == "ac":
            ac = container.activity_contexts_by_id.get(v)
            from slee.activity import ActivityContextInterface

            return ActivityContextInterface(ac, sbb_name) if ac is not None else None
        if tag == "addr":
            return Address(v[0], v[1])
        if tag == "map":
            return {decode_cmp(k, container, sbb_name): decode_cmp(x, container, sbb_name) for k, x in v}
    return value


__all__ = [
    "ChildRelation",
    "CmpField",
    "InitialEventSelector",
    "RolledBackContext",
    "Sbb",
    "SbbContext",
    "SbbLocalObject",
    "event_handler",
    "initial_event_selector",
    "local_method",
]

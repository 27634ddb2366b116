"""Activity contexts (JSR 240 §7): where events are fired and SBB entities are attached.

An ``ActivityContext`` is the container's record of one activity: the activity object of
the RA (or a null activity), the SBB entities attached to it in delivery order, its
attributes, the names bound to it and the queue of events waiting for delivery. SBBs see it
through an ``ActivityContextInterface`` (ACI).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from slee._smallset import EMPTY, SmallSet, own
from slee.errors import ActivityIsEndingError, NameAlreadyBoundError, NameNotBoundError
from slee.transaction import current_transaction, require_transaction

if TYPE_CHECKING:
    from slee._entity import SbbEntity
    from slee.container import Container


_NONE: frozenset[str] = frozenset()


class ActivityState(enum.Enum):
    ACTIVE = "active"
    ENDING = "ending"
    INVALID = "invalid"


class ActivityContext:
    """The container-side state of one activity."""

    __slots__ = (
        "activity",
        "attached",
        "attributes",
        "busy",
        "container",
        "ending_requested",
        "gen",
        "handle",
        "id",
        "implicit_end",
        "names",
        "persistent",
        "queue",
        "ra_entity",
        "state",
        "timers",
    )

    def __init__(
        self,
        container: Container,
        ac_id: str,
        handle: Hashable,
        activity: Any,
        ra_entity: str | None,
        *,
        persistent: bool = False,
        implicit_end: bool = False,
    ) -> None:
        self.container = container
        self.id = ac_id
        self.handle = handle
        self.activity = activity
        self.ra_entity = ra_entity
        self.state = ActivityState.ACTIVE
        self.attached: list[SbbEntity] = []
        self.attributes: Mapping[str, Any] = EMPTY  # own() it to write
        self.names: SmallSet | frozenset[str] = _NONE  # naming bindings; a SmallSet once there is one
        self.timers: SmallSet | frozenset[str] = _NONE  # timer ids; a SmallSet once there is one
        self.queue: deque | None = None  # events waiting; allocated on the first one (an empty deque is ~600 B)
        self.busy = False
        self.persistent = persistent
        self.implicit_end = implicit_end  # null activities end when nothing references them
        self.ending_requested = False
        self.gen = 0  # bumped on every change of ``attached`` (the router rescans on change)

    # names and timers: most activities never have any, so the sets are made on first use
    def add_name(self, name: str) -> None:
        if self.names is _NONE:
            self.names = SmallSet((name,))
        else:
            self.names.add(name)  # type: ignore[union-attr]

    def discard_name(self, name: str) -> None:
        if self.names:
            self.names.discard(name)  # type: ignore[union-attr]

    def add_timer(self, timer_id: str) -> None:
        if self.timers is _NONE:
            self.timers = SmallSet((timer_id,))
        else:
            self.timers.add(timer_id)  # type: ignore[union-attr]

    def discard_timer(self, timer_id: str) -> None:
        if self.timers:
            self.timers.discard(timer_id)  # type: ignore[union-attr]

    @property
    def is_ending(self) -> bool:
        """True once the activity's end was requested (no new events or timers accepted)."""
        return self.ending_requested or self.state is not ActivityState.ACTIVE

    # -- attachment (transactional) ------------------------------------------------------
    def attach(self, entity: SbbEntity) -> bool:
        """Attach ``entity``; keeps ``attached`` sorted by priority (highest first)."""
        if self.state is not ActivityState.ACTIVE:
            raise ActivityIsEndingError(f"activity {self.id} is ending; nothing can attach to it")
        if entity in self.attached:
            return False
        txn = require_transaction()
        self._insert(entity)
        entity.attached.add(self.id)
        txn.record_undo(lambda: self._undo_attach(entity))
        if self.persistent:  # the entity's document lists persistent attachments only
            txn.mark_dirty(entity)
        self.touch(txn)
        return True

    def _insert(self, entity: SbbEntity) -> None:
        self.gen += 1
        attached = self.attached
        prio = entity.priority
        i = len(attached)
        while i > 0 and attached[i - 1].priority < prio:
            i -= 1
        attached.insert(i, entity)

    def _undo_attach(self, entity: SbbEntity) -> None:
        self.gen += 1
        if entity in self.attached:
            self.attached.remove(entity)
        entity.attached.discard(self.id)

    def detach(self, entity: SbbEntity) -> bool:
        if entity not in self.attached:
            return False
        txn = require_transaction()
        self.gen += 1
        self.attached.remove(entity)
        entity.attached.discard(self.id)
        masks = entity.own_masks().pop(self.id, None) if self.id in entity.masks else None

        def undo() -> None:
            self._insert(entity)
            entity.attached.add(self.id)
            if masks is not None:
                entity.own_masks()[self.id] = masks

        txn.record_undo(undo)
        if self.persistent:
            txn.mark_dirty(entity)
        self.touch(txn)
        self.container._after_detach(txn, self, entity)
        return True

    def resort(self) -> None:
        """Re-establish priority order after an attached entity's priority changed."""
        self.gen += 1
        self.attached.sort(key=lambda e: -e.priority)

    # -- attributes (transactional) ------------------------------------------------------
    def get_attribute(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        txn = require_transaction()
        attrs = own(self, "attributes")
        missing = name not in attrs
        old = attrs.get(name)
        attrs[name] = value

        def undo() -> None:
            if missing:
                attrs.pop(name, None)
            else:
                attrs[name] = old

        txn.record_undo(undo)
        self.touch(txn)

    def touch(self, txn: Any) -> None:
        if self.persistent:
            txn.mark_dirty(self)

    def persist(self, txn: Any) -> None:
        if self.state is ActivityState.INVALID:
            txn.delete("ac", self.id)
            return
        self.container._persist_ac(txn, self)

    def __repr__(self) -> str:
        return f"<ActivityContext {self.id} {self.state.value} attached={len(self.attached)}>"


class ActivityContextInterface:
    """An SBB's view of an activity context (JSR 240 §7.4).

    Subclass it and declare ``AciAttribute``s to get typed, transactional attributes; obtain
    the typed view with ``self.context.as_aci(aci, MyAci)``.
    """

    __slots__ = ("_ac", "_sbb_name")

    def __init__(self, ac: ActivityContext, sbb_name: str = "") -> None:
        self._ac = ac
        self._sbb_name = sbb_name

    @property
    def activity(self) -> Any:
        return self._ac.activity

    def get_activity(self) -> Any:
        return self._ac.activity

    @property
    def activity_context_id(self) -> str:
        return self._ac.id

    @property
    def is_ending(self) -> bool:
        return self._ac.is_ending

    def attach(self, sbb_local: Any) -> None:
        """Attach an SBB entity (given by its local object) so it receives this activity's events."""
        self._ac.attach(self._ac.container._entity_of(sbb_local))

    def detach(self, sbb_local: Any) -> None:
        self._ac.detach(self._ac.container._entity_of(sbb_local))

    def is_attached(self, sbb_local: Any) -> bool:
        return self._ac.container._entity_of(sbb_local) in self._ac.attached

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActivityContextInterface) and other._ac is self._ac

    def __hash__(self) -> int:
        return hash(self._ac.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._ac.id}>"


class AciAttribute:
    """A typed activity-context attribute declared on an ACI subclass.

    Attributes are private to the declaring SBB unless given an ``alias``, which shares them
    with every SBB that declares the same alias (JSR 240 §7.8).
    """

    def __init__(self, type_: type | tuple[type, ...] = object, *, alias: str | None = None, default: Any = None) -> None:
        self.type = type_
        self.alias = alias
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _key(self, aci: ActivityContextInterface) -> str:
        return self.alias if self.alias else f"{aci._sbb_name}.{self.name}"

    def __get__(self, aci: ActivityContextInterface | None, owner: type | None = None) -> Any:
        if aci is None:
            return self
        return aci._ac.get_attribute(self._key(aci), self.default)

    def __set__(self, aci: ActivityContextInterface, value: Any) -> None:
        if value is not None and not isinstance(value, self.type):
            raise TypeError(f"ACI attribute {self.name} takes {self.type}, not {type(value).__name__}")
        aci._ac.set_attribute(self._key(aci), value)


class NullActivity:
    """An activity with no resource behind it (JSR 240 §7.10): ends when told, or when unused."""

    __slots__ = ("_container", "id")

    def __init__(self, container: Container, null_id: str) -> None:
        self._container = container
        self.id = null_id

    def end_activity(self) -> None:
        self._container.end_activity(("null", self.id))

    def __repr__(self) -> str:
        return f"<NullActivity {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullActivity) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("null", self.id))


class NullActivityFactory:
    """Creates null activities inside the caller's transaction."""

    def __init__(self, container: Container) -> None:
        self._container = container

    def create_null_activity(self) -> NullActivity:
        return self._container._create_null_activity()


class ActivityContextNamingFacility:
    """Binds names to activity contexts so that unrelated SBBs can find shared state (§14.4)."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._names: dict[str, ActivityContext] = {}

    def bind(self, aci: ActivityContextInterface, name: str) -> None:
        if not name:
            raise ValueError("a name must not be empty")
        ac = aci._ac
        if ac.is_ending:
            raise ActivityIsEndingError(f"activity {ac.id} is ending")
        if name in self._names:
            raise NameAlreadyBoundError(f"name {name!r} is already bound")
        txn = require_transaction()
        self._names[name] = ac
        ac.add_name(name)
        txn.put("naming", name, ac.id)

        def undo() -> None:
            self._names.pop(name, None)
            ac.discard_name(name)

        txn.record_undo(undo)

    def unbind(self, name: str) -> None:
        ac = self._names.get(name)
        if ac is None:
            raise NameNotBoundError(f"name {name!r} is not bound")
        txn = require_transaction()
        self._unbind(txn, name, ac)

    def _unbind(self, txn: Any, name: str, ac: ActivityContext) -> None:
        del self._names[name]
        ac.discard_name(name)
        txn.delete("naming", name)

        def undo() -> None:
            self._names[name] = ac
            ac.add_name(name)

        txn.record_undo(undo)
        self._container._check_implicit_end(txn, ac)

    def lookup(self, name: str) -> ActivityContextInterface | None:
        ac = self._names.get(name)
        if ac is None or ac.state is ActivityState.INVALID:
            return None
        return ActivityContextInterface(ac)

    def names(self) -> dict[str, str]:
        return {name: ac.id for name, ac in self._names.items()}

    def _restore(self, name: str, ac: ActivityContext) -> None:
        self._names[name] = ac
        ac.add_name(name)

    def _activity_ended(self, txn: Any, ac: ActivityContext) -> None:
        for name in list(ac.names):
            if self._names.get(name) is ac:
                del self._names[name]
                txn.delete("naming", name)
        ac.names = _NONE


def in_transaction() -> bool:
    return current_transaction.get() is not None


__all__ = [
    "AciAttribute",
    "ActivityContext",
    "ActivityContextInterface",
    "ActivityContextNamingFacility",
    "ActivityState",
    "NullActivity",
    "NullActivityFactory",
]

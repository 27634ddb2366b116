"""SBB descriptors (validated at install), SBB entities and the SBB object pool."""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from slee._ids import EventTypeId, SbbId
from slee._smallset import EMPTY, SmallSet, own
from slee.activity import ActivityContextInterface
from slee.errors import ValidationError
from slee.sbb import (
    ChildRelation,
    CmpField,
    HandlerSpec,
    Sbb,
    SbbContext,
    SbbLocalObject,
    decode_cmp,
    encode_cmp,
)
from slee.store import _json
from slee.store._changes import EncodedJson
from slee.transaction import require_transaction

if TYPE_CHECKING:
    from slee.container import Container
    from slee.service import Service


@dataclass(slots=True)
class HandlerInfo:
    method: str
    spec: HandlerSpec
    arity: int  # 2: (event, aci); 3: (event, aci, context)
    is_async: bool


@dataclass(slots=True)
class SbbDescriptor:
    """Everything the container needs to know about an SBB class, checked once at install."""

    id: SbbId
    cls: type[Sbb]
    handlers: dict[EventTypeId, HandlerInfo]
    cmp_fields: dict[str, CmpField]
    child_relations: dict[str, tuple[ChildRelation, SbbDescriptor | None]]
    local_methods: frozenset[str]
    selectors: frozenset[str]
    source: str = ""
    pool: list[Sbb] = field(default_factory=list)
    # The zlib preset dictionary for packing this SBB's passivated state: the first state
    # packed. Entities of one SBB share their field names and most of their shape, so
    # against it a subscription's 316 characters compress to about 40 bytes.
    pack_dict: bytes | None = None
    unstored: frozenset[str] = frozenset()  # CMP fields declared stored=False

    @property
    def initial_handlers(self) -> dict[EventTypeId, HandlerInfo]:
        return {k: v for k, v in self.handlers.items() if v.spec.initial}


def _where(obj: Any) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        return getattr(obj, "__qualname__", repr(obj))


def describe_sbb(
    cls: type,
    sbb_id: SbbId,
    *,
    known_event: Callable[[EventTypeId], bool] = lambda _e: True,
    resolve_child: Callable[[type | str], SbbDescriptor] | None = None,
) -> SbbDescriptor:
    """Validate an SBB class and build its descriptor; raise ``ValidationError`` with file:line."""
    if not (isinstance(cls, type) and issubclass(cls, Sbb)):
        raise ValidationError(f"{_where(cls)}: {cls!r} is not a subclass of slee.Sbb")
    handlers: dict[EventTypeId, HandlerInfo] = {}
    cmp_fields: dict[str, CmpField] = {}
    children: dict[str, tuple[ChildRelation, SbbDescriptor | None]] = {}
    local: set[str] = set()
    selectors: set[str] = set()
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, CmpField):
                cmp_fields[name] = attr
            elif isinstance(attr, ChildRelation):
                children[name] = (attr, None)
            elif callable(attr):
                if getattr(attr, "__slee_local__", False):
                    local.add(name)
                if getattr(attr, "__slee_selector__", False):
                    selectors.add(name)
    for name in dir(cls):
        fn = getattr(cls, name, None)
        specs = getattr(fn, "__slee_handlers__", None)
        if not specs:
            continue
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        arity = len(params) - 1
        if arity not in (2, 3):
            raise ValidationError(
                f"{_where(fn)}: event handler {cls.__name__}.{name} must take (self, event, aci) "
                f"or (self, event, aci, context), not {len(params)} positional parameters"
            )
        for spec in specs:
            if not known_event(spec.event_type):
                raise ValidationError(
                    f"{_where(fn)}: event handler {cls.__name__}.{name} names event type "
                    f"{spec.event_type}, which is not installed (missing dependency on the RA type or unit that defines it?)"
                )
            if spec.event_type in handlers:
                raise ValidationError(
                    f"{_where(fn)}: {cls.__name__} has two handlers for {spec.event_type}: "
                    f"{handlers[spec.event_type].method} and {name}"
                )
            if spec.selector is not None and spec.selector not in selectors:
                raise ValidationError(
                    f"{_where(fn)}: handler {name} names selector {spec.selector!r}, but {cls.__name__} "
                    f"has no method of that name marked @initial_event_selector"
                )
            handlers[spec.event_type] = HandlerInfo(name, spec, arity, inspect.iscoroutinefunction(fn))
    clash = set(cmp_fields) & (local | {h.method for h in handlers.values()})
    if clash:
        raise ValidationError(f"{_where(cls)}: {cls.__name__}: CMP field names clash with methods: {sorted(clash)}")
    descriptor = SbbDescriptor(
        id=sbb_id, cls=cls, handlers=handlers, cmp_fields=cmp_fields, child_relations=children,
        local_methods=frozenset(local), selectors=frozenset(selectors), source=_where(cls),
        unstored=frozenset(name for name, f in cmp_fields.items() if not f.stored),
    )
    for name, (relation, _) in list(children.items()):
        if resolve_child is None:
            child_cls = relation.child
            if isinstance(child_cls, str):
                raise ValidationError(f"{_where(cls)}: child relation {name} names {child_cls!r}, which cannot be resolved here")
            child = (child_cls is cls and descriptor) or describe_sbb(
                child_cls, SbbId(child_cls.sbb_name or child_cls.__name__, sbb_id.vendor, sbb_id.version),
                known_event=known_event,
            )
        else:
            child = descriptor if relation.child is cls else resolve_child(relation.child)
        children[name] = (relation, child)
    return descriptor


class SbbEntity:
    """One SBB entity: its identity, CMP state, attachments, children and bound SBB object."""

    __slots__ = (
        "_cmp",
        "attached",
        "children",
        "cmp_dirty",
        "cmp_encoded",
        "container",
        "convergence_name",
        "descriptor",
        "id",
        "masks",
        "obj",
        "pack_dict",
        "packed",
        "parent_id",
        "priority",
        "relation",
        "removed",
        "service",
        "stored",
    )

    def __init__(
        self,
        container: Container,
        entity_id: str,
        service: Service,
        descriptor: SbbDescriptor,
        *,
        parent_id: str | None = None,
        relation: str | None = None,
        convergence_name: str | None = None,
        priority: int = 0,
    ) -> None:
        self.container = container
        self.id = entity_id
        self.service = service
        self.descriptor = descriptor
        self.parent_id = parent_id
        self.relation = relation
        self.convergence_name = convergence_name
        self.priority = priority
        self._cmp: dict[str, Any] | None = {}
        self.packed: bytes | None = None  # the CMP state, compressed JSON, while passivated (see pack)
        self.pack_dict: bytes | None = None  # the zlib dictionary ``packed`` was made with
        self.cmp_dirty: set[str] | None = None  # CMP fields written since the last store write
        self.cmp_encoded: dict[str, str] | None = None  # stored JSON of structured fields
        self.attached = SmallSet()  # ids of the activity contexts it is attached to
        self.children: Mapping[str, list[str]] = EMPTY  # own() it to write
        self.masks: Mapping[str, set[EventTypeId]] = EMPTY  # own() it to write
        self.obj: Sbb | None = None
        self.removed = False
        self.stored = False  # a row for this entity is (or will be, at commit) in the store

    @property
    def cmp(self) -> dict[str, Any]:
        """The CMP values by field name (unpacked on first use after a passivation)."""
        cmp = self._cmp
        if cmp is None:
            cmp = self._unpack()
        return cmp

    @cmp.setter
    def cmp(self, value: dict[str, Any]) -> None:
        self._cmp = value
        self.packed = self.pack_dict = None

    def pack(self) -> bool:
        """Keep a passivated entity's CMP state as compressed JSON, not as a dict of values.

        Most entities of a large SLEE are idle (a subscription between refreshes). Their
        state is encoded as the store encodes it and deflated against a dictionary of the
        SBB's first packed state (~3 us): a subscription's 0.6 KiB of values become ~80
        bytes. It is decoded when the entity is next needed (~1 us plus the JSON). Only
        clean state of types that decode to themselves is packed, and only while it is
        small (a presentity with many watchers stays as it is).
        """
        cmp = self._cmp
        if not cmp or self.cmp_dirty is not None:
            return False
        for value in cmp.values():
            if type(value) not in _SCALAR_JSON and not _packable(value):
                return False
        text = self._cmp_json()
        if len(text) > _PACK_MAX:
            return False
        data = text.encode()
        descriptor = self.descriptor
        zdict = descriptor.pack_dict
        if zdict is None:
            zdict = descriptor.pack_dict = data
        deflate = zlib.compressobj(1, zlib.DEFLATED, -_PACK_WBITS, 1, zlib.Z_DEFAULT_STRATEGY, zdict)
        self.packed = deflate.compress(data) + deflate.flush()
        self.pack_dict = zdict
        self._cmp = None
        self.cmp_encoded = None  # the cached texts are inside ``packed`` now
        return True

    def _unpack(self) -> dict[str, Any]:
        data = self.packed
        assert data is not None and self.pack_dict is not None, f"{self!r} has neither CMP values nor packed state"
        inflate = zlib.decompressobj(-_PACK_WBITS, zdict=self.pack_dict)
        text = (inflate.decompress(data) + inflate.flush()).decode()
        container = self.container
        name = self.descriptor.id.name
        cmp = {k: decode_cmp(v, container, name) for k, v in _json.loads(f"{{{text}}}").items()}
        self._cmp = cmp
        self.packed = self.pack_dict = None
        return cmp

    def own_children(self) -> dict[str, list[str]]:
        return own(self, "children")

    def own_masks(self) -> dict[str, set[EventTypeId]]:
        return own(self, "masks")

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def set_cmp(self, name: str, value: Any, *, stored: bool = True) -> None:
        """Assign a CMP field in the current transaction; ``stored=False`` (a field declared
        so): kept and rolled back like the others, but no store write follows."""
        txn = require_transaction()
        cmp = self.cmp
        had = name in cmp
        old = cmp.get(name)
        cmp[name] = value

        def undo() -> None:
            if had:
                cmp[name] = old
            else:
                cmp.pop(name, None)

        txn.record_undo(undo)
        if stored:
            txn.mark_dirty(self)
            self.written(name)

    def written(self, name: str) -> None:
        """CMP field ``name`` changed: re-encode it at the next store write (harmless if the
        change is undone)."""
        dirty = self.cmp_dirty
        if dirty is None:  # an empty set is 216 bytes: most entities are clean most of the time
            dirty = self.cmp_dirty = set()
        dirty.add(name)

    def clear_cmp(self, name: str, *, stored: bool = True) -> None:
        """Back to the field's default: the value is dropped (nothing to do if it is not set)."""
        cmp = self.cmp
        if name not in cmp:
            return
        txn = require_transaction()
        old = cmp.pop(name)
        txn.record_undo(lambda: cmp.__setitem__(name, old))
        if stored:
            txn.mark_dirty(self)
            self.written(name)

    def _durable(self) -> bool:
        """Worth a store row: on a persistent activity, part of a tree, or already stored.

        A root entity attached only to transient activities (a SIP transaction) would be
        removed on restore anyway — its row would be written and deleted for nothing.
        """
        if self.stored or self.parent_id is not None or self.children:
            return True
        acs = self.container.activity_contexts_by_id
        return any(ac.persistent for ac in (acs.get(a) for a in self.attached) if ac is not None)

    def persist(self, txn: Any) -> None:
        if self.removed:
            if self.stored:
                txn.delete("sbb", self.id)
                self.stored = False
            return
        if not self._durable():
            return
        self.stored = True
        # The document is assembled from JSON text: each CMP field is encoded once per
        # assignment, not once per write of the entity (a presentity's watcher map would
        # otherwise be re-encoded on every change of any field).
        dumps = _json.dumps
        # Attachments to transient activities (SIP transactions) are not stored: they do
        # not survive a restart, and attaching to one does not rewrite the document.
        acs = self.container.activity_contexts_by_id
        kept = [a for a in self.attached if (ac := acs.get(a)) is not None and ac.persistent]
        head = dumps({
            "service": str(self.service.id),
            "sbb": str(self.descriptor.id),
            "parent": self.parent_id,
            "relation": self.relation,
            "conv": self.convergence_name,
            "priority": self.priority,
            "acs": sorted(kept),
            "children": dict(self.children),
            "masks": {ac: sorted(str(e) for e in evs) for ac, evs in self.masks.items() if ac in kept},
        })
        txn.put("sbb", self.id, EncodedJson(f'{head[:-1]},"cmp":{{{self._cmp_json(self.descriptor.unstored)}}}}}'))

    def _cmp_json(self, leave_out: frozenset[str] = frozenset()) -> str:
        """The CMP fields as the inside of a JSON object.

        Scalars (str, int, float, bool, None) are written out each time, which is cheap.
        The JSON of large structured values (maps, lists, bytes of ``_CACHE_MIN`` characters
        or more) is kept between writes and redone only for fields assigned since the last
        one (CMP fields are assigned, never mutated in place): re-encoding a presentity's
        watcher map on every change of any field was 8 % of a SUBSCRIBE. Small ones (an SBB
        or activity reference, a short map) are encoded again each time: keeping their text
        cost ~0.9 KiB per subscription, and encoding them takes microseconds. Fields named
        in ``leave_out`` (declared ``stored=False``) are not written to the store.
        """
        enc = self.cmp_encoded
        cmp = self.cmp
        dirty = self.cmp_dirty
        everything = enc is None  # never written: no cached text is valid
        if everything:
            enc = EMPTY  # type: ignore[assignment]  # written once, nothing large (yet)
        elif dirty and enc:
            for name in dirty:  # dropped, or now a scalar: its cached text is stale
                if type(cmp.get(name)) in _SCALAR_JSON:
                    enc.pop(name, None)  # type: ignore[union-attr]
        dumps = _json.dumps
        parts = []
        for name, value in cmp.items():
            if leave_out and name in leave_out:
                continue
            key = _FIELD_JSON.get(name)
            if key is None:
                key = _FIELD_JSON[name] = encode_basestring(name)
            writer = _SCALAR_JSON.get(type(value))
            if writer is not None:
                text = writer(value)
            else:
                text = None if everything or (dirty and name in dirty) else enc.get(name)  # type: ignore[union-attr]
                if text is None:
                    text = dumps(encode_cmp(value))
                    if len(text) >= _CACHE_MIN:
                        if type(enc) is not dict:
                            enc = {}
                        enc[name] = text  # type: ignore[index]
                    elif enc:
                        enc.pop(name, None)  # type: ignore[union-attr]
            parts.append(f"{key}:{text}")
        self.cmp_encoded = enc
        self.cmp_dirty = None
        return ",".join(parts)

    def __repr__(self) -> str:
        return f"<SbbEntity {self.id} {self.descriptor.id.name} prio={self.priority}>"


def _float_json(value: float) -> str:
    if value != value or value in (math.inf, -math.inf):
        raise ValueError("Out of range float values are not JSON compliant")
    return float.__repr__(value)


# JSON text of scalar CMP values, as the store's encoder writes them (ensure_ascii off).
_SCALAR_JSON: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    bool: lambda v: "true" if v else "false",
    int: int.__repr__,
    float: _float_json,
    type(None): lambda v: "null",
}
_FIELD_JSON: dict[str, str] = {}  # CMP field name -> its JSON text
_CACHE_MIN = 256  # structured CMP values whose JSON is at least this long keep it between writes
_PACK_MAX = 2048  # CMP state packed while passivated up to this many characters of JSON
_PACK_WBITS = 11  # a 2 KiB deflate window (dictionary + state); small windows are quick to set up


def _packable(value: Any) -> bool:
    """Whether ``value`` comes back from its stored JSON as an equal value of the same type:
    not a tuple (it would come back a list), not a subclass of a plain type (an enum), not
    a typed ACI view (its class is not stored; a plain ``ActivityContextInterface`` is)."""
    t = type(value)
    if t in _SCALAR_JSON or t is bytes or t is SbbLocalObject or t is ActivityContextInterface:
        return True
    if t is list:
        return all(_packable(v) for v in value)
    if t is dict:
        return "$t" not in value and all(type(k) is str and _packable(v) for k, v in value.items())
    return False


class SbbObjectPool:
    """Pooled SBB objects per SBB class: constructed and given a context once, reused."""

    def __init__(self, container: Container, max_pooled: int = 64) -> None:
        self.container = container
        self.max_pooled = max_pooled
        self.created = 0

    def take(self, descriptor: SbbDescriptor, service: Service) -> Sbb:
        pool = descriptor.pool
        if pool:
            obj = pool.pop()
            obj.context.service = service
            return obj
        obj = descriptor.cls()
        obj.set_sbb_context(SbbContext(self.container, descriptor, service, obj))
        self.created += 1
        return obj

    def give_back(self, descriptor: SbbDescriptor, obj: Sbb) -> None:
        obj._slee_entity = None
        if len(descriptor.pool) < self.max_pooled:
            descriptor.pool.append(obj)
        else:
            try:
                obj.unset_sbb_context()
            except Exception as exc:
                self.container._trace_error(f"unset_sbb_context of {descriptor.id} failed", exc)

    def drain(self, descriptor: SbbDescriptor) -> None:
        while descriptor.pool:
            obj = descriptor.pool.pop()
            try:
                obj.unset_sbb_context()
            except Exception as exc:
                self.container._trace_error(f"unset_sbb_context of {descriptor.id} failed", exc)

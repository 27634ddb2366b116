"""Profile facility (JSR 240 §10): typed, persisted provisioning data in profile tables.

A profile specification is a Python class deriving from ``ProfileSpec`` whose
``ProfileAttribute``s give the attribute names and types. Tables are created at run time
(by deployment recipes or the CLI); SBBs read them and may write them transactionally;
management writes run in their own transaction. Indexed attributes answer
``find(attr, value)``; an attribute named ``addresses`` makes the table usable as a
service's address-profile table (initial-event selection by ``address_profile``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slee._ids import ProfileSpecId
from slee.errors import ProfileError
from slee.transaction import current_transaction

if TYPE_CHECKING:
    from slee.container import Container


class ProfileAttribute:
    """A typed profile attribute; ``indexed`` ones can be searched by value."""

    def __init__(self, type_: type | tuple[type, ...] = str, *, default: Any = None, indexed: bool = False,
                 unique: bool = False, description: str = "") -> None:
        self.type = type_
        self.default = default
        self.indexed = indexed or unique
        self.unique = unique
        self.description = description
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def check(self, value: Any) -> Any:
        if value is None:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.type is int and isinstance(value, bool):
            raise ProfileError(f"attribute {self.name} takes int, not bool")
        if not isinstance(value, self.type):
            raise ProfileError(f"attribute {self.name} takes {getattr(self.type, '__name__', self.type)}, not {type(value).__name__}")
        return value

    def parse(self, text: str) -> Any:
        """Convert CLI text to the attribute's type."""
        t = self.type
        try:
            if t is bool:
                if text.lower() in ("true", "yes", "1", "on"):
                    return True
                if text.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(text)
            if t is int:
                return int(text)
            if t is float:
                return float(text)
            if t is list:
                return [p.strip() for p in text.split(",") if p.strip()]
        except ValueError:
            raise ProfileError(f"attribute {self.name}: {text!r} is not a {t.__name__}") from None
        return text


class ProfileSpec:
    """Base class of profile specifications: declare ``ProfileAttribute``s as class attributes."""

    spec_id: ProfileSpecId | None = None

    @classmethod
    def attributes(cls) -> dict[str, ProfileAttribute]:
        out: dict[str, ProfileAttribute] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, ProfileAttribute):
                    out[name] = attr
        return out


class ProfileTable:
    """One table of profiles of one specification."""

    def __init__(self, facility: ProfileFacility, name: str, spec: type[ProfileSpec]) -> None:
        self._facility = facility
        self.name = name
        self.spec = spec
        self.attributes = spec.attributes()
        self._profiles: dict[str, dict[str, Any]] = {}
        self._index: dict[str, dict[Any, set[str]]] = {n: {} for n, a in self.attributes.items() if a.indexed}
        if "addresses" in self.attributes and "addresses" not in self._index:
            self._index["addresses"] = {}

    # -- reads ---------------------------------------------------------------------------
    def get(self, profile: str) -> dict[str, Any] | None:
        """A copy of the profile's attributes (lists and dicts copied too, so callers may
        change what they get without changing the table)."""
        p = self._profiles.get(profile)
        if p is None:
            return None
        return {k: copy.deepcopy(v) if type(v) in (list, dict) else v for k, v in p.items()}

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def __contains__(self, profile: str) -> bool:
        return profile in self._profiles

    def __len__(self) -> int:
        return len(self._profiles)

    def find(self, attribute: str, value: Any) -> list[str]:
        index = self._index.get(attribute)
        if index is None:
            if attribute not in self.attributes:
                raise ProfileError(f"table {self.name} has no attribute {attribute!r}")
            return sorted(n for n, p in self._profiles.items() if _matches(p.get(attribute), value))
        return sorted(index.get(_key(value), ()))

    def find_by_address(self, address: str) -> str | None:
        names = self.find("addresses", address) if "addresses" in self._index else []
        return names[0] if names else None

    # -- writes (transactional) -----------------------------------------------------------
    def create(self, profile: str, **values: Any) -> None:
        if not profile:
            raise ProfileError("a profile needs a name")
        with self._facility._txn() as txn:
            if profile in self._profiles:
                raise ProfileError(f"profile {profile!r} already exists in table {self.name}")
            doc = {n: copy.deepcopy(a.default) for n, a in self.attributes.items()}
            for k, v in values.items():
                doc[k] = self._attr(k).check(v)
            self._check_unique(profile, doc)
            self._write(txn, profile, None, doc)

    def set(self, profile: str, attribute: str, value: Any) -> None:
        with self._facility._txn() as txn:
            old = self._profiles.get(profile)
            if old is None:
                raise ProfileError(f"no profile {profile!r} in table {self.name}")
            new = dict(old)
            new[attribute] = self._attr(attribute).check(value)
            self._check_unique(profile, new)
            self._write(txn, profile, old, new)

    def update(self, profile: str, **values: Any) -> None:
        with self._facility._txn() as txn:
            old = self._profiles.get(profile)
            if old is None:
                raise ProfileError(f"no profile {profile!r} in table {self.name}")
            new = dict(old)
            for k, v in values.items():
                new[k] = self._attr(k).check(v)
            self._check_unique(profile, new)
            self._write(txn, profile, old, new)

    def remove(self, profile: str) -> None:
        with self._facility._txn() as txn:
            old = self._profiles.get(profile)
            if old is None:
                raise ProfileError(f"no profile {profile!r} in table {self.name}")
            self._write(txn, profile, old, None)

    def _attr(self, name: str) -> ProfileAttribute:
        attr = self.attributes.get(name)
        if attr is None:
            raise ProfileError(f"table {self.name} ({self.spec.__name__}) has no attribute {name!r}; "
                               f"it has {', '.join(sorted(self.attributes))}")
        return attr

    def _check_unique(self, profile: str, doc: dict[str, Any]) -> None:
        for name, attr in self.attributes.items():
            if attr.unique and doc.get(name) is not None:
                others = [n for n in self._index[name].get(_key(doc[name]), ()) if n != profile]
                if others:
                    raise ProfileError(f"attribute {name} must be unique: {doc[name]!r} is already used by {others[0]!r}")

    def _write(self, txn: Any, profile: str, old: dict | None, new: dict | None) -> None:
        self._apply(profile, old, new)
        txn.record_undo(lambda: self._apply(profile, new, old))
        txn.on_commit(lambda: self._facility._changed(self.name, profile, old, new))
        if new is None:
            txn.delete(f"profile/{self.name}", profile)
        else:
            txn.put(f"profile/{self.name}", profile, new)

    def _apply(self, profile: str, old: dict | None, new: dict | None) -> None:
        if old is not None:
            for attr, index in self._index.items():
                for k in _keys(old.get(attr)):
                    s = index.get(k)
                    if s is not None:
                        s.discard(profile)
                        if not s:
                            del index[k]
        if new is None:
            self._profiles.pop(profile, None)
        else:
            self._profiles[profile] = new
            for attr, index in self._index.items():
                for k in _keys(new.get(attr)):
                    index.setdefault(k, set()).add(profile)

    def _restore(self, profile: str, doc: dict[str, Any]) -> None:
        self._apply(profile, None, doc)


def _key(value: Any) -> Any:
    if isinstance(value, str):
        return value.lower()
    return value


def _keys(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_key(v) for v in value]
    return [_key(value)]


def _matches(stored: Any, value: Any) -> bool:
    if isinstance(stored, list):
        return _key(value) in [_key(v) for v in stored]
    return _key(stored) == _key(value)


@dataclass(frozen=True, slots=True)
class ProfileTableActivity:
    """The activity on which a table's ProfileAdded/Updated/Removed events are fired."""

    table: str


class ProfileFacility:
    """All profile tables; specs are registered by deployable units.

    A committed change of a profile fires ``PROFILE_ADDED`` / ``PROFILE_UPDATED`` /
    ``PROFILE_REMOVED`` (a ``ProfileEvent`` with the values before and after) on the table's
    ``ProfileTableActivity``, with ``Address("profile", "TABLE/PROFILE")`` — when some active
    service declares the event initial or an SBB entity is attached to that activity.
    """

    def __init__(self, container: Container) -> None:
        self._container = container
        self.specs: dict[str, type[ProfileSpec]] = {}
        self.tables: dict[str, ProfileTable] = {}

    def register_spec(self, spec: type[ProfileSpec], spec_id: ProfileSpecId | None = None) -> None:
        sid = spec_id or spec.spec_id or ProfileSpecId(spec.__name__, "unknown", "1.0")
        spec.spec_id = sid
        self.specs[str(sid)] = spec
        self.specs.setdefault(sid.name, spec)

    def create_table(self, name: str, spec: str | type[ProfileSpec]) -> ProfileTable:
        if name in self.tables:
            raise ProfileError(f"profile table {name!r} already exists")
        if not name or "/" in name:
            raise ProfileError(f"bad profile table name {name!r}")
        spec_cls = self.specs.get(spec) if isinstance(spec, str) else spec
        if spec_cls is None:
            raise ProfileError(f"unknown profile specification {spec!r}; installed: {', '.join(sorted(self.specs)) or 'none'}")
        table = ProfileTable(self, name, spec_cls)
        with self._txn() as txn:
            self.tables[name] = table
            txn.record_undo(lambda: self.tables.pop(name, None))
            txn.put("profile-table", name, {"spec": str(spec_cls.spec_id)})
        return table

    def remove_table(self, name: str) -> None:
        table = self.get_table(name)
        with self._txn() as txn:
            del self.tables[name]
            txn.record_undo(lambda: self.tables.__setitem__(name, table))
            txn.delete("profile-table", name)
            for profile in table.names():
                txn.delete(f"profile/{name}", profile)

    def get_table(self, name: str) -> ProfileTable:
        table = self.tables.get(name)
        if table is None:
            raise ProfileError(f"no profile table {name!r}; tables: {', '.join(sorted(self.tables)) or 'none'}")
        return table

    def _changed(self, table: str, profile: str, old: dict | None, new: dict | None) -> None:
        from slee.events import (
            PROFILE_ADDED,
            PROFILE_REMOVED,
            PROFILE_UPDATED,
            Address,
            ProfileEvent,
        )

        event_type = PROFILE_ADDED if old is None else PROFILE_REMOVED if new is None else PROFILE_UPDATED
        c = self._container
        key = ("profile-table", table)
        ac = c.activity_contexts.get(key)
        if event_type not in c._initial and (ac is None or not ac.attached):
            return  # nobody listens: no activity, no event
        if ac is None:
            ac = c._new_ac("profile-table", table, ProfileTableActivity(table), None, ac_id=f"profile-table/{table}")
        c.enqueue_event(ac, event_type, ProfileEvent(table, profile, copy.deepcopy(old), copy.deepcopy(new)),
                        Address("profile", f"{table}/{profile}"))

    def _txn(self) -> Any:
        if current_transaction.get() is not None:
            return self._container.transactions.transaction()
        return self._container.transaction()

    def _restore_table(self, name: str, spec_name: str) -> ProfileTable | None:
        spec = self.specs.get(spec_name)
        if spec is None:
            return None
        table = self.tables[name] = ProfileTable(self, name, spec)
        return table

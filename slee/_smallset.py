"""A set for the handful of items an entity or activity holds (its activities, names, timers).

CPython's smallest set is 216 bytes; a list of one or two ids is 64–72. These sets hold one
or two items almost always and there are several per subscription, so membership is a scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[Any, Any] = MappingProxyType({})
"""What an entity's children and event masks and an activity's attributes are until the
first one: most have none, and an empty dict is 64 bytes each. Read-only, so a write that
forgot to take its own dict first fails instead of reaching every other holder."""


def own(holder: Any, attribute: str) -> dict[Any, Any]:
    """``holder.attribute`` as a dict of its own, ready to write (replacing `EMPTY`)."""
    value = getattr(holder, attribute)
    if type(value) is not dict:
        value = {}
        setattr(holder, attribute, value)
    return value


class SmallSet(list):
    """The set operations the container uses (add, discard, update), on a list."""

    __slots__ = ()

    def add(self, item: str) -> None:
        if item not in self:
            self.append(item)

    def discard(self, item: str) -> None:
        if item in self:
            self.remove(item)

    def update(self, items: Iterable[str]) -> None:
        for item in items:
            self.add(item)

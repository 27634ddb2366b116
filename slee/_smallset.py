"""A set for the handful of items an entity or activity holds (its activities, names, timers).

CPython's smallest set is 216 bytes; a list of one or two ids is 64–72. These sets hold one
or two items almost always and there are several per subscription, so membership is a scan.
"""

from __future__ import annotations

from collections.abc import Iterable


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

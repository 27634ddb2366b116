"""Service settings parsed once: the same entries give the same immutable config object.

Services read their configuration (recipe entries, overridden by a settings profile) on
every request; parsing it each time was a few percent of a REGISTER. ``SettingsCache``
remembers the parsed object by the entries themselves, so a changed profile is seen at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["SettingsCache"]

T = TypeVar("T")


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class SettingsCache(Generic[T]):
    """``cache.get(entries)`` is ``parse(entries)``, parsed once per distinct entries (at most
    ``size`` kept; entries with an unhashable value are parsed every time)."""

    def __init__(self, parse: Callable[[Mapping[str, Any]], T], size: int = 32) -> None:
        self._parse = parse
        self._size = size
        self._by_entries: dict[Any, T] = {}

    def get(self, entries: Mapping[str, Any]) -> T:
        try:
            key: Any = tuple(sorted((k, _frozen(v)) for k, v in entries.items()))
            cached = self._by_entries.get(key)
        except TypeError:  # an unhashable value (a map)
            return self._parse(entries)
        if cached is None:
            cached = self._parse(entries)
            if len(self._by_entries) >= self._size:
                self._by_entries.clear()
            self._by_entries[key] = cached
        return cached

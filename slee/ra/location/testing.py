"""A location provider for per-SBB unit tests (no RA entity, no store).

It is the real binding table behind the real provider API, with the harness's clock; the
changes it would announce are recorded in ``events`` (``(event_type, LocationEvent)``)::

    loc = FakeLocation(clock=h.clock)          # or FakeLocation(now=lambda: 1000.0)
    h = SbbHarness(RegistrarSbb, providers={"sip": net.provider, "location": loc.provider})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slee._ids import EventTypeId
from slee.ra.location._ra import LocationProvider
from slee.ra.location._table import LocationTable
from slee.ra.location.events import (
    LOCATION_CHANGED,
    LOCATION_DEREGISTERED,
    LOCATION_REGISTERED,
    LocationEvent,
)


class FakeLocation:
    def __init__(self, *, clock: Any = None, now: Callable[[], float] | None = None) -> None:
        if now is None:
            if clock is None:
                raise TypeError("give clock= (with .now()) or now=")
            now = clock.now
        self.events: list[tuple[EventTypeId, LocationEvent]] = []
        self.table = LocationTable(now=now, notify=self._changed)
        self.provider = LocationProvider(self.table)

    def _changed(self, event: LocationEvent, before: int, after: int) -> None:
        kind = (LOCATION_REGISTERED if before == 0 and after > 0
                else LOCATION_DEREGISTERED if after == 0 else LOCATION_CHANGED)
        self.events.append((kind, event))

    def bind_later(self, clock_owner: Any) -> None:
        """Use ``clock_owner.clock`` (e.g. a harness created after this fake)."""
        self.table._now = clock_owner.clock.now


__all__ = ["FakeLocation"]

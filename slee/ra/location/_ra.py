"""The location resource adaptor: the binding table as a SLEE resource.

SBBs reach it with ``self.context.ra("location")`` (a ``LocationProvider``). The registrar
writes through it inside its transaction; everyone may read it and may receive its events
(``LOCATION_REGISTERED`` / ``LOCATION_DEREGISTERED`` / ``LOCATION_CHANGED``) on the AOR's
activity. Bindings live in the container store (namespace ``location/<entity>``), so they
survive a restart; an expiry timer on the event loop removes them when they run out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from slee._ids import ResourceAdaptorId, ResourceAdaptorTypeId
from slee.events import Address
from slee.ra.location._table import LocationTable
from slee.ra.location.events import (
    LOCATION_CHANGED,
    LOCATION_DEREGISTERED,
    LOCATION_REGISTERED,
    Binding,
    LocationEvent,
)
from slee.ra.spi import ConfigProperty, ResourceAdaptor, ResourceAdaptorType


@dataclass(frozen=True, slots=True)
class AorActivity:
    """One address-of-record while it has bindings; its events carry ``Address("sip", aor)``."""

    aor: str
    generation: int = 0


class LocationProvider:
    """What SBBs get: reads for everyone, transactional writes for the registrar."""

    def __init__(self, table: LocationTable) -> None:
        self._table = table

    def lookup(self, aor: str) -> list[Binding]:
        """Unexpired bindings of ``aor`` (normalised with ``slee.ra.sip.aor_of``), best q first."""
        return self._table.lookup(aor)

    def aors(self) -> list[str]:
        """Every AOR with at least one unexpired binding."""
        return self._table.aors()

    def version(self, aor: str) -> int:
        """Changes so far to ``aor``: pass it back to ``save`` to detect a concurrent writer."""
        return self._table.version(aor)

    def was_registered(self, aor: str) -> bool:
        """True if ``aor`` ever had a binding (lets a proxy tell 480 from 404)."""
        return self._table.was_registered(aor)

    def save(self, aor: str, bindings: Iterable[Binding], reason: str, *,
             expected_version: int | None = None) -> int:
        """Replace every binding of ``aor`` (in the caller's SLEE transaction)."""
        return self._table.save(aor, bindings, reason, expected_version=expected_version)

    def remove_all(self, aor: str, reason: str = "unregistered") -> None:
        self._table.save(aor, (), reason)


LOCATION_RA_TYPE = ResourceAdaptorType(
    ResourceAdaptorTypeId("Location", "slee", "1.0"),
    {LOCATION_REGISTERED: LocationEvent, LOCATION_DEREGISTERED: LocationEvent, LOCATION_CHANGED: LocationEvent},
    (AorActivity,),
    LocationProvider,
    "SIP location service: bindings of addresses-of-record, their changes as events",
)


class LocationResourceAdaptor(ResourceAdaptor):
    ra_id = ResourceAdaptorId("LocationRA", "slee", "1.0")
    ra_type = LOCATION_RA_TYPE
    config_properties = {
        "expiry_slack": ConfigProperty(float, 0.0, "seconds after expiry before a binding is swept"),
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.table = LocationTable(now=context.clock.now, namespace=f"location/{context.entity_name}",
                                   notify=self._changed)
        self.provider = LocationProvider(self.table)
        self._activities: dict[str, AorActivity] = {}
        self._generations = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.fired = 0
        self.expired = 0

    def ra_configure(self, config: dict[str, Any]) -> None:
        store = self.context.container.store
        if store is not None:
            loaded = self.table.load(store.load(self.table.namespace))
            if loaded:
                self.context.tracer.info("restored %d bindings", loaded)

    def get_provider(self) -> LocationProvider:
        return self.provider

    async def ra_active(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rearm()

    async def ra_inactive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._loop = None

    def activity_ended(self, handle: Hashable) -> None:
        if isinstance(handle, AorActivity) and self._activities.get(handle.aor) == handle:
            del self._activities[handle.aor]

    def stats(self) -> dict[str, Any]:
        return {"bindings": len(self.table), "aors": len(self.table.aors()), "events_fired": self.fired,
                "expired_sweeps": self.expired, "next_expiry": self.table.next_expiry()}

    # -- events -----------------------------------------------------------------------------
    def _changed(self, event: LocationEvent, before: int, after: int) -> None:
        """After commit: announce on the AOR's activity, then re-arm the expiry timer."""
        if before == 0 and after > 0:
            event_type = LOCATION_REGISTERED
        elif after == 0:
            event_type = LOCATION_DEREGISTERED
        else:
            event_type = LOCATION_CHANGED
        endpoint = self.context.endpoint
        activity = self._activities.get(event.aor)
        if activity is None or not endpoint.activity_exists(activity):
            activity = AorActivity(event.aor, next(self._generations))
            # Ends once its events are delivered unless a service attached to it (a
            # presentity someone watches): one activity context per registered AOR would
            # cost every registration ~0.5 KiB for nothing.
            endpoint.start_activity(activity, activity, implicit_end=True)
            self._activities[event.aor] = activity
        try:
            endpoint.fire_event(activity, event_type, event, Address("sip", event.aor))
            self.fired += 1
        except Exception as exc:
            self.context.tracer.warning("could not fire %s for %s: %s", event_type.name, event.aor, exc)
        if event_type is LOCATION_DEREGISTERED:
            # The AOR's activity ends behind its last event; a new registration starts a new one.
            del self._activities[event.aor]
            endpoint.end_activity(activity)
        self._rearm()

    # -- expiry -------------------------------------------------------------------------------
    def _rearm(self) -> None:
        if self._loop is None:
            return
        deadline = self.table.next_expiry()
        if deadline is not None:
            deadline += self.context.config.get("expiry_slack") or 0.0
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.context.clock.now())
            self._timer = self._loop.call_later(delay + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.sweep()
        self._rearm()

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove expired bindings in a transaction of their own; returns the AORs changed."""
        now = self.context.clock.now() if now is None else now
        with self.context.container.transaction():
            changed = self.table.remove_expired(now)
        self.expired += len(changed)
        return changed

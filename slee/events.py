"""Event types and the container's own events (JSR 240 §8.1, §7.1.1, §13.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slee._ids import ComponentId, EventTypeId

SLEE_VENDOR = "javax.slee"
SLEE_VERSION = "1.1"

ACTIVITY_END = EventTypeId("javax.slee.ActivityEndEvent", SLEE_VENDOR, "1.0")
TIMER_EVENT = EventTypeId("javax.slee.facilities.TimerEvent", SLEE_VENDOR, "1.0")
SERVICE_STARTED = EventTypeId("javax.slee.serviceactivity.ServiceStartedEvent", SLEE_VENDOR, "1.1")
PROFILE_ADDED = EventTypeId("javax.slee.profile.ProfileAddedEvent", SLEE_VENDOR, "1.0")
PROFILE_UPDATED = EventTypeId("javax.slee.profile.ProfileUpdatedEvent", SLEE_VENDOR, "1.0")
PROFILE_REMOVED = EventTypeId("javax.slee.profile.ProfileRemovedEvent", SLEE_VENDOR, "1.0")


@dataclass(frozen=True, slots=True)
class Address:
    """A default address carried by an event (JSR 240 §10.1): plan plus address string."""

    plan: str
    address: str

    def __str__(self) -> str:
        return f"{self.plan}:{self.address}"


@dataclass(frozen=True, slots=True)
class EventType:
    """An installed event type: its id, the Python class of its events and who defined it."""

    id: EventTypeId
    event_class: type | None = None
    owner: ComponentId | None = None


@dataclass(frozen=True, slots=True)
class ActivityEndEvent:
    """Delivered once on an activity as it ends; after it every SBB is detached."""

    activity_context_id: str


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """A timer expiry: fired on the activity the timer was set on."""

    timer_id: str
    scheduled_time: float
    expiry_time: float
    period: float | None
    num_repetitions: int
    remaining_repetitions: int
    missed_repetitions: int = 0


@dataclass(frozen=True, slots=True)
class ServiceStartedEvent:
    """Fired on a service's ServiceActivity when the service becomes ACTIVE."""

    service_id: str


@dataclass(frozen=True, slots=True)
class ProfileEvent:
    """Profile added / updated / removed in a table (fired on the profile table activity)."""

    table: str
    profile: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(slots=True)
class EventTypeRegistry:
    """All installed event types, by id and by name."""

    _types: dict[EventTypeId, EventType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for eid, cls in (
            (ACTIVITY_END, ActivityEndEvent),
            (TIMER_EVENT, TimerEvent),
            (SERVICE_STARTED, ServiceStartedEvent),
            (PROFILE_ADDED, ProfileEvent),
            (PROFILE_UPDATED, ProfileEvent),
            (PROFILE_REMOVED, ProfileEvent),
        ):
            self._types[eid] = EventType(eid, cls, None)

    def install(self, event_type: EventType) -> None:
        existing = self._types.get(event_type.id)
        if existing is not None and existing.owner not in (None, event_type.owner):
            raise ValueError(f"event type {event_type.id} is already installed by {existing.owner}")
        self._types[event_type.id] = event_type

    def uninstall_owned_by(self, owner: ComponentId) -> None:
        for eid in [e for e, t in self._types.items() if t.owner == owner]:
            del self._types[eid]

    def get(self, event_type_id: EventTypeId) -> EventType | None:
        return self._types.get(event_type_id)

    def __contains__(self, event_type_id: object) -> bool:
        return event_type_id in self._types

    def all(self) -> list[EventType]:
        return sorted(self._types.values(), key=lambda t: t.id)

"""Location service event types and event objects (the contract other services import).

The location RA fires these on one activity per AOR (``AorActivity``) with
``Address("sip", aor)`` as the event address, after the transaction that changed the
bindings commits, and when its expiry timer removes the last binding of an AOR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slee._ids import EventTypeId

LOCATION_REGISTERED = EventTypeId("slee.location.Registered", "slee", "1.0")  # AOR went 0 -> >=1 bindings
LOCATION_DEREGISTERED = EventTypeId("slee.location.Deregistered", "slee", "1.0")  # AOR went to 0 bindings
LOCATION_CHANGED = EventTypeId("slee.location.BindingsChanged", "slee", "1.0")  # still registered, changed

REASONS = ("registered", "refreshed", "unregistered", "expired", "wildcard", "changed")


@dataclass(frozen=True)
class Binding:
    """One contact bound to an address-of-record (RFC 3261 §10.3)."""

    aor: str
    contact: str  # the Contact URI exactly as the UA sent it
    expires_at: float  # epoch seconds
    q: float | None
    call_id: str
    cseq: int
    path: tuple[str, ...] = ()  # RFC 3327 Path header values, in order
    received: tuple[str, str, int] | None = None  # (transport, host, port) of the flow it came over
    instance: str | None = None  # RFC 5626 +sip.instance
    reg_id: int | None = None  # RFC 5626 reg-id
    user_agent: str | None = None

    def remaining(self, now: float) -> int:
        """Seconds left, rounded down, never negative (for the Contact expires param)."""
        return max(0, int(self.expires_at - now))

    def to_json(self) -> dict[str, Any]:
        return {"contact": self.contact, "expires_at": self.expires_at, "q": self.q, "call_id": self.call_id,
                "cseq": self.cseq, "path": list(self.path),
                "received": list(self.received) if self.received else None, "instance": self.instance,
                "reg_id": self.reg_id, "user_agent": self.user_agent}

    @classmethod
    def from_json(cls, aor: str, doc: dict[str, Any]) -> Binding:
        received = doc.get("received")
        return cls(aor, doc["contact"], float(doc["expires_at"]), doc.get("q"), doc["call_id"], int(doc["cseq"]),
                   tuple(doc.get("path") or ()),
                   (received[0], received[1], int(received[2])) if received else None,
                   doc.get("instance"), doc.get("reg_id"), doc.get("user_agent"))


@dataclass(frozen=True)
class LocationEvent:
    """What changed for one AOR: its bindings afterwards and why."""

    aor: str
    bindings: tuple[Binding, ...]
    reason: str  # one of REASONS


__all__ = [
    "LOCATION_CHANGED",
    "LOCATION_DEREGISTERED",
    "LOCATION_REGISTERED",
    "REASONS",
    "Binding",
    "LocationEvent",
]

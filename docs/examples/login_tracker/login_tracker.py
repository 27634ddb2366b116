"""Example SBBs: track user logins, notice idle users, keep an audit trail.

This is the model for service authors. It shows the usual SLEE pieces in one place:

- an initial event selected by address (one root SBB entity per user);
- CMP fields (persisted, transactional state of the entity);
- a null activity bound in the naming facility, carrying a periodic timer;
- a child SBB reached through its local interface;
- events fired by the SBB, usage counters and a tracer.
"""

from __future__ import annotations

from dataclasses import dataclass

from slee import (
    TIMER_EVENT,
    ChildRelation,
    CmpField,
    EventTypeId,
    Sbb,
    TimerEvent,
    event_handler,
    local_method,
)

VENDOR = "org.example"
USER_LOGGED_IN = EventTypeId("example.UserLoggedIn", VENDOR, "1.0")
USER_LOGGED_OUT = EventTypeId("example.UserLoggedOut", VENDOR, "1.0")
USER_IDLE = EventTypeId("example.UserIdle", VENDOR, "1.0")

IDLE_CHECK_INTERVAL = 60.0  # seconds between idle checks
IDLE_AFTER = 300.0  # a user with no login for this long is idle


@dataclass(frozen=True)
class UserLoggedIn:
    user: str
    device: str


@dataclass(frozen=True)
class UserLoggedOut:
    user: str
    device: str


@dataclass(frozen=True)
class UserIdle:
    user: str
    idle_for: float


class AuditSbb(Sbb):
    """Child SBB: keeps the last few audit lines of its parent's user."""

    sbb_name, sbb_vendor, sbb_version = "AuditSbb", VENDOR, "1.0"
    lines = CmpField(list)

    @local_method
    def record(self, line: str, keep: int = 5) -> int:
        self.lines = [*(self.lines or []), line][-keep:]
        return len(self.lines)


class LoginTrackerSbb(Sbb):
    """Root SBB: one entity per user (convergence on the event's address)."""

    sbb_name, sbb_vendor, sbb_version = "LoginTrackerSbb", VENDOR, "1.0"

    user = CmpField(str)
    devices = CmpField(list)  # devices currently logged in
    last_login = CmpField(float)
    timer_id = CmpField(str)
    audit = ChildRelation(AuditSbb)
    audit_ref = CmpField(object)  # the SbbLocalObject of the audit child

    @event_handler(USER_LOGGED_IN, initial=True, select=("address",))
    def on_login(self, event: UserLoggedIn, aci) -> None:
        self.user = event.user
        self.devices = sorted({*(self.devices or []), event.device})
        self.last_login = self.context.now()
        self.context.usage().increment("logins")
        self._audit(f"login {event.device}")
        if self.timer_id is None:
            self._start_idle_timer(event.user)
        tracer = self.tracer
        if tracer.is_fine_enabled:  # guard: do not format what nobody reads
            tracer.fine("%s logged in from %s (%d devices)", event.user, event.device, len(self.devices))

    @event_handler(USER_LOGGED_OUT, initial=True, select=("address",))
    def on_logout(self, event: UserLoggedOut, aci) -> None:
        self.devices = [d for d in (self.devices or []) if d != event.device]
        self.context.usage().increment("logouts")
        self._audit(f"logout {event.device}")
        if not self.devices and self.timer_id is not None:
            self._stop_tracking(event.user)

    @event_handler(TIMER_EVENT)
    def on_idle_check(self, event: TimerEvent, aci) -> None:
        idle_for = self.context.now() - (self.last_login or 0.0)
        if idle_for >= IDLE_AFTER:
            self.fire_event(USER_IDLE, UserIdle(self.user, idle_for), aci)
            self.context.usage().increment("idle")

    # -- helpers ---------------------------------------------------------------------
    def _audit(self, line: str) -> None:
        if self.audit_ref is None:
            self.audit_ref = self.audit.create()
        self.audit_ref.record(line)

    def _start_idle_timer(self, user: str) -> None:
        null = self.context.null_activity_factory.create_null_activity()
        aci = self.context.aci_for(null)
        aci.attach(self.context.sbb_local_object)
        self.context.naming.bind(aci, f"login-tracker:{user}")
        self.timer_id = self.context.timer_facility.set_timer_in(
            aci, IDLE_CHECK_INTERVAL, period=IDLE_CHECK_INTERVAL, repetitions=0
        )

    def _stop_tracking(self, user: str) -> None:
        self.context.timer_facility.cancel_timer(self.timer_id)
        self.timer_id = None
        aci = self.context.naming.lookup(f"login-tracker:{user}")
        if aci is not None:
            self.context.naming.unbind(f"login-tracker:{user}")
            aci.activity.end_activity()

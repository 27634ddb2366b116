"""A JAIN SLEE (JSR 240) style event container, with a sans-IO SIP stack and SIP services.

The names a service author needs are re-exported here; see docs/writing-an-sbb.md.
"""

from slee._ids import (
    ComponentId,
    DeployableUnitId,
    EventTypeId,
    ProfileSpecId,
    ResourceAdaptorId,
    ResourceAdaptorTypeId,
    SbbId,
    ServiceId,
)
from slee.activity import AciAttribute, ActivityContextInterface, NullActivity
from slee.events import (
    ACTIVITY_END,
    SERVICE_STARTED,
    TIMER_EVENT,
    ActivityEndEvent,
    Address,
    EventType,
    ServiceStartedEvent,
    TimerEvent,
)
from slee.facilities import (
    AlarmLevel,
    ProfileAttribute,
    ProfileSpec,
    TimerOptions,
    TimerPreserveMissed,
    TraceLevel,
)
from slee.sbb import (
    ChildRelation,
    CmpField,
    InitialEventSelector,
    RolledBackContext,
    Sbb,
    SbbContext,
    SbbLocalObject,
    event_handler,
    initial_event_selector,
    local_method,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVITY_END",
    "SERVICE_STARTED",
    "TIMER_EVENT",
    "AciAttribute",
    "ActivityContextInterface",
    "ActivityEndEvent",
    "Address",
    "AlarmLevel",
    "ChildRelation",
    "CmpField",
    "ComponentId",
    "DeployableUnitId",
    "EventType",
    "EventTypeId",
    "InitialEventSelector",
    "NullActivity",
    "ProfileAttribute",
    "ProfileSpec",
    "ProfileSpecId",
    "ResourceAdaptorId",
    "ResourceAdaptorTypeId",
    "RolledBackContext",
    "Sbb",
    "SbbContext",
    "SbbId",
    "SbbLocalObject",
    "ServiceId",
    "ServiceStartedEvent",
    "TimerEvent",
    "TimerOptions",
    "TimerPreserveMissed",
    "TraceLevel",
    "__version__",
    "event_handler",
    "initial_event_selector",
    "local_method",
]

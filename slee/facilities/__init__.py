"""SLEE facilities (JSR 240 §13): timer, tracer, alarm, usage, profile."""

from slee.facilities.alarm import AlarmFacility, AlarmLevel
from slee.facilities.profile import ProfileAttribute, ProfileFacility, ProfileSpec, ProfileTable
from slee.facilities.timer import TimerFacility, TimerOptions, TimerPreserveMissed
from slee.facilities.tracer import TraceLevel, Tracer, TracerRegistry
from slee.facilities.usage import UsageParameterSet, UsageRegistry

__all__ = [
    "AlarmFacility",
    "AlarmLevel",
    "ProfileAttribute",
    "ProfileFacility",
    "ProfileSpec",
    "ProfileTable",
    "TimerFacility",
    "TimerOptions",
    "TimerPreserveMissed",
    "TraceLevel",
    "Tracer",
    "TracerRegistry",
    "UsageParameterSet",
    "UsageRegistry",
]

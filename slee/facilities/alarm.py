"""Alarm facility (JSR 240 §13.2): stateful alarms raised and cleared by components."""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("slee.alarm")


class AlarmLevel(enum.IntEnum):
    CLEARED = 0
    INDETERMINATE = 1
    WARNING = 2
    MINOR = 3
    MAJOR = 4
    CRITICAL = 5


@dataclass(slots=True)
class Alarm:
    id: str
    source: str
    alarm_type: str
    instance_id: str
    level: AlarmLevel
    message: str
    raised_at: float
    cause: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["level"] = self.level.name
        return d


class AlarmFacility:
    """Active alarms keyed by (source, type, instance); raising twice updates in place."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._alarms: dict[tuple[str, str, str], Alarm] = {}
        self._ids = itertools.count(1)
        self.listeners: list[Callable[[str, Alarm], None]] = []

    def raise_alarm(self, source: str, alarm_type: str, instance_id: str, level: AlarmLevel | str,
                    message: str, cause: BaseException | None = None) -> str:
        if isinstance(level, str):
            level = AlarmLevel[level.upper()]
        if level is AlarmLevel.CLEARED:
            raise ValueError("raise an alarm with a level above CLEARED; use clear_alarm to clear it")
        key = (source, alarm_type, instance_id)
        alarm = self._alarms.get(key)
        if alarm is not None:
            if alarm.level == level and alarm.message == message:
                return alarm.id
            alarm.level, alarm.message = level, message
        else:
            alarm = Alarm(f"alarm-{next(self._ids)}", source, alarm_type, instance_id, level, message,
                          self._clock.now(), repr(cause) if cause else None)
            self._alarms[key] = alarm
        log.warning("alarm raised %s [%s] %s: %s", alarm.id, level.name, alarm_type, message)
        self._notify("raised", alarm)
        return alarm.id

    def clear_alarm(self, source: str, alarm_type: str, instance_id: str) -> bool:
        alarm = self._alarms.pop((source, alarm_type, instance_id), None)
        if alarm is None:
            return False
        log.info("alarm cleared %s %s", alarm.id, alarm_type)
        self._notify("cleared", alarm)
        return True

    def clear_by_id(self, alarm_id: str) -> bool:
        for key, alarm in list(self._alarms.items()):
            if alarm.id == alarm_id:
                return self.clear_alarm(*key)
        return False

    def clear_alarms(self, source: str, alarm_type: str | None = None) -> int:
        keys = [k for k in self._alarms if k[0] == source and (alarm_type is None or k[1] == alarm_type)]
        for key in keys:
            self.clear_alarm(*key)
        return len(keys)

    def list(self) -> list[Alarm]:
        return sorted(self._alarms.values(), key=lambda a: a.raised_at)

    def for_component(self, source: str) -> ComponentAlarms:
        return ComponentAlarms(self, source)

    def _notify(self, what: str, alarm: Alarm) -> None:
        for listener in self.listeners:
            try:
                listener(what, alarm)
            except Exception:
                log.exception("alarm listener failed")


class ComponentAlarms:
    """The alarm facility as one component sees it (its alarms carry its name as source)."""

    __slots__ = ("_facility", "source")

    def __init__(self, facility: AlarmFacility, source: str) -> None:
        self._facility = facility
        self.source = source

    def raise_alarm(self, alarm_type: str, instance_id: str, level: AlarmLevel | str, message: str,
                    cause: BaseException | None = None) -> str:
        return self._facility.raise_alarm(self.source, alarm_type, instance_id, level, message, cause)

    def clear_alarm(self, alarm_type: str, instance_id: str) -> bool:
        return self._facility.clear_alarm(self.source, alarm_type, instance_id)

    def clear_alarms(self, alarm_type: str | None = None) -> int:
        return self._facility.clear_alarms(self.source, alarm_type)

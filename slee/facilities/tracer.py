"""Tracer facility (JSR 240 §13.3): per-component tracers with levels settable at run time."""

from __future__ import annotations

import enum
import logging
from typing import Any


class TraceLevel(enum.IntEnum):
    OFF = 100
    SEVERE = 40
    WARNING = 30
    INFO = 20
    CONFIG = 15
    FINE = 10
    FINER = 7
    FINEST = 5

    @classmethod
    def parse(cls, text: str | TraceLevel) -> TraceLevel:
        if isinstance(text, TraceLevel):
            return text
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown trace level {text!r}; use one of {', '.join(m.name for m in cls)}") from None


for _lvl in TraceLevel:
    if _lvl is not TraceLevel.OFF:
        logging.addLevelName(int(_lvl), _lvl.name)


class Tracer:
    """Named tracer of one component. Check ``is_fine_enabled`` before building costly text."""

    __slots__ = ("_logger", "_registry", "component", "level", "name")

    def __init__(self, registry: TracerRegistry, component: str, name: str) -> None:
        self._registry = registry
        self.component = component
        self.name = name
        self._logger = logging.getLogger(f"slee.trace.{component}.{name}")
        self.level = registry.effective_level(component, name)

    def is_enabled(self, level: TraceLevel) -> bool:
        return level >= self.level and self.level is not TraceLevel.OFF

    @property
    def is_fine_enabled(self) -> bool:
        return self.is_enabled(TraceLevel.FINE)

    @property
    def is_finest_enabled(self) -> bool:
        return self.is_enabled(TraceLevel.FINEST)

    def trace(self, level: TraceLevel, message: str, *args: Any, exc: BaseException | None = None) -> None:
        if level >= self.level and self.level is not TraceLevel.OFF:
            self._logger.log(int(level), message, *args, exc_info=exc)
            self._registry.emitted += 1

    def severe(self, message: str, *args: Any, exc: BaseException | None = None) -> None:
        self.trace(TraceLevel.SEVERE, message, *args, exc=exc)

    def warning(self, message: str, *args: Any, exc: BaseException | None = None) -> None:
        self.trace(TraceLevel.WARNING, message, *args, exc=exc)

    def info(self, message: str, *args: Any) -> None:
        self.trace(TraceLevel.INFO, message, *args)

    def config(self, message: str, *args: Any) -> None:
        self.trace(TraceLevel.CONFIG, message, *args)

    def fine(self, message: str, *args: Any) -> None:
        self.trace(TraceLevel.FINE, message, *args)

    def finer(self, message: str, *args: Any) -> None:
        self.trace(TraceLevel.FINER, message, *args)

    def finest(self, message: str, *args: Any) -> None:
        self.trace(TraceLevel.FINEST, message, *args)


class TracerRegistry:
    """All tracers; a level set on ``comp`` / ``a`` also applies to ``a.b`` unless overridden."""

    def __init__(self, default_level: TraceLevel = TraceLevel.INFO) -> None:
        self.default_level = default_level
        self._levels: dict[tuple[str, str], TraceLevel] = {}
        self._tracers: dict[tuple[str, str], Tracer] = {}
        self.emitted = 0

    def get(self, component: str, name: str = "root") -> Tracer:
        key = (component, name)
        tracer = self._tracers.get(key)
        if tracer is None:
            tracer = self._tracers[key] = Tracer(self, component, name)
        return tracer

    def effective_level(self, component: str, name: str) -> TraceLevel:
        parts = name.split(".") if name != "root" else []
        while parts:
            level = self._levels.get((component, ".".join(parts)))
            if level is not None:
                return level
            parts.pop()
        return self._levels.get((component, "root"), self._levels.get(("*", "root"), self.default_level))

    def set_level(self, component: str, name: str, level: TraceLevel | str) -> None:
        self._levels[(component, name or "root")] = TraceLevel.parse(level)
        for tracer in self._tracers.values():
            tracer.level = self.effective_level(tracer.component, tracer.name)

    def unset_level(self, component: str, name: str) -> None:
        self._levels.pop((component, name or "root"), None)
        for tracer in self._tracers.values():
            tracer.level = self.effective_level(tracer.component, tracer.name)

    def levels(self) -> list[dict[str, str]]:
        """Every known tracer with its effective level, plus explicitly set levels."""
        rows = {(c, n): self.effective_level(c, n) for (c, n) in self._tracers}
        rows.update(self._levels)
        return [
            {"component": c, "tracer": n, "level": lvl.name, "explicit": (c, n) in self._levels}
            for (c, n), lvl in sorted(rows.items())
        ]

"""Clocks: the container reads time only through one of these, so tests can drive it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock: timers survive restarts in these units)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to (per-SBB tests, transaction-timer tests)."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        self._now = float(when)


__all__ = ["Clock", "FakeClock", "SystemClock"]

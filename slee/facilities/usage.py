"""Usage parameters (JSR 240 §11): counters and samples per service and SBB.

Updates are not transactional (as in Rhino): a counter counts attempts, rolled back or not.
"""

from __future__ import annotations

from typing import Any


class _Sample:
    __slots__ = ("count", "last", "max", "min", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.last = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.last = value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def to_json(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0}
        return {"count": self.count, "min": self.min, "max": self.max,
                "mean": self.total / self.count, "last": self.last}


class UsageParameterSet:
    """One named set of counters and samples."""

    __slots__ = ("counters", "name", "samples")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counters: dict[str, int] = {}
        self.samples: dict[str, _Sample] = {}

    def increment(self, parameter: str, delta: int = 1) -> None:
        self.counters[parameter] = self.counters.get(parameter, 0) + delta

    def sample(self, parameter: str, value: float) -> None:
        s = self.samples.get(parameter)
        if s is None:
            s = self.samples[parameter] = _Sample()
        s.add(value)

    def get(self, parameter: str) -> int:
        return self.counters.get(parameter, 0)

    def reset(self) -> None:
        self.counters.clear()
        self.samples.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(sorted(self.counters.items())),
                "samples": {k: v.to_json() for k, v in sorted(self.samples.items())}}


class UsageRegistry:
    """Parameter sets keyed by (service, SBB, set name); the unnamed set is ``default``."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str, str], UsageParameterSet] = {}

    def parameter_set(self, service: Any, sbb: Any, name: str | None = None) -> UsageParameterSet:
        key = (str(service), str(sbb), name or "default")
        ps = self._sets.get(key)
        if ps is None:
            ps = self._sets[key] = UsageParameterSet(key[2])
        return ps

    def snapshot(self, service: str | None = None) -> list[dict[str, Any]]:
        return [
            {"service": s, "sbb": b, "set": n, **ps.snapshot()}
            for (s, b, n), ps in sorted(self._sets.items())
            if service is None or s == service or s.split("/")[0] == service
        ]

    def reset(self, service: str | None = None) -> None:
        for (s, _b, _n), ps in self._sets.items():
            if service is None or s == service or s.split("/")[0] == service:
                ps.reset()

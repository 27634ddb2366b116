"""Timer facility (JSR 240 §13.1): one-shot and periodic timers that fire TimerEvents.

Timers are set and cancelled transactionally (they take effect on commit), are attached to
an activity (ending the activity cancels them), and are persisted with their absolute
expiry time in wall-clock seconds, so timers on persistent activities survive a restart:
on start, overdue timers fire at once (missed periodic repetitions per ``preserve_missed``).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slee.errors import ActivityIsEndingError
from slee.events import TIMER_EVENT, TimerEvent
from slee.transaction import require_transaction

if TYPE_CHECKING:
    from slee.activity import ActivityContextInterface
    from slee.container import Container


class TimerPreserveMissed(enum.Enum):
    NONE = "none"  # late repetitions are skipped
    ALL = "all"  # every missed repetition fires
    LAST = "last"  # one event stands for all missed repetitions


@dataclass(frozen=True, slots=True)
class TimerOptions:
    preserve_missed: TimerPreserveMissed = TimerPreserveMissed.LAST
    timeout: float = 0.0  # how late a repetition may be and still count as on time


_DEFAULT_OPTIONS = TimerOptions()  # frozen: one shared by every timer set without options


@dataclass(slots=True)
class _Timer:
    id: str
    ac_id: str
    start: float
    period: float | None
    repetitions: int  # 0 with a period = forever
    remaining: int
    next_fire: float
    options: TimerOptions
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ac": self.ac_id, "start": self.start, "period": self.period, "reps": self.repetitions,
                "remaining": self.remaining, "next": self.next_fire,
                "preserve": self.options.preserve_missed.value, "timeout": self.options.timeout}


class TimerFacility:
    """Sets and cancels timers; the container calls ``fire_due(now)`` when the clock moves."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._timers: dict[str, _Timer] = {}
        self._heap: list[tuple[float, str]] = []
        self._ids = itertools.count(1)
        self._boot = os.urandom(4).hex()
        self.fired = 0

    # -- SBB API -------------------------------------------------------------------------
    def set_timer(self, aci: ActivityContextInterface, start_time: float, *, period: float | None = None,
                  repetitions: int = 1, options: TimerOptions | None = None, address: Any = None) -> str:
        """Arm a timer firing at ``start_time`` (epoch seconds), then every ``period`` seconds.

        ``repetitions`` counts expiries (0 with a period means until cancelled). Returns the id.
        """
        if period is not None and period <= 0:
            raise ValueError("a timer period must be positive")
        if period is None:
            repetitions = 1
        if repetitions < 0:
            raise ValueError("repetitions must be >= 0")
        ac = aci._ac
        if ac.is_ending:
            raise ActivityIsEndingError(f"activity {ac.id} is ending; no timer can be set on it")
        txn = require_transaction()
        timer = _Timer(f"timer-{self._boot}-{next(self._ids)}", ac.id, start_time, period, repetitions,
                       repetitions, start_time, options or _DEFAULT_OPTIONS)
        ac.add_timer(timer.id)
        txn.record_undo(lambda: ac.discard_timer(timer.id))
        txn.on_commit(lambda: self._arm(timer))
        if ac.persistent:
            txn.put("timer", timer.id, timer.to_json())
        return timer.id

    def set_timer_in(self, aci: ActivityContextInterface, delay: float, **kwargs: Any) -> str:
        """Convenience: a timer ``delay`` seconds from now."""
        return self.set_timer(aci, self._container.clock.now() + delay, **kwargs)

    def cancel_timer(self, timer_id: str) -> bool:
        timer = self._timers.get(timer_id)
        if timer is None or timer.cancelled:
            return False
        txn = require_transaction()
        txn.on_commit(lambda: self._cancel(timer))
        txn.delete("timer", timer_id)
        return True

    def resolution(self) -> float:
        return 0.01

    def default_timeout(self) -> float:
        return 0.0

    # -- container side ------------------------------------------------------------------
    def _arm(self, timer: _Timer) -> None:
        self._timers[timer.id] = timer
        heapq.heappush(self._heap, (timer.next_fire, timer.id))
        self._container._timer_armed(timer.next_fire)

    def _cancel(self, timer: _Timer) -> None:
        timer.cancelled = True
        self._timers.pop(timer.id, None)
        ac = self._container.activity_contexts_by_id.get(timer.ac_id)
        if ac is not None:
            ac.discard_timer(timer.id)
            self._container._check_implicit_end(None, ac)

    def cancel_for_activity(self, txn: Any, ac_id: str, timer_ids: set[str]) -> None:
        for tid in list(timer_ids):
            timer = self._timers.pop(tid, None)
            if timer is not None:
                timer.cancelled = True
            txn.delete("timer", tid)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][1] not in self._timers or self._timers[heap[0][1]].next_fire != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self, now: float) -> int:
        """Fire every timer due at ``now``; returns how many TimerEvents were queued."""
        fired = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, tid = heapq.heappop(heap)
            timer = self._timers.get(tid)
            if timer is None or timer.cancelled or timer.next_fire != when:
                continue
            fired += self._expire(timer, now)
        self.fired += fired
        return fired

    def _expire(self, timer: _Timer, now: float) -> int:
        ac = self._container.activity_contexts_by_id.get(timer.ac_id)
        if ac is None or ac.is_ending:
            self._timers.pop(timer.id, None)
            return 0
        count = 1
        missed = 0
        if timer.period:
            late = int((now - timer.next_fire) // timer.period) if now > timer.next_fire + timer.options.timeout else 0
            if late > 0:
                pm = timer.options.preserve_missed
                if pm is TimerPreserveMissed.ALL:
                    count = late + 1
                elif pm is TimerPreserveMissed.NONE:
                    count, missed = 1, late
                else:
                    count, missed = 1, late
        fired = 0
        for _ in range(count):
            if timer.repetitions:
                timer.remaining -= 1
            event = TimerEvent(timer.id, timer.next_fire, now, timer.period, timer.repetitions,
                               max(timer.remaining, 0), missed)
            self._container.enqueue_event(ac, TIMER_EVENT, event, None)
            fired += 1
            if timer.period:
                timer.next_fire += timer.period
            if timer.repetitions and timer.remaining <= 0:
                break
        if timer.period and missed:
            timer.next_fire += missed * timer.period
            if timer.repetitions:
                timer.remaining -= missed
        finished = timer.period is None or (timer.repetitions and timer.remaining <= 0)
        store_txn = self._container._system_writes()
        if finished:
            self._timers.pop(timer.id, None)
            ac.discard_timer(timer.id)
            if ac.persistent:
                store_txn.delete("timer", timer.id)
            self._container._check_implicit_end(None, ac)
        else:
            heapq.heappush(self._heap, (timer.next_fire, timer.id))
            if ac.persistent:
                store_txn.put("timer", timer.id, timer.to_json())
        self._container._flush_system_writes(store_txn)
        return fired

    def _restore(self, timer_id: str, doc: dict[str, Any]) -> bool:
        ac = self._container.activity_contexts_by_id.get(doc["ac"])
        if ac is None:
            return False
        timer = _Timer(timer_id, doc["ac"], doc["start"], doc["period"], doc["reps"], doc["remaining"],
                       doc["next"], TimerOptions(TimerPreserveMissed(doc["preserve"]), doc.get("timeout", 0.0)))
        ac.add_timer(timer_id)
        self._arm(timer)
        return True

    def active(self) -> list[dict[str, Any]]:
        return [{"id": t.id, **t.to_json()} for t in self._timers.values()]

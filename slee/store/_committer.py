"""Group commit: many SLEE transactions, one database transaction, one fsync.

A SLEE transaction commits in memory on the event loop and hands its changes to
:meth:`GroupCommitter.submit`. Everything submitted during one loop iteration, plus whatever
arrives while the worker thread is busy with the previous batch, goes to the database as one
:meth:`Store.apply`. Under load batches grow by themselves (the disk flush is paid once per
batch, not per transaction); when idle a lone submission is written at once. The event loop
never waits for a disk: it gets a future that resolves when the changes are durable.

Choices:
- Unconditional submissions are coalesced (last Put/Delete of a key wins). A submission with
  any ``expect_version`` is applied in its own transaction, in submission order, so that its
  ConflictError fails exactly its own future and it sees the versions earlier ones produced.
- If a coalesced transaction fails, each of its submissions is re-applied alone and each
  future resolves on its own outcome, so one bad submission does not fail its neighbours.
- One worker thread and one batch in flight at a time: batches reach the database in the
  order they were submitted.
- Deferred sync (file SQLite, ``Store.defers_sync``): the batch is written on the event
  loop itself, unsynced, and the worker thread only fsyncs the WAL; an fsync covers every
  batch written before it started. The worker then makes one call per batch (the GIL is
  handed over once) instead of one per statement, and a write costs the loop a few hundred
  microseconds of SQLite work, not a disk flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._changes import Change
from ._errors import StoreError
from ._store import WAL_CHECKPOINT_BYTES, Store

__all__ = ["GroupCommitter"]

log = logging.getLogger("slee.store")

DURABILITY = ("write", "fsync")
"""When a submission's future resolves (file SQLite): ``fsync``, once the WAL holding it is
on disk (survives power loss); ``write``, once it is written to the WAL, which the OS holds
(survives a crash of the process; the fsync follows off the loop within WRITE_SYNC_INTERVAL,
so power loss or a kernel crash can lose that window). Other stores sync every commit."""

BUSY_SYNC_GAP = 0.002
"""GroupCommitter.dispatch_now writes early only this long (s) after the last sync ended."""

WRITE_SYNC_INTERVAL = 0.010
"""Durability ``write``: seconds between the starts of two WAL fsyncs at most. What is
written is acknowledged already, so back-to-back syncs only bought a shorter window for a
power loss, at a thread hand-off, a wake-up of the loop and a flush each; with this, a
sync covers up to 10 ms of writes (SQLite's own WAL + NORMAL syncs only at checkpoints,
PostgreSQL's asynchronous commit every 200 ms)."""


@dataclass(slots=True)
class _Submission:
    changes: tuple[Change, ...]
    future: asyncio.Future[None]
    seq: int
    conditional: bool
    on_done: Callable[[BaseException | None], None] | None = None


@dataclass(slots=True)
class _Outcome:
    errors: list[BaseException | None]
    transactions: int
    retried: int
    seconds: float


class GroupCommitter:
    """Batches every submission made during one event-loop iteration into one Store.apply
    run in a worker thread (one fsync for many SLEE transactions), so the event path never
    waits on a disk flush per transaction.

    Call :meth:`submit` from the event loop's thread only. The store stays owned by the
    caller: :meth:`close` stops the worker thread but does not close the store.
    """

    def __init__(
        self,
        store: Store,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        max_batch: int = 5000,
        sync_on_loop: bool = True,
        checkpoint_bytes: int = WAL_CHECKPOINT_BYTES,
        durability: str = "fsync",
        sync_interval: float = WRITE_SYNC_INTERVAL,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
        self._store = store
        self._loop = loop
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slee-store-commit")
        self._pending: deque[_Submission] = deque()
        self._scheduled = False
        self._wrote_early = False  # dispatch_now wrote this turn
        self._synced_at = 0.0  # perf_counter() when the last sync ended
        self._in_flight = False
        self._closed = False
        self._seq = 0  # last submission number handed out
        self._done_seq = 0  # every submission up to this number has been resolved
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._deferred = bool(getattr(store, "defers_sync", False))
        self._sync_on_loop = sync_on_loop
        # write: acknowledge once written; the WAL is synced off the loop, one fsync in flight,
        # at most one started per sync_interval
        self._ack_on_write = self._deferred and durability == "write"
        self._needs_sync = False  # ack_on_write: something written since the last sync began
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpointing = False
        self._unsynced: list[_Submission] = []  # written, waiting for the next sync
        self._written_seq = 0  # deferred sync: last submission number written
        self._sync_timer: asyncio.TimerHandle | None = None  # ack_on_write: the next sync, due
        self._sync_interval = sync_interval
        self._stats: dict[str, Any] = {
            "batches": 0,
            "submissions": 0,
            "changes": 0,
            "transactions": 0,
            "retried_submissions": 0,
            "failed_submissions": 0,
            "max_batch_size": 0,
            "last_flush_seconds": 0.0,
            "last_write_seconds": 0.0,
            "syncs": 0,
            "failed_syncs": 0,
            "failed_checkpoints": 0,
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``batches`` (worker runs), ``submissions``, ``changes``,
        ``transactions`` (Store.apply calls), ``retried_submissions``, ``failed_submissions``,
        ``max_batch_size`` (changes in the largest batch), ``last_flush_seconds`` (the last
        worker run), and with deferred sync ``syncs`` (WAL fsyncs), ``failed_checkpoints`` and ``last_write_seconds``
        (the last write on the loop)."""
        return {**self._stats, "pending": len(self._pending), "in_flight": self._in_flight}

    def submit(
        self,
        changes: Sequence[Change],
        on_done: Callable[[BaseException | None], None] | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``changes`` (one SLEE transaction) for writing, all or nothing.

        The future resolves when they are durable, or raises why they are not (StoreError,
        ConflictError). Acknowledge nothing to a peer before it resolves.
        Cancelling the future does not withdraw the changes. ``on_done(error_or_None)`` is
        called at the same moment, directly: a future's callbacks run one loop iteration
        later, which a busy loop turns into milliseconds before an acknowledgement leaves.
        """
        if self._closed:
            raise StoreError("the group committer is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        changes = tuple(changes)
        future: asyncio.Future[None] = loop.create_future()
        if not changes:
            future.set_result(None)
            if on_done is not None:
                on_done(None)
            return future
        self._seq += 1
        conditional = any(getattr(c, "expect_version", None) is not None for c in changes)
        self._pending.append(_Submission(changes, future, self._seq, conditional, on_done))
        self._stats["submissions"] += 1
        self._stats["changes"] += len(changes)
        if not self._scheduled and (self._deferred or not self._in_flight):
            # Run after the callbacks already queued for this iteration, so that all of
            # their submissions join this batch.
            self._scheduled = True
            loop.call_soon(self._turn_end)
        return future

    @property
    def idle(self) -> bool:
        """True when every submission so far has been written (and synced) or has failed."""
        return self._done_seq >= self._seq

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written or has failed.

        Failures are reported through each submission's own future, not raised here.
        """
        if self._done_seq >= self._seq:
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((self._seq, waiter))
        if self._sync_timer is not None:  # someone waits: sync now
            self._sync_timer.cancel()
            self._sync_timer = None
            if not self._in_flight:
                self._start_sync()
        await waiter

    async def close(self) -> None:
        """Refuse new submissions, flush, then stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        await self.flush()
        self._executor.shutdown(wait=True)

    # -- loop side -----------------------------------------------------------------------

    def dispatch_now(self) -> None:
        """Write what is pending now instead of at the end of the loop's turn (the container,
        once an I/O callback's events are delivered), when the loop is quiet: a lone request
        waits for no other callback. Not when the store was synced within the last
        ``BUSY_SYNC_GAP`` seconds (busy: the turn's end makes a bigger group, and one fsync
        more per turn cost goodput under overload), and once per turn at most, so that what
        the turn's other I/O callbacks submit (a thousand TCP clients readable at once)
        still goes to the store as one group."""
        if (self._scheduled and self._pending and not self._wrote_early
                and time.perf_counter() - self._synced_at >= BUSY_SYNC_GAP):
            self._wrote_early = True
            self._dispatch()

    def _turn_end(self) -> None:
        self._wrote_early = False
        self._dispatch()

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._deferred:
            self._write_unsynced()
            return
        if self._in_flight or not self._pending:
            return
        batch = self._take_batch()
        self._in_flight = True
        assert self._loop is not None
        done = self._loop.run_in_executor(self._executor, self._commit, batch)
        done.add_done_callback(lambda f: self._committed(batch, f))

    def _committed(self, batch: list[_Submission], done: asyncio.Future[_Outcome]) -> None:
        try:
            outcome = done.result()
        except BaseException as exc:  # a bug in _commit or a dead executor: fail them all
            outcome = exc
        for submission, error in zip(batch, self._errors(batch, outcome, "last_flush_seconds"), strict=True):
            self._resolve(submission, error)
        self._in_flight = False
        self._resolve_waiters(batch[-1].seq)
        if self._pending:  # what queued up while the worker was busy goes now, as one batch
            self._dispatch()

    def _take_batch(self) -> list[_Submission]:
        """The oldest pending submissions, up to ``max_batch`` changes (at least one)."""
        batch: list[_Submission] = []
        size = 0
        while self._pending and (
            not batch or size + len(self._pending[0].changes) <= self._max_batch
        ):
            submission = self._pending.popleft()
            batch.append(submission)
            size += len(submission.changes)
        self._stats["batches"] += 1
        self._stats["max_batch_size"] = max(self._stats["max_batch_size"], size)
        return batch

    def _errors(self, batch: list[_Submission], outcome: _Outcome | BaseException,
                seconds_key: str) -> list[BaseException | None]:
        """Each submission's error from a commit's outcome (all fail if the commit raised)."""
        if isinstance(outcome, BaseException):
            return [outcome] * len(batch)
        self._stats["transactions"] += outcome.transactions
        self._stats["retried_submissions"] += outcome.retried
        self._stats[seconds_key] = outcome.seconds
        return outcome.errors

    def _write_unsynced(self) -> None:
        """Deferred sync: write everything pending now, on the loop; then sync off the loop."""
        while self._pending:
            batch = self._take_batch()
            try:
                outcome: _Outcome | BaseException = self._commit(batch, sync=False)
            except BaseException as exc:  # a bug in _commit: fail the batch, not the loop
                outcome = exc
            for submission, error in zip(batch, self._errors(batch, outcome, "last_write_seconds"), strict=True):
                if error is None and not self._ack_on_write:
                    self._unsynced.append(submission)
                else:
                    self._needs_sync |= error is None
                    self._resolve(submission, error)
            self._written_seq = batch[-1].seq
        if not self._in_flight:
            self._start_sync()

    def _start_sync(self) -> None:
        if self._ack_on_write and not self._waiters:
            # Acknowledged already: sync at most every sync_interval, not back to back
            if self._sync_timer is not None:
                return
            delay = self._synced_at + self._sync_interval - time.perf_counter()
            if delay > 0 and self._needs_sync:
                assert self._loop is not None
                self._sync_timer = self._loop.call_later(delay, self._sync_due)
                return
        covered, self._unsynced = self._unsynced, []
        seq = self._written_seq
        needs_sync, self._needs_sync = self._needs_sync, False
        if not covered and not needs_sync:
            self._resolve_waiters(seq)
            return
        if self._sync_on_loop and not self._ack_on_write:
            self._sync_here(covered, seq)
            return
        self._in_flight = True
        self._stats["syncs"] += 1
        assert self._loop is not None
        started = time.perf_counter()
        done = self._loop.run_in_executor(self._executor, self._store.sync)
        done.add_done_callback(lambda f: self._synced(covered, seq, started, f))

    def _sync_due(self) -> None:
        self._sync_timer = None
        if not self._in_flight:
            self._start_sync()

    def _synced(self, covered: list[_Submission], seq: int, started: float,
                done: asyncio.Future[None]) -> None:
        self._synced_at = time.perf_counter()
        self._stats["last_flush_seconds"] = self._synced_at - started
        try:
            done.result()
            error: BaseException | None = None
        except BaseException as exc:
            error = exc
            if not covered:  # acknowledged already (durability "write"): say so, once per failure
                self._stats["failed_syncs"] += 1
                log.error("group commit: cannot sync what was written and acknowledged: %s", exc)
        for submission in covered:
            self._resolve(submission, error)
        self._in_flight = False
        self._resolve_waiters(seq)
        if self._written_seq > seq:  # written since this sync began (acknowledged or not)
            self._start_sync()

    def _sync_here(self, covered: list[_Submission], seq: int) -> None:
        """fsync on the loop itself: it blocks the loop for the flush (~0.5 ms), but a worker
        thread returning from fsync must win the GIL back from a busy loop first, which
        under load added milliseconds to every acknowledgement (measured p50 3 ms, spikes
        of 30+ ms, for a 0.45 ms fsync). Checkpoints, which take long, stay off the loop."""
        self._stats["syncs"] += 1
        started = time.perf_counter()
        error: BaseException | None = None
        size = 0
        try:
            size = self._store.sync(checkpoint_bytes=None)
        except BaseException as exc:
            error = exc
        self._synced_at = time.perf_counter()
        self._stats["last_flush_seconds"] = self._synced_at - started
        for submission in covered:
            self._resolve(submission, error)
        self._resolve_waiters(seq)
        if not self._checkpointing and self._store.wal_outgrew(size, self._checkpoint_bytes):
            self._checkpointing = True
            assert self._loop is not None
            done = self._loop.run_in_executor(self._executor, self._store.checkpoint)
            done.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            self._stats["failed_checkpoints"] += 1

    def _resolve(self, submission: _Submission, error: BaseException | None) -> None:
        if error is not None:
            self._stats["failed_submissions"] += 1
        future = submission.future
        if not future.done():  # else cancelled by its caller
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
                if submission.on_done is not None:
                    future.exception()  # reported through on_done: not "never retrieved"
        if submission.on_done is not None:
            try:
                submission.on_done(error)
            except Exception:  # the caller's bug must not stop the other acknowledgements
                log.exception("group commit completion callback failed")

    def _resolve_waiters(self, seq: int) -> None:
        self._done_seq = max(self._done_seq, seq)
        if self._waiters:
            still = []
            for target, waiter in self._waiters:
                if target <= self._done_seq:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    still.append((target, waiter))
            self._waiters = still

    # -- worker thread -------------------------------------------------------------------

    def _commit(self, batch: list[_Submission], *, sync: bool = True) -> _Outcome:
        started = time.perf_counter()
        errors: list[BaseException | None] = [None] * len(batch)
        transactions = retried = 0
        index = 0
        while index < len(batch):
            if batch[index].conditional:
                transactions += 1
                errors[index] = self._apply(batch[index].changes, coalesce=False, sync=sync)
                index += 1
                continue
            end = index
            while end < len(batch) and not batch[end].conditional:
                end += 1
            group = batch[index:end]
            transactions += 1
            if len(group) == 1:
                errors[index] = self._apply(group[0].changes, coalesce=False, sync=sync)
            else:
                merged = [change for submission in group for change in submission.changes]
                if self._apply(merged, coalesce=True, sync=sync) is not None:
                    # Find the culprit(s): each submission alone, each future its own result.
                    retried += len(group)
                    for offset, submission in enumerate(group):
                        transactions += 1
                        errors[index + offset] = self._apply(
                            submission.changes, coalesce=False, sync=sync
                        )
            index = end
        return _Outcome(errors, transactions, retried, time.perf_counter() - started)

    def _apply(
        self, changes: Sequence[Change], *, coalesce: bool, sync: bool = True
    ) -> BaseException | None:
        try:
            if sync:
                self._store.apply(changes, coalesce=coalesce)
            else:
                self._store.apply(changes, coalesce=coalesce, sync=False)
        except Exception as exc:
            return exc
        return None

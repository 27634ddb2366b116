"""GroupCommitter: one store batch per loop iteration, per-submission outcomes, flush/close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from slee.store import (
    Change,
    ConflictError,
    Delete,
    DeletePrefix,
    GroupCommitter,
    Put,
    Store,
    StoreError,
)
from slee.store._committer import BUSY_SYNC_GAP

from .conftest import run


class RecordingStore:
    """Wraps a Store, records every apply() and can hold the worker at a gate."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.applied: list[list[Change]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def apply(self, changes: Sequence[Change], *, coalesce: bool = False) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        self.applied.append(list(changes))
        self.store.apply(changes, coalesce=coalesce)


def test_one_loop_iteration_is_one_store_batch(store: Store) -> None:
    async def main() -> dict:
        committer = GroupCommitter(store)
        futures = [committer.submit([Put("reg", f"user{i}", {"n": i})]) for i in range(500)]
        await asyncio.gather(*futures)
        stats = committer.stats
        await committer.close()
        return stats

    stats = run(main())
    assert stats["batches"] == 1
    assert stats["transactions"] == 1
    assert stats["submissions"] == 500
    assert stats["max_batch_size"] == 500
    assert stats["last_flush_seconds"] > 0
    assert store.count("reg") == 500
    assert store.get("reg", "user499") == {"n": 499}


def test_submissions_during_a_commit_form_the_next_batch(store: Store) -> None:
    recorder = RecordingStore(store)

    async def main() -> dict:
        committer = GroupCommitter(recorder)  # type: ignore[arg-type]
        recorder.gate.clear()
        first = committer.submit([Put("ns", "first", 1)])
        while not recorder.entered.is_set():  # the worker is now holding batch 1
            await asyncio.sleep(0.001)
        later = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(10)]
        await asyncio.sleep(0.01)  # several loop iterations pass while the worker is busy
        assert not first.done()
        recorder.gate.set()
        await asyncio.gather(first, *later)
        await committer.close()
        return committer.stats

    stats = run(main())
    assert stats["batches"] == 2
    assert [len(batch) for batch in recorder.applied] == [1, 10]
    assert store.count("ns") == 11


def test_max_batch_splits_batches(store: Store) -> None:
    async def main() -> dict:
        committer = GroupCommitter(store, max_batch=10)
        await asyncio.gather(*(committer.submit([Put("ns", f"k{i}", i)]) for i in range(25)))
        await committer.close()
        return committer.stats

    stats = run(main())
    assert stats["batches"] == 3
    assert stats["max_batch_size"] == 10
    assert store.count("ns") == 25


def test_puts_of_one_key_are_coalesced_into_one_write(store: Store) -> None:
    async def main() -> None:
        committer = GroupCommitter(store)
        for i in range(20):
            committer.submit([Put("ns", "hot", i)])
        committer.submit([Put("ns", "gone", 1)])
        committer.submit([Delete("ns", "gone")])
        await committer.close()

    run(main())
    assert store.get_versioned("ns", "hot") == (19, 1)  # written once, last value
    assert store.get("ns", "gone") is None


def test_batch_keeps_submission_order_across_delete_prefix(store: Store) -> None:
    store.apply([Put("s", "a/old", 1), Put("s", "b", 1)])

    async def main() -> None:
        committer = GroupCommitter(store)
        committer.submit([Put("s", "a/x", "before")])
        committer.submit([DeletePrefix("s", "a/")])
        committer.submit([Put("s", "a/y", "after"), Put("s", "b", 2)])
        await committer.close()

    run(main())
    assert store.load("s") == {"a/y": "after", "b": 2}


def test_a_failing_submission_fails_only_its_own_future(store: Store) -> None:
    async def main() -> tuple[list, dict]:
        committer = GroupCommitter(store)
        futures = [
            committer.submit([Put("ns", "good1", 1)]),
            committer.submit([Put("ns", "bad", object()), Put("ns", "bad-sibling", 1)]),
            committer.submit([Put("ns", "good2", 2), Put("other", "x", 3)]),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await committer.close()
        return results, committer.stats

    results, stats = run(main())
    assert results[0] is None
    assert isinstance(results[1], StoreError)
    assert "'ns'/'bad'" in str(results[1])
    assert results[2] is None
    assert store.load("ns") == {"good1": 1, "good2": 2}  # the bad submission wrote nothing
    assert store.load("other") == {"x": 3}
    assert stats["retried_submissions"] == 3
    assert stats["failed_submissions"] == 1


def test_conflicting_submission_fails_alone_and_sees_earlier_ones(store: Store) -> None:
    store.apply([Put("ns", "k", "v1")])  # version 1

    async def main() -> list:
        committer = GroupCommitter(store)
        futures = [
            committer.submit([Put("ns", "k", "v2")]),  # -> version 2
            committer.submit([Put("ns", "k", "v3", expect_version=2)]),  # sees version 2
            committer.submit([Put("ns", "k", "stale", expect_version=2), Put("ns", "z", 1)]),
            committer.submit([Put("ns", "after", True)]),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await committer.close()
        return results

    results = run(main())
    assert results[0] is None
    assert results[1] is None
    assert isinstance(results[2], ConflictError)
    assert (results[2].expected, results[2].actual) == (2, 3)
    assert results[3] is None
    assert store.get_versioned("ns", "k") == ("v3", 3)
    assert store.get("ns", "z") is None
    assert store.get("ns", "after") is True


def test_flush_waits_for_everything_submitted(store: Store) -> None:
    async def main() -> None:
        committer = GroupCommitter(store)
        futures = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(3)]
        bad = committer.submit([Put("ns", "bad", {1, 2})])
        await committer.flush()  # does not raise on behalf of a failed submission
        assert all(f.done() for f in [*futures, bad])
        assert isinstance(bad.exception(), StoreError)
        assert store.count("ns") == 3
        await committer.flush()  # nothing outstanding: returns at once
        await committer.close()

    run(main())


def test_close_flushes_then_refuses_submissions(store: Store) -> None:
    async def main() -> None:
        committer = GroupCommitter(store)
        future = committer.submit([Put("ns", "k", 1)])
        await committer.close()
        assert future.done() and future.exception() is None
        with pytest.raises(StoreError, match="closed"):
            committer.submit([Put("ns", "j", 1)])
        await committer.close()  # idempotent

    run(main())
    assert store.get("ns", "k") == 1


def test_empty_submission_resolves_at_once(store: Store) -> None:
    async def main() -> None:
        committer = GroupCommitter(store)
        future = committer.submit([])
        assert future.done()
        await committer.close()
        assert committer.stats["batches"] == 0

    run(main())


def test_store_failure_reaches_every_future(store: Store) -> None:
    async def main() -> list:
        committer = GroupCommitter(store)
        store.close()  # every apply now fails
        futures = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(3)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await committer.close()
        return results

    results = run(main())
    assert all(isinstance(r, StoreError) and "closed" in str(r) for r in results)


def test_a_cancelled_future_still_gets_written(store: Store) -> None:
    async def main() -> None:
        committer = GroupCommitter(store)
        committer.submit([Put("ns", "k", 1)]).cancel()
        await committer.close()

    run(main())
    assert store.get("ns", "k") == 1


# -- deferred sync (file SQLite): written on the loop, fsynced by the worker ---------------


class GatedSync:
    """A file SQLite store whose sync() waits at a gate, and can be made to fail."""

    defers_sync = True

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.syncs = 0
        self.checkpoints = 0
        self.fail: Exception | None = None

    def apply(self, changes: Sequence[Change], *, coalesce: bool = False, sync: bool = True) -> None:
        assert sync is False  # the deferred path never asks for a synced write
        self.store.apply(changes, coalesce=coalesce, sync=False)

    def sync(self, checkpoint_bytes: int | None = 16 << 20) -> int:
        self.entered.set()
        assert self.gate.wait(10)
        self.syncs += 1
        if self.fail is not None:
            raise self.fail
        return self.store.sync(checkpoint_bytes=checkpoint_bytes)

    def checkpoint(self) -> None:
        self.checkpoints += 1
        self.store.checkpoint()

    def wal_outgrew(self, size: int, limit: int) -> bool:
        return self.store.wal_outgrew(size, limit)


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'slee.db'}")
    try:
        yield s
    finally:
        s.close()


def test_file_sqlite_defers_sync_and_others_do_not(store: Store, backend: str) -> None:
    assert store.defers_sync is (backend == "sqlite")
    assert Store.open("sqlite://").defers_sync is False  # in memory: nothing to sync


def test_deferred_writes_are_visible_at_once_and_acknowledged_after_the_sync(sqlite_store: Store) -> None:
    gated = GatedSync(sqlite_store)

    async def main() -> None:
        committer = GroupCommitter(gated, sync_on_loop=False)  # type: ignore[arg-type]
        gated.gate.clear()
        first = committer.submit([Put("ns", "a", 1)])
        while not gated.entered.is_set():  # written, and the worker is in sync()
            await asyncio.sleep(0.001)
        assert sqlite_store.get("ns", "a") == 1  # committed before it is durable...
        assert not first.done()  # ...but not acknowledged
        later = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(5)]
        await asyncio.sleep(0.01)
        assert sqlite_store.count("ns") == 6  # written on the loop while the sync waits
        assert not any(f.done() for f in later)
        gated.gate.set()
        await asyncio.gather(first, *later)
        await committer.close()
        assert committer.stats["syncs"] == 2  # the later ones needed a sync of their own

    run(main())
    assert gated.syncs == 2


def test_a_failed_sync_fails_every_write_it_covered(sqlite_store: Store) -> None:
    gated = GatedSync(sqlite_store)
    gated.fail = StoreError("cannot sync the write-ahead log: disk on fire")

    async def main() -> list[BaseException | None]:
        committer = GroupCommitter(gated, sync_on_loop=False)  # type: ignore[arg-type]
        futures = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(3)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        gated.fail = None
        await committer.submit([Put("ns", "after", 1)])  # the committer goes on
        await committer.close()
        return outcomes

    outcomes = run(main())
    assert all(isinstance(o, StoreError) and "disk on fire" in str(o) for o in outcomes)


def test_sync_on_the_loop_acknowledges_after_the_fsync_and_reports_failures(sqlite_store: Store) -> None:
    gated = GatedSync(sqlite_store)  # the gate is open: sync() runs through on the loop

    async def main() -> tuple[list, int]:
        committer = GroupCommitter(gated, checkpoint_bytes=1)  # type: ignore[arg-type]
        await asyncio.gather(*(committer.submit([Put("ns", f"k{i}", i)]) for i in range(50)))
        syncs = committer.stats["syncs"]
        gated.fail = StoreError("cannot sync the write-ahead log: disk on fire")
        failed = await asyncio.gather(committer.submit([Put("ns", "x", 1)]), return_exceptions=True)
        gated.fail = None
        await committer.close()  # waits for the checkpoint that checkpoint_bytes=1 started
        return failed, syncs

    failed, syncs = run(main())
    assert syncs == 1 and gated.syncs == 2  # one fsync for the 50, one that failed
    assert gated.checkpoints >= 1  # past checkpoint_bytes, off the loop
    assert isinstance(failed[0], StoreError)
    assert (sqlite_store.count("ns")) == 51  # written (not durable: its future failed)


def test_deferred_conflict_fails_only_its_own_submission(sqlite_store: Store) -> None:
    sqlite_store.apply([Put("ns", "k", 1)])

    async def main() -> tuple[BaseException | None, ...]:
        committer = GroupCommitter(sqlite_store)
        ok = committer.submit([Put("ns", "x", 1)])
        bad = committer.submit([Put("ns", "k", 2, expect_version=7)])
        outcomes = await asyncio.gather(ok, bad, return_exceptions=True)
        await committer.close()
        return tuple(outcomes)

    ok, bad = run(main())
    assert ok is None and isinstance(bad, ConflictError)
    assert sqlite_store.get("ns", "x") == 1 and sqlite_store.get("ns", "k") == 1


def test_sync_checkpoints_a_large_wal_and_data_survives_reopening(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'slee.db'}"
    store = Store.open(url)
    for i in range(20):
        store.apply([Put("ns", f"k{i:02d}-{j}", "x" * 500) for j in range(50)], sync=False)
    database = tmp_path / "slee.db"
    assert database.stat().st_size < 100_000  # everything is still in the WAL
    store.sync(checkpoint_bytes=64 << 10)  # past 64 KiB: checkpointed into the database
    assert database.stat().st_size > 500_000
    store.apply([Put("ns", "last", 1)], sync=False)
    store.sync(checkpoint_bytes=64 << 10)
    store.close()
    again = Store.open(url)
    try:
        assert again.count("ns") == 1001
    finally:
        again.close()


@pytest.mark.parametrize("sync_on_loop", [True, False])
def test_on_done_is_called_with_each_outcome_and_a_failing_callback_harms_nobody(
    sqlite_store: Store, sync_on_loop: bool
) -> None:
    sqlite_store.apply([Put("ns", "k", 1)])
    seen: list[tuple[str, BaseException | None]] = []

    def record(name: str):
        def on_done(error: BaseException | None) -> None:
            seen.append((name, error))
            if name == "broken":
                raise RuntimeError("a bug in the caller's callback")
        return on_done

    async def main() -> None:
        committer = GroupCommitter(sqlite_store, sync_on_loop=sync_on_loop)
        futures = [
            committer.submit([Put("ns", "a", 1)], on_done=record("broken")),
            committer.submit([Put("ns", "k", 2, expect_version=9)], on_done=record("conflict")),
            committer.submit([Put("ns", "b", 1)], on_done=record("ok")),
        ]
        await asyncio.gather(*futures, return_exceptions=True)
        await committer.close()

    run(main())
    outcomes = dict(seen)
    assert len(seen) == 3
    assert outcomes["broken"] is None and outcomes["ok"] is None
    assert isinstance(outcomes["conflict"], ConflictError)
    assert sqlite_store.get("ns", "b") == 1


def test_a_wal_that_started_over_is_not_checkpointed_again_until_it_grows(sqlite_store: Store) -> None:
    """SQLite overwrites a WAL from its start after a checkpoint; the file keeps its size.
    Taking that size for the log's length started a checkpoint (and its fsyncs) after every
    sync, for good."""
    gated = GatedSync(sqlite_store)

    async def main() -> int:
        committer = GroupCommitter(gated, checkpoint_bytes=64 << 10)  # type: ignore[arg-type]
        await committer.submit([Put("ns", f"big{i}", "x" * 500) for i in range(300)])  # past 64 KiB
        while committer._checkpointing:
            await asyncio.sleep(0.005)
        first = gated.checkpoints
        for i in range(30):  # small commits that fit in the WAL the checkpoint emptied
            await committer.submit([Put("ns", f"small{i}", i)])
            while committer._checkpointing:
                await asyncio.sleep(0.005)
        await committer.close()
        assert first == 1
        return gated.checkpoints

    # one more at most: a commit that came while the first checkpoint ran grew the log
    assert run(main()) <= 2
    assert sqlite_store.count("ns") == 330


def test_dispatch_now_writes_the_first_batch_of_a_turn_at_once_and_the_rest_at_turn_end(
        sqlite_store: Store) -> None:
    # The container calls dispatch_now after each I/O callback's events: the first batch of a
    # loop turn is written (and, synced on the loop, acknowledged) without waiting for the
    # turn's other callbacks; what they submit later in the turn still forms one batch.
    async def main() -> None:
        committer = GroupCommitter(sqlite_store)
        first = committer.submit([Put("ns", "a", 1)])
        committer.dispatch_now()
        assert sqlite_store.get("ns", "a") == 1 and first.done()  # written and synced already
        later = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(3)]
        committer.dispatch_now()  # a second callback in the same turn: waits for the turn end
        assert sqlite_store.count("ns") == 1 and not any(f.done() for f in later)
        await asyncio.gather(*later)
        assert committer.stats["batches"] == 2 and sqlite_store.count("ns") == 4
        # A new turn right after a sync: the loop is busy, the turn's end makes the group.
        busy = committer.submit([Put("ns", "busy", 1)])
        committer.dispatch_now()
        assert sqlite_store.get("ns", "busy") is None
        await busy
        await asyncio.sleep(BUSY_SYNC_GAP * 2)  # quiet again: a new turn writes early
        committer.submit([Put("ns", "next", 1)])
        committer.dispatch_now()
        assert sqlite_store.get("ns", "next") == 1
        await committer.close()

    run(main())


# -- durability "write": acknowledged once written, synced soon after, off the loop ---------


def test_write_durability_acknowledges_before_the_sync_and_flush_waits_for_it(sqlite_store: Store) -> None:
    gated = GatedSync(sqlite_store)

    async def main() -> None:
        committer = GroupCommitter(gated, durability="write")  # type: ignore[arg-type]
        gated.gate.clear()  # the fsync cannot finish
        first = committer.submit([Put("ns", "a", 1)])
        await asyncio.wait_for(first, 5)  # acknowledged while the sync waits at the gate
        assert gated.entered.wait(5) and gated.syncs == 0
        later = [committer.submit([Put("ns", f"k{i}", i)]) for i in range(5)]
        await asyncio.wait_for(asyncio.gather(*later), 5)  # one fsync in flight does not hold them
        flushed = asyncio.ensure_future(committer.flush())
        await asyncio.sleep(0.02)
        assert not flushed.done()  # flush (and close) mean on disk
        gated.gate.set()
        await asyncio.wait_for(flushed, 5)
        await committer.close()
        assert committer.stats["syncs"] == gated.syncs == 2  # the later five: one more fsync
        assert committer.stats["failed_syncs"] == 0

    run(main())
    assert sqlite_store.count("ns") == 6


def test_write_durability_syncs_at_most_once_per_interval_and_flush_does_not_wait_for_it(
        sqlite_store: Store) -> None:
    gated = GatedSync(sqlite_store)

    async def main() -> None:
        interval = 1.0  # the default is WRITE_SYNC_INTERVAL; long here, so timing cannot decide
        committer = GroupCommitter(gated, durability="write", sync_interval=interval)  # type: ignore[arg-type]
        await committer.submit([Put("ns", "a", 1)])
        await committer.flush()  # idle: the first write is synced at once
        assert gated.syncs == 1
        synced = time.perf_counter()
        for i in range(20):  # acknowledged writes, one per loop turn, right after that sync
            await committer.submit([Put("ns", f"k{i}", i)])
        assert gated.syncs == 1 and time.perf_counter() - synced < interval  # none yet
        await asyncio.sleep(interval * 1.5)
        assert gated.syncs == 2  # one sync covered all twenty
        await committer.submit([Put("ns", "b", 2)])
        flushed = time.perf_counter()
        await committer.flush()  # a waiter starts the due sync now
        assert gated.syncs == 3 and time.perf_counter() - flushed < interval / 2
        await committer.close()

    run(main())
    assert sqlite_store.count("ns") == 22


def test_write_durability_reports_a_failed_sync_it_cannot_take_back(sqlite_store: Store, caplog) -> None:
    gated = GatedSync(sqlite_store)
    gated.fail = StoreError("cannot sync the write-ahead log: disk on fire")

    async def main() -> GroupCommitter:
        committer = GroupCommitter(gated, durability="write")  # type: ignore[arg-type]
        await committer.submit([Put("ns", "a", 1)])  # acknowledged: written
        await committer.flush()
        gated.fail = None
        await committer.submit([Put("ns", "b", 2)])  # the committer goes on
        await committer.close()
        return committer

    committer = run(main())
    assert committer.stats["failed_syncs"] == 1
    assert "cannot sync what was written and acknowledged" in caplog.text and "disk on fire" in caplog.text


def test_write_durability_is_checked_and_means_nothing_for_stores_that_sync_every_commit() -> None:
    with pytest.raises(ValueError, match="durability must be one of write, fsync"):
        GroupCommitter(Store.open("sqlite://"), durability="lazy")
    memory = Store.open("sqlite://")

    async def main() -> None:
        committer = GroupCommitter(memory, durability="write")
        await committer.submit([Put("ns", "a", 1)])
        await committer.close()
        assert committer.stats["syncs"] == 0

    run(main())
    assert memory.get("ns", "a") == 1


_CRASH_AFTER_ACK = """
import asyncio, os, sys
from slee.store import GroupCommitter, Put, Store

async def main():
    store = Store.open(sys.argv[1])
    store.sync = lambda **kw: __import__("time").sleep(60)  # the fsync never happens
    committer = GroupCommitter(store, durability="write")
    await asyncio.gather(*(committer.submit([Put("ns", f"k{i}", i)]) for i in range(100)))
    print("acknowledged", flush=True)
    os._exit(0)  # the process dies: no sync, no close, no checkpoint

asyncio.run(main())
"""


def test_write_durability_loses_nothing_acknowledged_when_the_process_dies(tmp_path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'slee.db'}"
    Store.open(url).close()
    done = subprocess.run([sys.executable, "-c", _CRASH_AFTER_ACK, url], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == "acknowledged", done.stderr
    again = Store.open(url)
    try:
        assert again.count("ns") == 100 and again.get("ns", "k99") == 99
    finally:
        again.close()

"""Two Store instances (as two container processes would) on one database."""

from __future__ import annotations

import threading

from slee.store import ConflictError, Put, Store


def test_second_store_sees_first_stores_writes(db_url: str) -> None:
    with Store.open(db_url) as a, Store.open(db_url) as b:
        a.apply([Put("reg", "alice", {"contact": "sip:a@192.0.2.1"})])
        assert b.get_versioned("reg", "alice") == ({"contact": "sip:a@192.0.2.1"}, 1)
        b.apply([Put("reg", "alice", {"contact": "sip:a@192.0.2.2"})])
        assert a.get_versioned("reg", "alice") == ({"contact": "sip:a@192.0.2.2"}, 2)
        assert a.load("reg") == b.load("reg")


def test_stale_writer_gets_a_conflict(db_url: str) -> None:
    with Store.open(db_url) as a, Store.open(db_url) as b:
        a.apply([Put("ns", "k", 0)])
        _, seen_by_a = a.get_versioned("ns", "k")  # type: ignore[misc]
        _, seen_by_b = b.get_versioned("ns", "k")  # type: ignore[misc]
        a.apply([Put("ns", "k", "from a", expect_version=seen_by_a)])
        try:
            b.apply(
                [Put("ns", "side effect", 1), Put("ns", "k", "from b", expect_version=seen_by_b)]
            )
        except ConflictError as exc:
            assert (exc.expected, exc.actual) == (1, 2)
        else:
            raise AssertionError("the stale write was accepted")
        assert a.load("ns") == {"k": "from a"}


def test_both_create_the_same_key_only_one_wins(db_url: str) -> None:
    with Store.open(db_url) as a, Store.open(db_url) as b:
        a.apply([Put("locks", "dialog-1", "a", expect_version=0)])
        try:
            b.apply([Put("locks", "dialog-1", "b", expect_version=0)])
        except ConflictError:
            pass
        else:
            raise AssertionError("both writers created the key")
        assert b.get("locks", "dialog-1") == "a"


def test_optimistic_increments_from_two_stores_in_threads_lose_nothing(db_url: str) -> None:
    """Read-modify-write with expect_version and retry: the classic lost-update check."""
    per_thread = 25
    with Store.open(db_url) as a, Store.open(db_url) as b:
        a.apply([Put("ctr", "n", 0)])
        stores = [a, b, a, b]
        errors: list[BaseException] = []

        def worker(store: Store) -> None:
            try:
                for _ in range(per_thread):
                    while True:
                        value, version = store.get_versioned("ctr", "n")  # type: ignore[misc]
                        try:
                            store.apply([Put("ctr", "n", value + 1, expect_version=version)])
                            break
                        except ConflictError:
                            continue  # someone else incremented first: re-read, retry
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        total = per_thread * len(threads)
        assert a.get_versioned("ctr", "n") == (total, total + 1)

"""Store basics on both backends: documents, keys, ordering, versions, atomic batches."""

from __future__ import annotations

import math

import pytest

from slee.store import ConflictError, Delete, DeletePrefix, Put, Store, StoreError

NESTED = {
    "aor": "sip:alice@example.com",
    "contacts": [
        {"uri": "sip:alice@192.0.2.1:5060;transport=tcp", "q": 0.7, "expires": 3600},
        {"uri": "sips:alice@[2001:db8::1]", "q": 1.0, "expires": 0, "path": []},
    ],
    "unicode": 'Zoë 東京 🎉 \u2028 "quoted" \\ back',
    "big": 2**63 + 5,
    "neg": -(2**40),
    "float": 0.1,
    "flags": [True, False, None],
    "empty": {},
    "deep": {"a": {"b": {"c": [[1], [2, [3]]]}}},
}


def test_nested_unicode_document_round_trips(store: Store) -> None:
    store.apply([Put("reg", "alice", NESTED)])
    assert store.get("reg", "alice") == NESTED


@pytest.mark.parametrize("value", [None, 0, "", [], {}, "x", 1.5, False])
def test_scalar_and_empty_documents_round_trip(store: Store, value: object) -> None:
    store.apply([Put("ns", "k", value)])
    assert store.get_versioned("ns", "k") == (value, 1)


def test_missing_key_is_none(store: Store) -> None:
    assert store.get("ns", "nope") is None
    assert store.get_versioned("ns", "nope") is None
    assert store.load("ns") == {}
    assert store.count("ns") == 0


def test_put_replaces_and_delete_removes(store: Store) -> None:
    store.apply([Put("ns", "k", 1)])
    store.apply([Put("ns", "k", {"v": 2})])
    assert store.get("ns", "k") == {"v": 2}
    store.apply([Delete("ns", "k"), Delete("ns", "never-existed")])
    assert store.get("ns", "k") is None
    assert store.count("ns") == 0


def test_changes_apply_in_order(store: Store) -> None:
    store.apply(
        [
            Put("ns", "a", 1),
            Put("ns", "b", 1),
            DeletePrefix("ns"),
            Put("ns", "a", 2),
            Delete("ns", "a"),
            Put("ns", "c", 3),
            Put("ns", "c", 4),
        ]
    )
    assert store.load("ns") == {"c": 4}
    assert store.get_versioned("ns", "c") == (4, 2)


def test_namespaces_are_separate(store: Store) -> None:
    store.apply([Put("a", "k", "in a"), Put("b", "k", "in b"), Put("b", "j", 0)])
    assert store.get("a", "k") == "in a"
    assert store.get("b", "k") == "in b"
    assert store.namespaces() == ["a", "b"]
    assert (store.count("a"), store.count("b")) == (1, 2)
    store.apply([DeletePrefix("b")])
    assert store.namespaces() == ["a"]
    assert store.load("a") == {"k": "in a"}


KEYS = [
    "b",
    "a/2",
    "a/10",
    "a/1",
    "a",
    "A",
    "a0",
    "a.",
    "é",
    "z",
    "🎉",
    "a/1/x",
    "",
    "aa",
    "a\uffff",
]


def test_load_is_ordered_by_code_point(store: Store) -> None:
    store.apply([Put("ns", k, i) for i, k in enumerate(KEYS)])
    loaded = store.load("ns")
    assert list(loaded) == sorted(KEYS)
    assert loaded == {k: i for i, k in enumerate(KEYS)}


@pytest.mark.parametrize(
    "prefix",
    ["a/", "a/1", "a", "A", "é", "a\uffff", "🎉", "nothing", "a/1/x", chr(0x10FFFF)],
)
def test_load_prefix_returns_exactly_the_prefixed_keys(store: Store, prefix: str) -> None:
    keys = [*KEYS, chr(0x10FFFF), chr(0x10FFFF) + "x", "a\U0010ffff"]
    store.apply([Put("ns", k, k) for k in keys])
    expected = sorted(k for k in keys if k.startswith(prefix))
    assert list(store.load("ns", prefix)) == expected


def test_prefix_is_literal_and_case_sensitive(store: Store) -> None:
    keys = ["a%b", "a_b", "axb", "AB", "ab", "a\\b"]
    store.apply([Put("ns", k, 1) for k in keys])
    assert list(store.load("ns", "a%")) == ["a%b"]
    assert list(store.load("ns", "a_")) == ["a_b"]
    assert list(store.load("ns", "a\\")) == ["a\\b"]
    assert list(store.load("ns", "A")) == ["AB"]
    store.apply([DeletePrefix("ns", "a_")])
    assert sorted(store.load("ns")) == sorted(set(keys) - {"a_b"})


def test_delete_prefix_leaves_other_keys_and_namespaces(store: Store) -> None:
    store.apply(
        [
            Put("s", "u1/x", 1),
            Put("s", "u1/y", 2),
            Put("s", "u10", 3),
            Put("s", "u2/x", 4),
            Put("t", "u1/x", 5),
        ]
    )
    store.apply([DeletePrefix("s", "u1/")])
    assert store.load("s") == {"u10": 3, "u2/x": 4}
    assert store.load("t") == {"u1/x": 5}


def test_versions_start_at_one_and_bump_on_every_put(store: Store) -> None:
    store.apply([Put("ns", "k", "v1")])
    assert store.get_versioned("ns", "k") == ("v1", 1)
    store.apply([Put("ns", "k", "v2"), Put("ns", "k", "v3")])
    assert store.get_versioned("ns", "k") == ("v3", 3)
    assert store.load_versioned("ns") == {"k": ("v3", 3)}


def test_batches_larger_than_one_statement_write_every_row(store: Store) -> None:
    # Batches are written as multi-row statements of a few hundred rows each: rows at the
    # chunk edges, updates mixed with inserts and deletes across chunks must all land.
    store.apply([Put("big", f"k{i:04d}", {"n": i}) for i in range(0, 700, 2)])
    changes: list[Put | Delete] = [Put("big", f"k{i:04d}", {"n": -i}) for i in range(700)]
    changes += [Delete("big", f"k{i:04d}") for i in range(0, 700, 3)]
    store.apply(changes, coalesce=True)
    rows = store.load_versioned("big")
    expected = {f"k{i:04d}": ({"n": -i}, 2 if i % 2 == 0 else 1) for i in range(700) if i % 3}
    assert rows == expected


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "unsynced"])
def test_unsynced_batches_write_every_row_like_synced_ones(store: Store, sync: bool) -> None:
    # sync=False is the group committer's path; on file SQLite its plain upserts and deletes
    # go to the sqlite3 connection directly, past SQLAlchemy: same rows, versions, order.
    store.apply([Put("big", f"k{i:04d}", {"n": i}) for i in range(0, 600, 2)], sync=sync)
    changes: list[Put | Delete] = [Put("big", f"k{i:04d}", {"n": -i}) for i in range(600)]
    changes += [Delete("big", f"k{i:04d}") for i in range(0, 600, 3)]
    store.apply(changes, coalesce=True, sync=sync)
    store.sync()
    expected = {f"k{i:04d}": ({"n": -i}, 2 if i % 2 == 0 else 1) for i in range(600) if i % 3}
    assert store.load_versioned("big") == expected


def test_a_failing_unsynced_batch_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'slee.db'}")
    try:
        store.apply([Put("ns", "kept", 1)], sync=False)
        real = store._row_statements

        def then_fail(step, now):  # the batch's first statement runs, the second fails
            yield from real(step, now)
            yield "INSERT INTO no_such_table VALUES (1)", ()

        monkeypatch.setattr(store, "_row_statements", then_fail)
        with pytest.raises(StoreError, match="no such table"):
            store.apply([Put("ns", "kept", 2), Put("ns", "new", 1)], sync=False)
        monkeypatch.undo()
        assert store.load_versioned("ns") == {"kept": (1, 1)}  # rolled back as a whole
        store.apply([Put("ns", "after", 1)], sync=False)  # the connection is usable again
        assert store.get("ns", "after") == 1
    finally:
        store.close()


def test_coalesce_writes_last_value_once(store: Store) -> None:
    store.apply([Put("ns", "k", 0)])
    store.apply(
        [Put("ns", "k", 1), Put("ns", "k", 2), Put("ns", "j", 9), Delete("ns", "j")], coalesce=True
    )
    assert store.get_versioned("ns", "k") == (2, 2)
    assert store.get("ns", "j") is None


def test_coalesce_still_validates_superseded_values(store: Store) -> None:
    with pytest.raises(StoreError, match="JSON"):
        store.apply([Put("ns", "k", object()), Put("ns", "k", 1)], coalesce=True)
    assert store.get("ns", "k") is None


def test_expect_version_zero_means_create_only(store: Store) -> None:
    store.apply([Put("ns", "k", "first", expect_version=0)])
    with pytest.raises(ConflictError) as info:
        store.apply([Put("ns", "k", "second", expect_version=0)])
    assert (info.value.namespace, info.value.key) == ("ns", "k")
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert store.get_versioned("ns", "k") == ("first", 1)


def test_expect_version_matching_succeeds(store: Store) -> None:
    store.apply([Put("ns", "k", "a")])
    store.apply([Put("ns", "k", "b", expect_version=1)])
    assert store.get_versioned("ns", "k") == ("b", 2)
    store.apply([Delete("ns", "k", expect_version=2)])
    assert store.get("ns", "k") is None
    store.apply([Delete("ns", "k", expect_version=0)])  # asserts absence


def test_conflict_rolls_back_the_whole_batch(store: Store) -> None:
    store.apply([Put("ns", "k", "orig"), Put("ns", "other", "orig"), Put("x", "y", 1)])
    batch = [
        Put("ns", "new", "must not appear"),
        Put("ns", "other", "must not change"),
        DeletePrefix("x"),
        Put("ns", "k", "stale", expect_version=7),
        Put("ns", "after", "must not appear"),
    ]
    with pytest.raises(ConflictError) as info:
        store.apply(batch)
    assert (info.value.expected, info.value.actual) == (7, 1)
    assert store.load("ns") == {"k": "orig", "other": "orig"}
    assert store.get_versioned("ns", "other") == ("orig", 1)
    assert store.load("x") == {"y": 1}


@pytest.mark.parametrize(
    "change",
    [
        Delete("ns", "k", expect_version=5),
        Delete("ns", "absent", expect_version=1),
        Delete("ns", "k", expect_version=0),
        Put("ns", "absent", 1, expect_version=3),
    ],
)
def test_conditional_conflicts_are_detected(store: Store, change: Put | Delete) -> None:
    store.apply([Put("ns", "k", "v")])
    with pytest.raises(ConflictError):
        store.apply([Put("ns", "side", 1), change])
    assert store.load("ns") == {"k": "v"}


def test_conflict_error_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match=r"'ns'/'k'.*expected version 4.*absent"):
        store.apply([Put("ns", "k", 1, expect_version=4)])


@pytest.mark.parametrize("bad", [object(), {1j}, math.nan, math.inf, {"x": [b"bytes"]}])
def test_values_that_are_not_json_are_refused(store: Store, bad: object) -> None:
    with pytest.raises(StoreError, match=r"'ns'/'k' is not JSON"):
        store.apply([Put("ns", "ok", 1), Put("ns", "k", bad)])
    assert store.count("ns") == 0


@pytest.mark.parametrize(
    "change",
    [Put("", "k", 1), Put("ns", "a\x00b", 1), Delete("ns\x00", "k"), Put(1, "k", 1), "Put"],  # type: ignore[arg-type]
)
def test_malformed_changes_are_refused(store: Store, change: object) -> None:
    with pytest.raises(StoreError):
        store.apply([Put("ns", "ok", 1), change])  # type: ignore[list-item]
    assert store.count("ns") == 0


def test_empty_apply_is_a_no_op(store: Store) -> None:
    store.apply([])
    assert store.namespaces() == []


def test_closed_store_refuses_use(db_url: str) -> None:
    s = Store.open(db_url)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.get("ns", "k")
    with pytest.raises(StoreError, match="closed"):
        s.apply([Put("ns", "k", 1)])


def test_in_memory_sqlite_is_shared_across_threads() -> None:
    import threading

    with Store.open("sqlite://") as s:
        t = threading.Thread(target=s.apply, args=([Put("ns", "k", "from thread")],))
        t.start()
        t.join(10)
        assert s.get("ns", "k") == "from thread"

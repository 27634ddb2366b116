"""Opening: URLs, error messages, migrations, durability."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

import slee.store._store as store_module
from slee.store import LATEST_VERSION, Put, Store, StoreError, mask_url


def test_mask_url_hides_the_password() -> None:
    masked = mask_url("postgresql+psycopg://slee:s3cret@db.example:5432/slee")
    assert "s3cret" not in masked
    assert masked == "postgresql+psycopg://slee:***@db.example:5432/slee"


def test_unreachable_postgres_is_a_clear_store_error() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(StoreError) as info:
        Store.open("postgresql+psycopg://slee:s3cret@127.0.0.1:1/slee")
    message = str(info.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://slee:***@127.0.0.1:1/slee" in message
    assert "PostgreSQL is running" in message


def test_plain_postgresql_url_uses_psycopg() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://u@127.0.0.1:1/x")
    assert "postgresql+psycopg://" in str(info.value)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://u@h/db", "unsupported database"),
        ("not a url", "invalid database URL"),
        ("postgresql+psycopg2://u@h/db", "psycopg 3"),
        ("sqlite:///relative/slee.db", "absolute path"),
        ("sqlite:////nonexistent-dir-slee/sub/slee.db", "does not exist"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        Store.open(url)


def test_sqlite_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(f"sqlite:///{path}", create=False)
    assert not path.exists()


def test_sqlite_file_is_wal_and_fully_synchronous(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'slee.db'}") as s, s._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_fresh_database_gets_the_latest_schema(db_url: str) -> None:
    with Store.open(db_url) as s:
        assert s.schema_version == LATEST_VERSION
        with s._engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version FROM slee_schema")).all()
        assert rows == [(LATEST_VERSION,)]


def test_create_false_refuses_an_empty_database(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        sa.create_engine(db_url).connect().close()  # an empty but existing file
    with pytest.raises(StoreError, match="no store schema"):
        Store.open(db_url, create=False)


def test_reopening_is_idempotent_and_keeps_data(db_url: str) -> None:
    with Store.open(db_url) as s:
        s.apply([Put("ns", "k", {"v": 1})])
    for _ in range(2):
        with Store.open(db_url, create=False) as s:
            assert s.schema_version == LATEST_VERSION
            assert s.get_versioned("ns", "k") == ({"v": 1}, 1)
            with s._engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM slee_schema")).scalar() == 1


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with Store.open(db_url) as s, s._engine.begin() as conn:
        conn.execute(sa.text("UPDATE slee_schema SET version = :v"), {"v": LATEST_VERSION + 1})
    with pytest.raises(StoreError, match=rf"version {LATEST_VERSION + 1}.*newer release"):
        Store.open(db_url)


def test_pending_migrations_run_once_in_order(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(db_url) as s:
        s.apply([Put("ns", "k", 1)])
    ran: list[int] = []

    def v2(conn: sa.Connection) -> None:
        ran.append(2)
        conn.execute(sa.text("CREATE TABLE slee_extra (id INTEGER PRIMARY KEY)"))

    def v3(conn: sa.Connection) -> None:
        ran.append(3)
        conn.execute(sa.text("INSERT INTO slee_extra (id) VALUES (42)"))

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, v2, v3])
    monkeypatch.setattr(store_module, "LATEST_VERSION", LATEST_VERSION + 2)
    with Store.open(db_url) as s:
        assert s.schema_version == LATEST_VERSION + 2
        assert s.get("ns", "k") == 1
        with s._engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM slee_extra")).scalar() == 42
    with Store.open(db_url) as s:
        assert s.schema_version == LATEST_VERSION + 2
    assert ran == [2, 3]


def test_a_failing_migration_rolls_back_entirely(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_url).close()

    def v2(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE slee_half (id INTEGER)"))

    def v3(conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, v2, v3])
    monkeypatch.setattr(store_module, "LATEST_VERSION", LATEST_VERSION + 2)
    with pytest.raises(StoreError):
        Store.open(db_url)
    monkeypatch.undo()
    with Store.open(db_url) as s:
        assert s.schema_version == LATEST_VERSION
        with s._engine.connect() as conn:
            assert not sa.inspect(conn).has_table("slee_half")


def test_committed_data_survives_close_and_reopen(db_url: str) -> None:
    with Store.open(db_url) as s:
        s.apply([Put("ns", f"k{i}", {"i": i}) for i in range(50)])
        s.apply([Put("ns", "k0", "changed")])
    with Store.open(db_url) as s:
        loaded = s.load("ns")
    assert len(loaded) == 50
    assert loaded["k0"] == "changed"
    assert loaded["k49"] == {"i": 49}


def test_acknowledged_commit_survives_a_killed_process(db_url: str) -> None:
    """A child applies, prints 'ok' (the acknowledgement), then dies without closing."""
    script = textwrap.dedent(
        """
        import os, sys
        from slee.store import Put, Store
        s = Store.open(sys.argv[1])
        s.apply([Put("ns", "acked", {"by": "child"})])
        print("ok", flush=True)
        os._exit(9)  # no close, no atexit, no interpreter shutdown
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script, db_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert child.stdout.strip() == "ok", child.stderr
    assert child.returncode == 9
    with Store.open(db_url) as s:
        assert s.get("ns", "acked") == {"by": "child"}

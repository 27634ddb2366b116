"""The store: a namespaced, transactional key/value store of JSON documents.

Built on SQLAlchemy Core (no ORM). Batched writes are multi-row statements, a few hundred
rows each: the group committer runs them in a worker thread, and every statement a driver
executes releases and re-takes the GIL, which costs up to a switch interval (5 ms) while the
event loop is busy; one statement per row (executemany) made a 500-row batch take 0.7 s
under load instead of 2 ms. The SLEE container keeps its live state in memory, writes through to the store
when a SLEE transaction commits and reloads everything at start, so the store only needs point
reads, ordered prefix scans and atomic multi-change writes.

Nothing here is held by one process only: no in-process caches of rows, no sequences handed
out locally. Rows carry a version that ``expect_version`` checks inside the database statement
itself (``UPDATE ... WHERE version = :n``), so several containers can share one PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from . import _json
from ._changes import Change, Delete, DeletePrefix, EncodedJson, Put
from ._errors import ConflictError, StoreError
from ._migrations import LATEST_VERSION, MIGRATIONS
from ._schema import kv, schema

__all__ = ["Store", "mask_url", "prefix_upper_bound"]

# pg_advisory_xact_lock key serialising migrations between processes: b"SLEE" as an int.
_MIGRATION_LOCK = 0x534C4545
_SQLITE_BUSY_TIMEOUT_S = 30.0
WAL_CHECKPOINT_BYTES = 16 << 20
"""A file SQLite store checkpoints its WAL past this size, and SQLite truncates the WAL back
to it when the log starts over (``journal_size_limit``): the file then stays at this size
and commits overwrite it, so a WAL sync needs no file-size update (an ext4 journal commit,
which two processes syncing at once made 3 ms at p99 instead of 0.5 ms)."""
_fdatasync = getattr(os, "fdatasync", os.fsync)  # what SQLite itself uses on the WAL
_PG_CONNECT_TIMEOUT_S = 10
# Rows per multi-row statement: 4 parameters a row stays far below SQLite's 32,766 and
# PostgreSQL's 65,535 bound parameters.
_ROWS_PER_STATEMENT = 256


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound).

    Prefix scans are ``prefix <= key < bound``: a range both databases answer from the primary
    key index, with code point ordering on both (SQLite BINARY, PostgreSQL COLLATE "C"). LIKE is
    avoided because SQLite's LIKE is case-insensitive and needs escaping of ``%`` and ``_``.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip to the next scalar
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _key_range(column: sa.ColumnElement[str], prefix: str) -> list[sa.ColumnElement[bool]]:
    if not prefix:
        return []
    conditions = [column >= prefix]
    upper = prefix_upper_bound(prefix)
    if upper is not None:
        conditions.append(column < upper)
    return conditions


def _check_name(what: str, value: object, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} must be a str, not {type(value).__name__}")
    if not value and not allow_empty:
        raise StoreError(f"{what} must not be empty")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; refuse it on both backends
        raise StoreError(f"{what} {value!r} contains a NUL character")
    return value


class Store:
    """A namespaced, transactional key/value store of JSON documents.

    Thread-safe: reads may come from the event loop thread while a committer thread writes.
    Open it with :meth:`open`; close it with :meth:`close` (or use it as a context manager).
    """

    def __init__(self, engine: sa.Engine, url: URL, *, serialize_all: bool) -> None:
        """Use :meth:`Store.open`; this only wires an already configured engine."""
        self._engine = engine
        self._url = url
        self._masked = url.render_as_string(hide_password=True)
        self._pg = engine.dialect.name == "postgresql"
        self._closed = False
        self._schema_version = 0
        # SQLite has one writer per database: serialise our own writers in-process rather than
        # making threads spin on SQLITE_BUSY. An in-memory database is one shared connection,
        # so every use of it is serialised.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if not self._pg else contextlib.nullcontext()
        )
        self._read_lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if serialize_all:
            lock = threading.RLock()
            self._write_lock = self._read_lock = lock
        self._build_statements()
        # Deferred sync (file SQLite only, see apply(sync=False)): one connection whose
        # commits are written to the WAL but not fsynced, and a descriptor of the WAL to sync.
        database = url.database or ""
        self._wal_path: str | None = (
            f"{database}-wal" if not self._pg and database not in ("", ":memory:") else None
        )
        self._unsynced_conn: sa.Connection | None = None
        self._wal_fd: int | None = None
        self._checkpointed_size = -1  # the WAL file's size when the last checkpoint started
        self._sync_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, create: bool = True, pool_size: int = 5) -> Store:
        """Connect, create or migrate the schema, and return a ready store.

        ``sqlite:///ABS/PATH/slee.db`` (WAL, ``synchronous=FULL``), ``sqlite://`` (in memory,
        for tests) or ``postgresql+psycopg://user:password@host:port/db``. With
        ``create=False`` a database without the store's tables is refused instead of set up.
        """
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StoreError(f"invalid database URL {mask_url(url)!r}: {exc}") from None
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine, serialize_all = cls._sqlite_engine(parsed, create=create)
        elif backend == "postgresql":
            if parsed.drivername == "postgresql":  # default to the driver we ship with
                parsed = parsed.set(drivername="postgresql+psycopg")
            if parsed.get_driver_name() != "psycopg":
                raise StoreError(
                    f"{mask_url(parsed)}: use the psycopg 3 driver, "
                    "'postgresql+psycopg://user@host:port/db'"
                )
            engine, serialize_all = cls._postgres_engine(parsed, pool_size=pool_size), False
        else:
            raise StoreError(
                f"{mask_url(parsed)}: unsupported database {backend!r}; "
                "use sqlite:///ABS/PATH/slee.db or postgresql+psycopg://user@host:port/db"
            )
        store = cls(engine, parsed, serialize_all=serialize_all)
        try:
            store._migrate(create=create)
        except BaseException:
            engine.dispose()
            raise
        return store

    @staticmethod
    def _sqlite_engine(url: URL, *, create: bool) -> tuple[sa.Engine, bool]:
        database = url.database or ""
        memory = database in ("", ":memory:")
        if memory:
            # One connection shared by all threads: each new connection to ":memory:" would
            # be a different, empty database.
            engine = sa.create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            if not os.path.isabs(database):
                raise StoreError(
                    f"{mask_url(url)}: give an absolute path, sqlite:////ABS/PATH/slee.db "
                    "(four slashes before an absolute path)"
                )
            directory = os.path.dirname(database)
            if not os.path.isdir(directory):
                raise StoreError(
                    f"{mask_url(url)}: directory {directory!r} does not exist; create it first"
                )
            if not create and not os.path.exists(database):
                raise StoreError(
                    f"{mask_url(url)}: database file does not exist (opened with create=False)"
                )
            engine = sa.create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_S},
                pool_size=5,
                max_overflow=10,
            )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module (it would BEGIN lazily
            # and COMMIT before DDL); the "begin" hook below emits BEGIN itself.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            try:
                if not memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
                # FULL: the WAL is synced at every commit, so an acknowledged commit survives
                # a power cut (NORMAL would only protect against a process crash).
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Writers take the write lock up front (IMMEDIATE): a deferred transaction that
            # reads and then writes can fail with SQLITE_BUSY without waiting on busy_timeout.
            write = conn.get_execution_options().get("slee_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine, memory

    @staticmethod
    def _postgres_engine(url: URL, *, pool_size: int) -> sa.Engine:
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
        return sa.create_engine(
            url,
            connect_args=connect_args,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,  # a restarted server or a dropped idle connection is not fatal
        )

    def _connection_error(self, exc: Exception) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if self._pg:
            hint = (
                "check that PostgreSQL is running and reachable, and that the user, password "
                "and database in the URL are right"
            )
        else:
            hint = "check that the file is a SQLite database and that this process may write it"
        return StoreError(f"cannot open the store at {self._masked}: {detail}; {hint}")

    def _migrate(self, *, create: bool) -> None:
        try:
            with self._writing() as conn:
                if self._pg:  # two processes starting together must not both migrate
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                if not sa.inspect(conn).has_table(schema.name):
                    if not create:
                        raise StoreError(
                            f"{self._masked}: the database has no store schema "
                            "(opened with create=False)"
                        )
                    schema.create(conn)
                    conn.execute(schema.insert().values(version=0))
                version = conn.execute(sa.select(sa.func.max(schema.c.version))).scalar() or 0
                if version > LATEST_VERSION:
                    raise StoreError(
                        f"{self._masked}: the database schema is version {version} but this "
                        f"code knows versions up to {LATEST_VERSION}; it was written by a newer "
                        "release, so upgrade this one (downgrading a store is not supported)"
                    )
                for migration in MIGRATIONS[version:]:
                    migration(conn)
                if version < LATEST_VERSION:
                    conn.execute(schema.update().values(version=LATEST_VERSION))
                self._schema_version = LATEST_VERSION
        except StoreError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._connection_error(exc) from exc

    # -- plumbing ------------------------------------------------------------------------

    def _build_statements(self) -> None:
        p_ns, p_key = sa.bindparam("p_ns"), sa.bindparam("p_key")
        p_value: sa.ColumnElement[Any] = sa.bindparam("p_value", type_=sa.Text)
        if self._pg:
            p_value = sa.cast(p_value, postgresql.JSONB)
        p_time = sa.bindparam("p_t", type_=kv.c.updated_at.type)
        self._value_col = sa.cast(kv.c.value, sa.Text) if self._pg else kv.c.value
        where_key = (kv.c.namespace == p_ns, kv.c.key == p_key)

        insert = (postgresql.insert if self._pg else sqlite.insert)(kv).values(
            namespace=p_ns, key=p_key, value=p_value, version=1, updated_at=p_time
        )
        # RETURNING tells whether the row was inserted; rowcount is not reliable for INSERT.
        self._insert_new = insert.on_conflict_do_nothing(
            index_elements=[kv.c.namespace, kv.c.key]
        ).returning(kv.c.version)
        p_expect = sa.bindparam("p_expect", type_=sa.BigInteger)
        self._update_if = (
            sa.update(kv)
            .where(*where_key, kv.c.version == p_expect)
            .values(value=p_value, version=kv.c.version + 1, updated_at=p_time)
        )
        self._delete_if = sa.delete(kv).where(*where_key, kv.c.version == p_expect)
        self._select_version = sa.select(kv.c.version).where(*where_key)
        self._select_one = sa.select(self._value_col, kv.c.version).where(*where_key)
        # Multi-row statements in the driver's own SQL, cached by row count (see the module
        # docstring): compiling a Core statement with thousands of parameters per batch
        # would cost more than the writes.
        dialect = self._engine.dialect
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._time_bind = kv.c.updated_at.type._cached_bind_processor(dialect)  # type: ignore[attr-defined]
        self._many_sql: dict[tuple[str, int], str] = {}

    def _many(self, kind: str, n: int) -> str:
        sql = self._many_sql.get((kind, n))
        if sql is not None:
            return sql
        m = self._mark
        table = kv.name
        if kind == "upsert":
            value = f"CAST({m} AS JSONB)" if self._pg else m
            rows = ", ".join([f"({m}, {m}, {value}, 1, {m})"] * n)
            sql = (f"INSERT INTO {table} (namespace, key, value, version, updated_at) VALUES {rows} "
                   "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
                   f"version = {table}.version + 1, updated_at = excluded.updated_at")
        else:
            rows = ", ".join([f"({m}, {m})"] * n)
            sql = f"DELETE FROM {table} WHERE (namespace, key) IN (VALUES {rows})"
        self._many_sql[(kind, n)] = sql
        return sql

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._masked}: the store is closed")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        self._check_open()
        with self._read_lock, self._engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        self._check_open()
        with self._write_lock, self._engine.connect() as conn:
            conn.execution_options(slee_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _writing_unsynced(self) -> Iterator[sa.Connection]:
        self._check_open()
        with self._write_lock:
            conn = self._unsynced_connection()
            with conn.begin():
                yield conn

    def _unsynced_connection(self) -> sa.Connection:
        """The connection unsynced writes use, opened on first use; hold the write lock."""
        conn = self._unsynced_conn
        if conn is None:
            conn = self._engine.connect()
            try:
                # NORMAL: WAL commits are not synced (sync() does it), checkpoints are;
                # the WAL stays consistent (SQLite's documented WAL + NORMAL guarantee).
                # No automatic checkpoints on this connection: sync() runs them off the
                # loop. Pragmas go to the driver: inside SQLAlchemy's autobegun
                # transaction SQLite refuses to change the safety level.
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA wal_autocheckpoint=0")
                cursor.close()
                conn.execution_options(slee_write=True)
            except BaseException:
                conn.close()
                raise
            self._unsynced_conn = conn
        return conn

    def sync(self, *, checkpoint_bytes: int | None = WAL_CHECKPOINT_BYTES) -> int:
        """Make every commit so far durable: fsync the WAL (file SQLite; elsewhere commits are
        synced already). Returns the WAL's size in bytes. Past ``checkpoint_bytes`` of WAL
        (None: never), also :meth:`checkpoint` so that the WAL can start over.

        Thread-safe. It waits for the disk: about half a millisecond on a local SSD.
        """
        self._check_open()
        if self._wal_path is None:
            return 0
        with self._sync_lock:
            try:
                fd = self._wal_fd
                if fd is not None and os.fstat(fd).st_nlink == 0:  # the WAL was removed
                    os.close(fd)
                    fd = self._wal_fd = None
                if fd is None:
                    try:
                        fd = self._wal_fd = os.open(self._wal_path, os.O_RDONLY)
                    except FileNotFoundError:
                        return 0  # no WAL: every commit is in the database file already
                _fdatasync(fd)
                size = os.fstat(fd).st_size
            except OSError as exc:
                raise StoreError(f"{self._masked}: cannot sync the write-ahead log: {exc}") from None
        if checkpoint_bytes is not None and self.wal_outgrew(size, checkpoint_bytes):
            self.checkpoint()
        return size

    def wal_outgrew(self, size: int, limit: int) -> bool:
        """True when a WAL of ``size`` bytes (what :meth:`sync` returned) wants a checkpoint:
        past ``limit``, and grown since the last checkpoint started. SQLite writes the WAL
        over from its start once a checkpoint let it start over, and the file keeps its
        size: taking the size for the log's length had a checkpoint follow every sync."""
        return size > limit and size != self._checkpointed_size

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: writers go on meanwhile), syncing both
        (the pooled connections are ``synchronous=FULL``), so that the WAL can start over.
        Takes milliseconds to seconds: run it off the event loop."""
        self._check_open()
        if self._wal_path is None:
            return
        with contextlib.suppress(OSError):
            self._checkpointed_size = os.path.getsize(self._wal_path)
        raw = self._engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:
            raise StoreError(f"{self._masked}: checkpoint failed: {exc}") from None
        finally:
            raw.close()

    def _db_error(self, exc: sa.exc.SQLAlchemyError | sqlite3.Error) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return StoreError(f"{self._masked}: {text}")

    # -- public API ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self._masked

    @property
    def schema_version(self) -> int:
        """The schema version of the database (after migrations: the latest one)."""
        return self._schema_version

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        if not self._closed:
            with self._write_lock:
                if self._unsynced_conn is not None:
                    self._unsynced_conn.close()
                    self._unsynced_conn = None
            with self._sync_lock:
                if self._wal_fd is not None:
                    with contextlib.suppress(OSError):
                        os.fsync(self._wal_fd)
                    os.close(self._wal_fd)
                    self._wal_fd = None
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self._masked} schema v{self._schema_version}>"

    def get(self, namespace: str, key: str) -> Any | None:
        """The document at ``namespace``/``key``, or None when there is none."""
        found = self.get_versioned(namespace, key)
        return None if found is None else found[0]

    def get_versioned(self, namespace: str, key: str) -> tuple[Any, int] | None:
        """``(document, version)``, or None when the key does not exist."""
        try:
            with self._reading() as conn:
                row = conn.execute(self._select_one, {"p_ns": namespace, "p_key": key}).first()
        except sa.exc.SQLAlchemyError as exc:
            raise self._db_error(exc) from exc
        return None if row is None else (_json.loads(row[0]), row[1])

    def load(self, namespace: str, prefix: str = "") -> dict[str, Any]:
        """Every document of ``namespace`` whose key starts with ``prefix``, ordered by key."""
        return {key: value for key, (value, _v) in self.load_versioned(namespace, prefix).items()}

    def load_versioned(self, namespace: str, prefix: str = "") -> dict[str, tuple[Any, int]]:
        """Like :meth:`load`, with each document's version: ``{key: (document, version)}``."""
        query = (
            sa.select(kv.c.key, self._value_col, kv.c.version)
            .where(kv.c.namespace == namespace, *_key_range(kv.c.key, prefix))
            .order_by(kv.c.key)
        )
        loads = _json.loads
        try:
            with self._reading() as conn:
                return {key: (loads(text), ver) for key, text, ver in conn.execute(query)}
        except sa.exc.SQLAlchemyError as exc:
            raise self._db_error(exc) from exc

    def namespaces(self) -> list[str]:
        """Every namespace holding at least one key, sorted."""
        query = sa.select(kv.c.namespace).distinct().order_by(kv.c.namespace)
        try:
            with self._reading() as conn:
                return list(conn.execute(query).scalars())
        except sa.exc.SQLAlchemyError as exc:
            raise self._db_error(exc) from exc

    def count(self, namespace: str) -> int:
        """How many keys ``namespace`` holds."""
        query = sa.select(sa.func.count()).select_from(kv).where(kv.c.namespace == namespace)
        try:
            with self._reading() as conn:
                return int(conn.execute(query).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise self._db_error(exc) from exc

    @property
    def defers_sync(self) -> bool:
        """True when ``apply(sync=False)`` + :meth:`sync` is cheaper than ``apply()`` (file SQLite)."""
        return self._wal_path is not None

    def apply(self, changes: Sequence[Change], *, coalesce: bool = False, sync: bool = True) -> None:
        """Apply ``changes`` in order as ONE database transaction: all of them or none.

        Every Put bumps the row's version (a new row starts at 1). A failed ``expect_version``
        raises :class:`ConflictError` and rolls the whole batch back. When this returns the
        transaction is committed and synced to disk.

        ``coalesce=True`` (used by the group committer) keeps only the last of several Puts
        and Deletes of one key, so the version moves once; every value is still validated.
        It is ignored when any change carries ``expect_version``, whose check must see the
        versions the earlier changes produce.

        ``sync=False`` (file SQLite; elsewhere it is ignored): committed and visible, written
        to the WAL but not yet synced; it is durable once a later :meth:`sync` returns. The
        group committer writes on the event loop this way (no GIL hand-over per statement)
        and syncs in its worker thread, one fsync for everything written before it.
        """
        self._check_open()
        if not changes:
            return
        steps = self._plan(changes, coalesce=coalesce)
        now = datetime.now(UTC)
        unsynced = not sync and self._wal_path is not None
        if unsynced and all(step[0] == "upsert" or step[0] == "delete" for step in steps):
            self._apply_unsynced_rows(steps, now)
            return
        writing = self._writing_unsynced() if unsynced else self._writing()
        try:
            with writing as conn:
                for step in steps:
                    self._run(conn, step, now)
        except StoreError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._db_error(exc) from exc

    # -- writing -------------------------------------------------------------------------

    def _plan(self, changes: Sequence[Change], *, coalesce: bool) -> list[tuple[Any, ...]]:
        """Validate, encode and group changes into steps; consecutive unconditional Puts (or
        Deletes) of distinct keys become one executemany, in key order so that concurrent
        writers lock rows in the same order and cannot deadlock each other."""
        steps: list[tuple[Any, ...]] = []
        run_kind: str | None = None
        run: list[dict[str, Any]] = []
        run_keys: set[tuple[str, str]] = set()
        last: dict[tuple[str, str], int] | None = None
        if coalesce and not any(
            getattr(change, "expect_version", None) is not None for change in changes
        ):
            last = {}
            for index, change in enumerate(changes):
                if isinstance(change, Put | Delete) and isinstance(change.key, str):
                    last[(change.namespace, change.key)] = index

        def flush() -> None:
            nonlocal run_kind, run
            if run:
                run.sort(key=lambda p: (p["p_ns"], p["p_key"]))
                steps.append((run_kind, run))
            run_kind, run = None, []
            run_keys.clear()

        for index, change in enumerate(changes):
            if isinstance(change, Put):
                ns = _check_name("namespace", change.namespace, allow_empty=False)
                key = _check_name("key", change.key, allow_empty=True)
                value = change.value
                try:
                    text = value if type(value) is EncodedJson else _json.dumps(value)
                except (TypeError, ValueError) as exc:
                    raise StoreError(
                        f"value of {ns!r}/{key!r} is not JSON-serialisable: {exc}"
                    ) from None
                params = {"p_ns": ns, "p_key": key, "p_value": text}
                if change.expect_version is not None:
                    flush()
                    steps.append(("put_if", params, change.expect_version))
                    continue
                kind = "upsert"
            elif isinstance(change, Delete):
                ns = _check_name("namespace", change.namespace, allow_empty=False)
                key = _check_name("key", change.key, allow_empty=True)
                params = {"p_ns": ns, "p_key": key}
                if change.expect_version is not None:
                    flush()
                    steps.append(("delete_if", params, change.expect_version))
                    continue
                kind = "delete"
            elif isinstance(change, DeletePrefix):
                flush()
                ns = _check_name("namespace", change.namespace, allow_empty=False)
                prefix = _check_name("prefix", change.prefix, allow_empty=True)
                steps.append(("delete_prefix", ns, prefix))
                continue
            else:
                raise StoreError(f"not a store change: {change!r}")
            ident = (ns, key)
            if last is not None and last.get(ident, index) != index:
                continue  # superseded later in the batch: validated, not written
            if kind != run_kind or ident in run_keys:
                flush()
                run_kind = kind
            run.append(params)
            run_keys.add(ident)
        flush()
        return steps

    def _row_statements(self, step: tuple[Any, ...], now: datetime) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """The multi-row statements (SQL, parameters) of an upsert or delete step."""
        kind, rows = step[0], step[1]
        when = self._time_bind(now) if self._time_bind is not None else now
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            params: list[Any] = []
            if kind == "upsert":
                for row in chunk:
                    params += (row["p_ns"], row["p_key"], row["p_value"], when)
            else:
                for row in chunk:
                    params += (row["p_ns"], row["p_key"])
            yield self._many(kind, len(chunk)), tuple(params)

    def _apply_unsynced_rows(self, steps: list[tuple[Any, ...]], now: datetime) -> None:
        """The group committer's usual batch (unconditional upserts and deletes, unsynced) on
        the sqlite3 connection itself: SQLAlchemy's connection, transaction and event layers
        cost more than the statements for the few rows a batch has when traffic is light
        (80 against 34 us for one row, measured in one process). The statements, the
        transaction (BEGIN IMMEDIATE ... COMMIT) and the connection are the ones the
        SQLAlchemy path uses."""
        self._check_open()
        with self._write_lock:
            raw = self._unsynced_connection().connection.driver_connection
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    for step in steps:
                        for sql, params in self._row_statements(step, now):
                            raw.execute(sql, params)
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._db_error(exc) from None

    def _run(self, conn: sa.Connection, step: tuple[Any, ...], now: datetime) -> None:
        kind = step[0]
        if kind == "upsert" or kind == "delete":
            for sql, params in self._row_statements(step, now):
                conn.exec_driver_sql(sql, params)
        elif kind == "delete_prefix":
            _, ns, prefix = step
            conn.execute(sa.delete(kv).where(kv.c.namespace == ns, *_key_range(kv.c.key, prefix)))
        elif kind == "put_if":
            _, params, expect = step
            params = {**params, "p_t": now}
            if expect == 0:
                done = conn.execute(self._insert_new, params).first() is not None
            else:
                done = conn.execute(self._update_if, {**params, "p_expect": expect}).rowcount == 1
            if not done:
                self._conflict(conn, params, expect)
        elif kind == "delete_if":
            _, params, expect = step
            if expect == 0:  # "must be absent": nothing to delete, only a check
                if conn.execute(self._select_version, params).first() is not None:
                    self._conflict(conn, params, expect)
            elif conn.execute(self._delete_if, {**params, "p_expect": expect}).rowcount != 1:
                self._conflict(conn, params, expect)
        else:  # pragma: no cover - _plan produces only the kinds above
            raise AssertionError(kind)

    def _conflict(self, conn: sa.Connection, params: dict[str, Any], expect: int) -> None:
        actual = conn.execute(self._select_version, params).scalar()
        raise ConflictError(params["p_ns"], params["p_key"], expect, actual or 0)

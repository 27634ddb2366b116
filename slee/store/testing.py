"""Helpers for tests (and benchmarks) that need a real, private database.

PostgreSQL runs are isolated in a throwaway schema: every connection of the yielded URL has
``search_path`` set to it (libpq ``options``), so parallel test runs sharing one server never
see each other's tables, and dropping the schema removes everything the run created.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from ._errors import StoreError
from ._store import mask_url

__all__ = ["DEFAULT_TEST_PG_URL", "postgres_schema", "test_pg_url"]

DEFAULT_TEST_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def test_pg_url() -> str:
    """The PostgreSQL server tests use: ``$SLEE_TEST_PG_URL`` or the local default."""
    return os.environ.get("SLEE_TEST_PG_URL") or DEFAULT_TEST_PG_URL


test_pg_url.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@contextlib.contextmanager
def postgres_schema(base_url: str | None = None, *, prefix: str = "slee_test_") -> Iterator[str]:
    """Create a uniquely named schema, yield a URL whose connections use it, then drop it.

    Raises StoreError saying how to fix it when the server cannot be reached.
    """
    url = make_url(base_url or test_pg_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"{prefix}{secrets.token_hex(6)}"
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise StoreError(
            f"PostgreSQL not reachable at {mask_url(url)} "
            f"({detail[0] if detail else type(exc).__name__}); "
            "start it or set SLEE_TEST_PG_URL"
        ) from None
    options = url.query.get("options")
    options = options if isinstance(options, str) else " ".join(options or ())
    scoped = url.update_query_dict(
        {"options": f"{options} -csearch_path={name}".strip()}
    ).render_as_string(hide_password=False)
    try:
        yield scoped
    finally:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            engine.dispose()

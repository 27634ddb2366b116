"""Fixtures for the store tests: every backend-dependent test runs on SQLite and PostgreSQL.

PostgreSQL tests get a private schema each (slee.store.testing.postgres_schema), so parallel
runs on one server never clash. An unreachable server FAILS those tests, it never skips them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from slee.store import Store, StoreError
from slee.store.testing import postgres_schema

T = TypeVar("T")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the test's backend (SQLite: a temp file)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'slee.db'}"
        return
    schema_cm = postgres_schema()
    problem = None
    try:
        url = schema_cm.__enter__()
    except StoreError as exc:
        problem = str(exc)
    if problem is not None:  # fail (never skip) outside the except: no chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield url
    finally:
        schema_cm.__exit__(None, None, None)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))

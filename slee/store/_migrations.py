"""Schema migrations, applied in order inside one transaction when a store is opened.

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``. Append, never edit: a
migration is a frozen snapshot, so each one spells out its own DDL instead of reusing the
current table objects in ``_schema`` (which follow the latest version).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]

Migration = Callable[[sa.Connection], None]


def _v1_create_kv(conn: sa.Connection) -> None:
    """Version 1: the key/value table of JSON documents with per-row versions."""
    md = sa.MetaData()
    name = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
    sa.Table(
        "slee_kv",
        md,
        sa.Column("namespace", name, primary_key=True),
        sa.Column("key", name, primary_key=True),
        sa.Column(
            "value", sa.Text().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: list[Migration] = [_v1_create_kv]
LATEST_VERSION = len(MIGRATIONS)

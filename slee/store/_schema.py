"""The current table definitions, used to build queries (migrations create them).

Keys and namespaces use the "C" collation on PostgreSQL so that ``ORDER BY key`` is code point
order (the same as SQLite's BINARY collation and Python's ``sorted``) and so that the primary
key's btree serves prefix range scans. Values are JSONB on PostgreSQL and JSON text on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

__all__ = ["kv", "metadata", "schema"]

metadata = sa.MetaData()

_Name = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

schema = sa.Table(
    "slee_schema",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

kv = sa.Table(
    "slee_kv",
    metadata,
    sa.Column("namespace", _Name, primary_key=True),
    sa.Column("key", _Name, primary_key=True),
    sa.Column("value", sa.Text().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

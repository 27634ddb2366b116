"""The changes a SLEE transaction hands to the store on commit.

Small frozen value objects so a batch can be queued, coalesced and retried without copying.
``expect_version`` gives optimistic concurrency: ``None`` writes unconditionally, ``0`` means
"the key must not exist", ``n > 0`` means "the stored row must still be at version n".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["Change", "Delete", "DeletePrefix", "EncodedJson", "Put"]


class EncodedJson(str):
    """A document already encoded by ``slee.store._json.dumps``, stored as is.

    For writers that keep the JSON of unchanged parts of a large document between writes
    (an SBB entity's CMP fields): the store would otherwise re-encode the whole document on
    every write. Whoever builds one vouches that it is what ``dumps`` would produce.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Put:
    """Create or replace one JSON document."""

    namespace: str
    key: str
    value: Any
    expect_version: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove one document; deleting an absent key is not an error (unless a version is expected)."""

    namespace: str
    key: str
    expect_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    """Remove every key of ``namespace`` starting with ``prefix`` ('' empties the namespace)."""

    namespace: str
    prefix: str = ""


Change: TypeAlias = Put | Delete | DeletePrefix

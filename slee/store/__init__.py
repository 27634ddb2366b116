"""The container's persistent store: namespaced, transactional JSON documents.

The SLEE container keeps live state in memory and writes it through here when a SLEE
transaction commits (through :class:`GroupCommitter`, one fsync for many transactions); at
start it reloads everything with :meth:`Store.load`. SQLite (embedded, default) or PostgreSQL,
which several container processes can share. See docs/store.md.
"""

from ._changes import Change, Delete, DeletePrefix, EncodedJson, Put
from ._committer import DURABILITY, GroupCommitter
from ._errors import ConflictError, StoreError
from ._migrations import LATEST_VERSION
from ._store import Store, mask_url

__all__ = [
    "DURABILITY",
    "LATEST_VERSION",
    "Change",
    "ConflictError",
    "Delete",
    "DeletePrefix",
    "EncodedJson",
    "GroupCommitter",
    "Put",
    "Store",
    "StoreError",
    "mask_url",
]

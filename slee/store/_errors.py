"""Errors raised by the store."""

from __future__ import annotations

__all__ = ["ConflictError", "StoreError"]


class StoreError(Exception):
    """The store could not do what was asked (connection, schema, encoding, database error).

    The message names the database URL with the password masked and, where there is one,
    what the operator can do about it.
    """


class ConflictError(StoreError):
    """An ``expect_version`` did not match: another writer got there first.

    The whole batch the change was part of has been rolled back; nothing in it was written.
    ``actual`` is the version found (0 when the key does not exist).
    """

    def __init__(self, namespace: str, key: str, expected: int, actual: int) -> None:
        super().__init__(
            f"version conflict on {namespace!r}/{key!r}: expected version {expected}, "
            f"found {actual}{' (absent)' if actual == 0 else ''}"
        )
        self.namespace = namespace
        self.key = key
        self.expected = expected
        self.actual = actual

    def __reduce__(self):  # keep the exception picklable despite the custom __init__
        return (type(self), (self.namespace, self.key, self.expected, self.actual))

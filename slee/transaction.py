"""SLEE transactions (JSR 240 §9): every event delivery runs in one.

State lives in memory and is changed in place, so reads inside a transaction see its own
writes; each change records how to undo itself. Commit keeps the changes, runs the deferred
actions (timers, fired events) and hands the store writes to the group committer; rollback
replays the undo log backwards. Side effects that acknowledge something to the outside world
(a SIP response) are registered with ``after_durable`` so they leave only once the state that
they acknowledge is on disk.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slee.errors import TransactionRequiredError

_DELETE = object()
_ids = itertools.count(1)

class _CurrentTransaction:
    """The transaction of the running code: a context variable that only ever yields an
    *active* transaction.

    asyncio copies the context into every callback it schedules; a callback scheduled from
    inside a commit (a drain, a timer) would otherwise still see the committed transaction
    and join it — its work, such as removing detached root entities, would then never be
    committed.
    """

    __slots__ = ("_var",)

    def __init__(self) -> None:
        self._var: contextvars.ContextVar[SleeTransaction | None] = contextvars.ContextVar(
            "slee_current_transaction", default=None
        )

    def get(self) -> SleeTransaction | None:
        txn = self._var.get()
        return txn if txn is not None and txn.state == "active" else None

    def set(self, txn: SleeTransaction | None) -> contextvars.Token:
        return self._var.set(txn)

    def reset(self, token: contextvars.Token) -> None:
        self._var.reset(token)


current_transaction = _CurrentTransaction()


class SleeTransaction:
    """One unit of work: an undo log, deferred actions and the store writes to make."""

    __slots__ = (
        "_after_durable",
        "_dirty",
        "_on_commit",
        "_undo",
        "_writes",
        "gc",
        "id",
        "loaded",
        "rollback_only",
        "state",
    )

    def __init__(self) -> None:
        self.id = next(_ids)
        self.state = "active"
        self.rollback_only = False
        self._undo: list[Callable[[], None]] = []
        self._on_commit: list[Callable[[], None]] = []
        self._after_durable: list[Callable[[], None]] = []
        self._writes: dict[tuple[str, str], Any] = {}
        self._dirty: dict[int, Any] = {}
        self.loaded: list[Any] = []  # SBB entities whose objects were loaded (sbb_store at commit)
        self.gc: list[Any] = []  # root entities that may have lost their last attachment

    # -- recording ---------------------------------------------------------------------
    def record_undo(self, undo: Callable[[], None]) -> None:
        """Register how to revert a change already made in memory."""
        self._undo.append(undo)

    def on_commit(self, action: Callable[[], None]) -> None:
        """Defer an action (arm a timer, enqueue a fired event) until commit; dropped on rollback."""
        self._on_commit.append(action)

    def after_durable(self, action: Callable[[], None]) -> None:
        """Run once this transaction's store writes are durable (at once without a store)."""
        self._after_durable.append(action)

    def put(self, namespace: str, key: str, value: Any) -> None:
        if "\x00" in key or "\x00" in namespace:
            raise ValueError(f"a store key cannot contain a NUL character: {key!r}")  # refused here, not at commit
        self._writes[(namespace, key)] = value

    def delete(self, namespace: str, key: str) -> None:
        if "\x00" in key or "\x00" in namespace:
            raise ValueError(f"a store key cannot contain a NUL character: {key!r}")
        self._writes[(namespace, key)] = _DELETE

    def mark_dirty(self, persistable: Any) -> None:
        """Persist ``persistable.persist(txn)`` at commit (once, however often it changed)."""
        self._dirty[id(persistable)] = persistable

    def set_rollback_only(self) -> None:
        self.rollback_only = True

    # -- outcome (called by the TransactionManager) ----------------------------------
    def _collect_writes(self) -> list[tuple[str, str, Any]]:
        for obj in self._dirty.values():
            obj.persist(self)
        self._dirty.clear()
        return [(ns, key, value) for (ns, key), value in self._writes.items()]

    def __repr__(self) -> str:
        return f"<SleeTransaction {self.id} {self.state}>"


def is_delete(value: Any) -> bool:
    return value is _DELETE


def require_transaction() -> SleeTransaction:
    txn = current_transaction.get()
    if txn is None:
        raise TransactionRequiredError("this operation needs a SLEE transaction (call it from an event handler or within Container.transaction())")
    return txn


class TransactionManager:
    """Begins, commits and rolls back SLEE transactions; hands writes to a ``write_sink``.

    ``write_sink(changes, on_durable)`` persists ``changes`` (a list of (namespace, key, value
    or DELETE)) and calls ``on_durable(error_or_None)`` when they are safe; without a sink
    everything is durable at once (the in-memory container of the test harness).
    """

    def __init__(self, write_sink: Callable[[list[tuple[str, str, Any]], Callable[[BaseException | None], None]], None] | None = None) -> None:
        self.write_sink = write_sink
        self.committed = 0
        self.rolled_back = 0
        self.write_failures = 0
        self.on_error: Callable[[str, BaseException], None] | None = None
        self.on_store_result: Callable[[BaseException | None], None] | None = None

    def begin(self) -> tuple[SleeTransaction, contextvars.Token]:
        txn = SleeTransaction()
        return txn, current_transaction.set(txn)

    def commit(self, txn: SleeTransaction, token: contextvars.Token | None = None) -> None:
        """Commit, or roll back if marked rollback-only. Raises nothing from deferred actions."""
        try:
            if txn.rollback_only:
                self._rollback(txn)
                return
            try:
                writes = txn._collect_writes()
            except BaseException:  # e.g. a CMP value with no store encoding: nothing happened
                self._rollback(txn)
                raise
            txn.state = "committed"
            self.committed += 1
            txn._undo.clear()  # nothing to undo any more: let the old values go
            txn.loaded.clear()
            for action in txn._on_commit:
                self._safely("commit action", action)
            txn._on_commit.clear()
            durable = txn._after_durable
            txn._after_durable = []
            if writes and self.write_sink is not None:
                def done(error: BaseException | None, durable: list = durable) -> None:
                    if error is not None:
                        # Not durable: acknowledge nothing (no 200 for a binding that may be
                        # lost). The peer retries; the store alarm says why.
                        self.write_failures += 1
                        if self.on_store_result:
                            self.on_store_result(error)
                        if self.on_error:
                            self.on_error("store write", error)
                        return
                    if self.on_store_result:
                        self.on_store_result(None)
                    for action in durable:
                        self._safely("after-durable action", action)
                self.write_sink(writes, done)
            else:
                for action in durable:
                    self._safely("after-durable action", action)
        finally:
            if token is not None:
                current_transaction.reset(token)

    def rollback(self, txn: SleeTransaction, token: contextvars.Token | None = None) -> None:
        """Roll back (again harmlessly, after a commit that failed and rolled back itself)."""
        try:
            self._rollback(txn)
        finally:
            if token is not None:
                try:
                    current_transaction.reset(token)
                except RuntimeError:  # commit's own finally reset it already
                    pass

    def _rollback(self, txn: SleeTransaction) -> None:
        if txn.state == "rolled-back":
            return
        undo = txn._undo
        while undo:
            self._safely("undo", undo.pop())
        txn._on_commit.clear()
        txn._after_durable.clear()
        txn._writes.clear()
        txn._dirty.clear()
        txn.loaded.clear()
        txn.gc.clear()
        txn.state = "rolled-back"
        self.rolled_back += 1

    def _safely(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # one broken deferred action must not stop the others
            if self.on_error:
                self.on_error(what, exc)

    @contextmanager
    def transaction(self) -> Iterator[SleeTransaction]:
        """``with tm.transaction() as txn:`` — commit on success, roll back on an exception."""
        outer = current_transaction.get()
        if outer is not None:  # join the caller's transaction (JSR 240 "mandatory" semantics)
            yield outer
            return
        txn, token = self.begin()
        try:
            yield txn
        except BaseException:
            self.rollback(txn, token)
            raise
        else:
            self.commit(txn, token)


__all__ = [
    "SleeTransaction",
    "TransactionManager",
    "current_transaction",
    "is_delete",
    "require_transaction",
]

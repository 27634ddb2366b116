"""The binding table behind the location service: transactional, persisted, clock-driven.

Writes happen inside a SLEE transaction: memory changes at once (later reads in the same
transaction see them), an undo entry reverts them on rollback, the AOR's document is written
to the container store with the transaction, and the change is announced (``notify``) only
after commit. Time is always a parameter or the injected clock: nothing here reads the wall
clock, so expiry is testable with a fake clock.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable
from typing import Any

from slee.ra.location.events import Binding, LocationEvent
from slee.sip import SipParseError, SipURI, parse_uri
from slee.transaction import require_transaction


class ConcurrentUpdateError(RuntimeError):
    """The AOR changed since the caller read it (``save(..., expected_version=...)``)."""


def contact_key(binding: Binding) -> str:
    """Which stored binding a new Contact replaces (RFC 3261 §10.3 step 6: URI equality;
    RFC 5626 §6: the same +sip.instance and reg-id replace each other whatever the URI)."""
    if binding.instance is not None and binding.reg_id is not None:
        return f"instance:{binding.instance}:{binding.reg_id}"
    return uri_key(binding.contact)


def uri_key(uri_text: str) -> str:
    """A comparison key for a contact URI: scheme, user and password case-sensitive, host
    case-insensitive, default port explicit, transport/user/maddr/ttl/method params (§19.1.4)."""
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        return uri_text
    if not isinstance(uri, SipURI):
        return str(uri)
    params = {k.lower(): (v or "").lower() for k, v in uri.params.items()
              if k.lower() in ("transport", "user", "maddr", "ttl", "method")}
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    user = uri.user or ""
    return f"{uri.scheme}:{user}@{uri.host.lower()}:{port};" + ";".join(f"{k}={v}" for k, v in sorted(params.items()))


def store_key(aor: str) -> str:
    """The AOR as a store key: ``%`` and NUL escaped, because the store refuses NUL (an
    AOR like RFC 4475 ``escnull``'s ``sip:null-%00-null@...`` unescapes to one)."""
    return aor.replace("%", "%25").replace("\x00", "%00")


def aor_from_key(key: str) -> str:
    return _KEY_ESCAPE.sub(lambda m: "%" if m.group() == "%25" else "\x00", key)


_KEY_ESCAPE = re.compile("%25|%00")


def best_first(bindings: Iterable[Binding]) -> list[Binding]:
    """Highest q first (a contact without q counts as 1.0), then the most recently refreshed."""
    return sorted(bindings, key=lambda b: (-(b.q if b.q is not None else 1.0), -b.expires_at))


class LocationTable:
    """AOR -> bindings, with a version per AOR for optimistic writers."""

    def __init__(self, *, now: Callable[[], float], namespace: str = "location",
                 notify: Callable[[LocationEvent, int, int], None] | None = None) -> None:
        self._now = now
        self.namespace = namespace
        self._notify = notify
        self._aors: dict[str, tuple[Binding, ...]] = {}
        self._versions: dict[str, int] = {}
        self.known: set[str] = set()  # AORs that were ever registered (since the table was loaded)
        # (earliest expiry of an AOR's bindings, AOR), stale entries dropped lazily: finding
        # the next deadline and the due AORs costs O(log n), not a scan of every binding.
        self._expiries: list[tuple[float, str]] = []

    # -- loading ------------------------------------------------------------------------
    def load(self, docs: dict[str, Any]) -> int:
        """Fill from the store's documents (namespace ``self.namespace``); returns bindings."""
        count = 0
        for key, doc in docs.items():
            aor = aor_from_key(key)
            bindings = tuple(Binding.from_json(aor, b) for b in doc.get("bindings", ()))
            self.known.add(aor)
            if bindings:
                self._aors[aor] = bindings
                self._push_expiry(aor, bindings)
                count += len(bindings)
        return count

    # -- reads ----------------------------------------------------------------------------
    def lookup(self, aor: str, now: float | None = None) -> list[Binding]:
        """Unexpired bindings of ``aor``, best q first."""
        now = self._now() if now is None else now
        return best_first(b for b in self._aors.get(aor, ()) if b.expires_at > now)

    def stored(self, aor: str) -> tuple[Binding, ...]:
        """Every stored binding of ``aor``, expired ones too (until the timer removes them)."""
        return self._aors.get(aor, ())

    def aors(self, now: float | None = None) -> list[str]:
        now = self._now() if now is None else now
        return sorted(a for a, bs in self._aors.items() if any(b.expires_at > now for b in bs))

    def version(self, aor: str) -> int:
        return self._versions.get(aor, 0)

    def was_registered(self, aor: str) -> bool:
        return aor in self.known

    def next_expiry(self) -> float | None:
        heap = self._expiries
        while heap:
            when, aor = heap[0]
            if self._earliest(aor) == when:
                return when
            heapq.heappop(heap)
        return None

    def _earliest(self, aor: str) -> float | None:
        bindings = self._aors.get(aor)
        return min(b.expires_at for b in bindings) if bindings else None

    def _push_expiry(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        heap = self._expiries
        heapq.heappush(heap, (min(b.expires_at for b in bindings), aor))
        if len(heap) > 2 * len(self._aors) + 1024:  # too many stale entries: rebuild
            self._expiries = [(min(b.expires_at for b in bs), a) for a, bs in self._aors.items()]
            heapq.heapify(self._expiries)

    def __len__(self) -> int:
        return sum(len(bs) for bs in self._aors.values())

    # -- writes ---------------------------------------------------------------------------
    def save(self, aor: str, bindings: Iterable[Binding], reason: str, *,
             expected_version: int | None = None) -> int:
        """Replace the bindings of ``aor`` in the current SLEE transaction; returns the new version.

        ``expected_version`` (from ``version(aor)`` when the caller read) makes the write fail
        with ``ConcurrentUpdateError`` if another transaction changed the AOR since.
        """
        txn = require_transaction()
        if expected_version is not None and expected_version != self.version(aor):
            raise ConcurrentUpdateError(f"bindings of {aor} changed (version {self.version(aor)}, "
                                        f"expected {expected_version})")
        new = tuple(best_first(bindings))
        old = self._aors.get(aor, ())
        old_version = self._versions.get(aor, 0)
        was_known = aor in self.known
        # Stored counts, not unexpired ones: every Registered is matched by one Deregistered,
        # even for a binding that lapsed a moment before the expiry timer swept it.
        before, after = len(old), len(new)
        self._set(aor, new)
        self._versions[aor] = old_version + 1
        self.known.add(aor)

        def undo() -> None:
            self._set(aor, old)
            self._versions[aor] = old_version
            if not was_known:
                self.known.discard(aor)

        txn.record_undo(undo)
        txn.put(self.namespace, store_key(aor), {"bindings": [b.to_json() for b in new]})
        if self._notify is not None and (before or after or old != new):
            event = LocationEvent(aor, new, reason)
            notify = self._notify
            txn.on_commit(lambda: notify(event, before, after))
        return old_version + 1

    def remove_expired(self, now: float) -> list[str]:
        """Drop expired bindings (in the current transaction); returns the AORs changed."""
        heap = self._expiries
        due: set[str] = set()
        while heap and heap[0][0] <= now:
            when, aor = heapq.heappop(heap)
            if self._earliest(aor) == when:
                due.add(aor)
        changed = []
        for aor in sorted(due):
            bindings = self._aors.get(aor, ())
            alive = [b for b in bindings if b.expires_at > now]
            if len(alive) != len(bindings):
                self.save(aor, alive, "expired")
                changed.append(aor)
        return changed

    def _set(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        if bindings:
            self._aors[aor] = bindings
            self._push_expiry(aor, bindings)
        else:
            self._aors.pop(aor, None)

"""Digest authentication of REGISTER (RFC 3261 §22.4, RFC 7616, RFC 8760) against the
subscriber table, with no user enumeration and a per-source-IP limit on failures.

The verifier state (nonce secret, nonce-count replay table, failure counters) is process
state, not SLEE state: losing it on restart only costs clients one more challenge. It lives in
one ``DigestGuard`` per service, shared by the service's pooled SBB objects.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

from slee.sip import (
    AuthResult,
    DigestChallenge,
    NonceManager,
    Request,
    SipParseError,
    compute_ha1,
    verify,
)

ALGORITHMS = ("SHA-256", "MD5")  # offered in this order: the strongest first (RFC 8760 §2.4)
_DUMMY_SECRET = os.urandom(16).hex()  # HA1 of a user that does not exist (constant work per attempt)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """``user`` when authenticated; otherwise the response to send."""

    user: str | None = None
    profile: dict | None = None
    status: int = 0
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class DigestGuard:
    def __init__(self, *, nonce_lifetime: float = 300.0, max_failures: int = 5, window: float = 60.0,
                 max_sources: int = 10_000) -> None:
        self.nonces = NonceManager(os.urandom(32), nonce_lifetime)
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # ip -> (window start, count)
        self._max_sources = max_sources

    def challenge(self, realm: str, now: float, *, stale: bool = False) -> tuple[tuple[str, str], ...]:
        nonce = self.nonces.issue(now)
        return tuple(("WWW-Authenticate", DigestChallenge(realm, nonce, algorithm, stale=stale).to_header())
                     for algorithm in ALGORITHMS)

    def blocked(self, source_ip: str, now: float) -> bool:
        entry = self._failures.get(source_ip)
        return entry is not None and now - entry[0] < self.window and entry[1] >= self.max_failures

    def _failed(self, source_ip: str, now: float) -> None:
        start, count = self._failures.get(source_ip, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._failures[source_ip] = (start, count + 1)
        self._failures.move_to_end(source_ip)
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)

    def check(self, request: Request, realm: str, table: object, source_ip: str, now: float) -> AuthOutcome:
        """Authenticate ``request`` for ``realm``; the subscriber table maps ``user@realm``."""
        if self.blocked(source_ip, now):
            return AuthOutcome(status=403, reason="Forbidden (too many failed attempts; retry later)",
                               headers=(("Retry-After", str(int(self.window))),))
        try:
            offered = [c for c in request.authorization if c.scheme.lower() == "digest"
                       and c.params.get("realm") == realm]
        except SipParseError:
            return AuthOutcome(status=400, reason="Bad Request (malformed Authorization)")
        if not offered:
            return AuthOutcome(status=401, reason="Unauthorized", headers=self.challenge(realm, now))
        creds = offered[0].params
        username = creds.get("username", "")
        profile = table.get(f"{username}@{realm}") if username else None  # type: ignore[attr-defined]
        if profile is not None and profile.get("enabled", True):
            ha1 = {"MD5": profile.get("ha1_md5") or "", "SHA-256": profile.get("ha1_sha256") or ""}
        else:  # unknown user: the same work and the same answer as a wrong password
            ha1 = {a: compute_ha1(username, realm, _DUMMY_SECRET, a) for a in ALGORITHMS}
            profile = None
        result = verify(creds, request.method, ha1, self.nonces, now, body=request.body, realm=realm,
                        request_uri=request.raw_uri)
        if result is AuthResult.OK and profile is not None:
            return AuthOutcome(user=username, profile=profile)
        if result is AuthResult.STALE and profile is not None:
            return AuthOutcome(status=401, reason="Unauthorized", headers=self.challenge(realm, now, stale=True))
        self._failed(source_ip, now)
        return AuthOutcome(status=401, reason="Unauthorized", headers=self.challenge(realm, now))

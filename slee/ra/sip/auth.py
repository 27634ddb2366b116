"""Digest authentication for SIP services (RFC 3261 §22, RFC 7616, RFC 8760) against a
subscriber profile table — shared by the registrar, the proxy and presence.

Usage in an SBB handler (REGISTER gets 401/WWW-Authenticate, anything else 407/
Proxy-Authenticate; the challenge or refusal is already sent when ``ok`` is False)::

    from slee.ra.sip.auth import DigestAuthenticator

    def on_publish(self, event, aci):
        st = event.server_transaction
        auth = DigestAuthenticator.for_service(self.context)       # one per service, shared
        outcome = auth.check(st, self.context.profile_facility, now=self.context.now())
        if not outcome.ok:
            return                                                 # 401/407/403/400 was sent
        if not outcome.may_use(aor_of(event.request.to.uri)):      # e.g. PUBLISH only your own
            st.respond(403, "Forbidden (not your address-of-record)")
            return
        ...                                                        # outcome.user, outcome.aor

Profiles live in the table ``subscribers`` (``bin/slee users add``), named ``user@realm``,
with attributes ``ha1_md5``, ``ha1_sha256`` (H(user:realm:password), never the password),
``addresses`` (extra AORs the user may use) and ``enabled``. The realm is the SIP domain:
by default the To host for REGISTER (the AOR being registered) and the From host for every
other request (the user sending it); pass ``realm_for`` to change that.

Behaviour that clients and attackers see:
- Every challenge offers one header per algorithm, strongest first (RFC 8760 §2.4).
- A nonce stays good for ``nonce_lifetime`` seconds on any number of later requests (with a
  rising nonce-count, RFC 7616 §3.3), so clients are not re-challenged on every PUBLISH or
  MESSAGE; nonces are signed with a per-process secret, so one issued by the registrar is
  also accepted by the proxy and by presence.
- A right password with an expired, forgotten, foreign or replayed nonce gets a fresh
  challenge with ``stale=TRUE`` (RFC 7616 §3.3) and is not counted as a failure.
- An unknown user and a wrong password get byte-for-byte the same kind of answer after the
  same hashing work (no user enumeration).
- Failed attempts (wrong credentials, not missing ones) are counted per source IP; past
  ``rate_limit.failures`` within ``rate_limit.window`` seconds the source gets
  ``403`` with ``Retry-After`` until the window ends, whatever it sends.
- Malformed Authorization headers get 400.

The verifier state (nonce secret, nonce-count replay table, failure counters) is process
state, not SLEE state: losing it on restart costs clients one more challenge.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slee.ra.sip.provider import aor_of
from slee.sip import (
    AuthResult,
    DigestChallenge,
    NonceManager,
    NonceStatus,
    Request,
    SipParseError,
    SipURI,
    compute_ha1,
    verify,
)

__all__ = ["AuthOutcome", "DigestAuthenticator", "RateLimit", "default_realm"]

_PROCESS_SECRET = os.urandom(32)  # nonces verify across every service of this process
_DUMMY_PASSWORD = os.urandom(16).hex()  # HA1 of a user that does not exist: constant work


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``failures`` failed attempts per source IP within ``window`` seconds."""

    failures: int = 5
    window: float = 60.0
    max_sources: int = 10_000  # memory bound: the oldest sources are forgotten first


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The result of :meth:`DigestAuthenticator.check`.

    ``ok`` True: ``user`` (digest username), ``realm``, ``aor`` (``sip:user@realm``) and
    ``profile`` (the subscriber profile's attributes) are set. ``ok`` False: ``status`` is the
    response that was already sent (401, 407, 403 or 400); do not answer again.
    """

    ok: bool
    user: str | None = None
    realm: str | None = None
    aor: str | None = None
    profile: Mapping[str, Any] | None = None
    status: int = 0

    @property
    def addresses(self) -> frozenset[str]:
        """The AORs this user may act as: its own plus the profile's ``addresses``."""
        if not self.ok:
            return frozenset()
        extra = (self.profile or {}).get("addresses") or ()
        return frozenset({self.aor or "", *(aor_of(a) for a in extra)}) - {""}

    def may_use(self, aor: str) -> bool:
        """May the authenticated user register / publish / send as ``aor``? (§10.3 step 3)"""
        return self.ok and aor_of(aor) in self.addresses


def default_realm(request: Request) -> str | None:
    """The SIP domain whose subscribers are asked: the To host of a REGISTER (the AOR being
    bound), the From host of anything else (the sender). None when it is not a SIP URI."""
    try:
        uri = request.to.uri if request.method == "REGISTER" else request.from_.uri
    except SipParseError:
        return None
    return uri.host.lower() if isinstance(uri, SipURI) and uri.host else None


class _Recorder:
    """Wraps the NonceManager for one ``verify`` call to learn why a correct response was
    refused (stale, replayed or foreign nonce): the password was right, so re-challenge with
    stale=TRUE rather than count a failure."""

    __slots__ = ("inner", "status")

    def __init__(self, inner: NonceManager) -> None:
        self.inner = inner
        self.status: NonceStatus | None = None

    def check(self, nonce: str, nc: int | None, now: float) -> NonceStatus:
        self.status = self.inner.check(nonce, nc, now)
        return self.status


_instances: weakref.WeakKeyDictionary[Any, dict[tuple, DigestAuthenticator]] = weakref.WeakKeyDictionary()


class DigestAuthenticator:
    """Challenges and verifies digest credentials; one instance per service (it holds the
    replay table and failure counters), shared by the service's pooled SBB objects."""

    def __init__(
        self,
        table_name: str = "subscribers",
        *,
        realm_for: Callable[[Request], str | None] = default_realm,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        rate_limit: RateLimit | None = RateLimit(),
        secret: bytes | None = None,
    ) -> None:
        if not algorithms:
            raise ValueError("need at least one digest algorithm")
        self.table_name = table_name
        self.realm_for = realm_for
        self.algorithms = tuple(algorithms)
        self.rate_limit = rate_limit
        self.nonces = NonceManager(secret or _PROCESS_SECRET, nonce_lifetime)
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # ip -> (window start, count)

    @classmethod
    def for_service(cls, context: Any, table_name: str = "subscribers", **options: Any) -> DigestAuthenticator:
        """The service's shared instance (created on first use), keyed by the container, the
        service and the options, so pooled SBB objects share replay and failure state."""
        per_container = _instances.setdefault(context.profile_facility, {})
        key = (str(context.service_id), table_name, tuple(sorted(options.items())))
        found = per_container.get(key)
        if found is None:
            found = per_container[key] = cls(table_name, **options)
        return found

    # -- the check ----------------------------------------------------------------------------
    def check(self, st: Any, profiles: Any, *, proxy: bool | None = None, now: float | None = None) -> AuthOutcome:
        """Authenticate the request of server transaction ``st``; answer it when that fails.

        ``profiles`` is the SBB's ``context.profile_facility`` (or the subscriber table itself,
        anything with ``get(name) -> dict | None``). ``proxy`` selects 407/Proxy-Authenticate/
        Proxy-Authorization (True) or 401/WWW-Authenticate/Authorization (False); None means
        401 for REGISTER and 407 for everything else. ``now`` is the container clock
        (``context.now()``); wall-clock time when omitted. Never call it for ACK or CANCEL
        (RFC 3261 §22.1: they cannot be challenged).
        """
        request: Request = st.request
        now = time.time() if now is None else now
        if proxy is None:
            proxy = request.method != "REGISTER"
        source = st.source.host
        if self._blocked(source, now):
            window = self.rate_limit.window if self.rate_limit else 0
            st.respond(403, "Forbidden (too many failed attempts; retry later)",
                       headers=(("Retry-After", str(max(1, int(window)))),))
            return AuthOutcome(False, status=403)
        realm = self.realm_for(request)
        if not realm:
            st.respond(403, "Forbidden (no SIP domain to authenticate against)")
            return AuthOutcome(False, status=403)
        try:
            offered = request.proxy_authorization if proxy else request.authorization
        except SipParseError:
            st.respond(400, f"Bad Request (malformed {'Proxy-' if proxy else ''}Authorization)")
            return AuthOutcome(False, status=400)
        mine = [c.params for c in offered if c.scheme.lower() == "digest" and c.params.get("realm") == realm]
        if not mine:  # none for us (possibly for another hop): challenge, count nothing
            return self._challenge(st, realm, now, proxy=proxy)
        creds = mine[0]
        username = creds.get("username", "")
        profile = self._profile(profiles, f"{username}@{realm}") if username else None
        if profile is not None and profile.get("enabled", True) is not False:
            ha1 = {"MD5": profile.get("ha1_md5") or "", "SHA-256": profile.get("ha1_sha256") or ""}
        else:  # unknown or disabled: the same work and the same answer as a wrong password
            ha1 = {a: compute_ha1(username, realm, _DUMMY_PASSWORD, a) for a in ("MD5", "SHA-256")}
            profile = None
        recorder = _Recorder(self.nonces)
        result = verify(creds, request.method, ha1, recorder, now,  # type: ignore[arg-type]
                        body=request.body, realm=realm, request_uri=request.raw_uri)
        if profile is not None and result is AuthResult.OK:
            return AuthOutcome(True, user=username, realm=realm, aor=aor_of(f"sip:{username}@{realm}"),
                               profile=profile)
        if profile is not None and recorder.status is not None:
            # The response matched, only the nonce was refused (expired, replayed, not ours).
            return self._challenge(st, realm, now, proxy=proxy, stale=True)
        self._failed(source, now)
        return self._challenge(st, realm, now, proxy=proxy)

    # -- helpers --------------------------------------------------------------------------------
    def challenge_headers(self, realm: str, now: float, *, proxy: bool, stale: bool = False) -> list[tuple[str, str]]:
        """One challenge per algorithm with one fresh nonce (RFC 8760 §2.4: strongest first)."""
        nonce = self.nonces.issue(now)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return [(name, DigestChallenge(realm, nonce, a, stale=stale).to_header()) for a in self.algorithms]

    def _challenge(self, st: Any, realm: str, now: float, *, proxy: bool, stale: bool = False) -> AuthOutcome:
        status, reason = (407, "Proxy Authentication Required") if proxy else (401, "Unauthorized")
        st.respond(status, reason, headers=self.challenge_headers(realm, now, proxy=proxy, stale=stale))
        return AuthOutcome(False, status=status)

    def _profile(self, profiles: Any, name: str) -> Mapping[str, Any] | None:
        table = profiles
        if hasattr(profiles, "get_table"):
            try:
                table = profiles.get_table(self.table_name)
            except Exception:  # no table deployed: nobody can authenticate
                return None
        try:
            return table.get(name)
        except Exception:
            return None

    def _blocked(self, source: str, now: float) -> bool:
        limit = self.rate_limit
        entry = self._failures.get(source)
        return (limit is not None and entry is not None and now - entry[0] < limit.window
                and entry[1] >= limit.failures)

    def _failed(self, source: str, now: float) -> None:
        limit = self.rate_limit
        if limit is None:
            return
        start, count = self._failures.get(source, (now, 0))
        if now - start >= limit.window:
            start, count = now, 0
        self._failures[source] = (start, count + 1)
        self._failures.move_to_end(source)
        while len(self._failures) > limit.max_sources:
            self._failures.popitem(last=False)

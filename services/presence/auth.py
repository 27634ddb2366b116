"""Digest authentication of presence requests (RFC 3261 §22.3, RFC 3903 §13, RFC 3856 §9).

With authentication on, a PUBLISH or an initial SUBSCRIBE whose From is a local user is
challenged with 407 (``slee.ra.sip.auth.DigestAuthenticator``: a nonce stays valid for its
lifetime, so a client is not challenged on every PUBLISH), and the authenticated user must
be allowed to use that From address (403 otherwise). Requests from other domains are not
challenged: their domain vouches for them and they have no credentials here. In-dialog
refreshes are not challenged either: the dialog was authenticated when it was created.

"On" comes from the service config ``authentication`` ("on" / "off"), or, by default
("registrar"), from the registrar's ``sip-settings/default`` profile (``auth``, ``domains``),
so one recipe variable switches registrar, proxy and presence together.
"""

from __future__ import annotations

from typing import Any

from slee.ra.sip import RequestEvent, aor_of
from slee.ra.sip.auth import AuthOutcome, DigestAuthenticator
from slee.sip import SipParseError, SipURI

from .config import PresenceConfig

SIP_SETTINGS = "sip-settings"
SUBSCRIBERS = "subscribers"


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "yes", "true", "digest")
    return bool(value)


def sip_settings(context: Any) -> dict[str, Any]:
    """The registrar's ``sip-settings/default`` profile, or nothing when it is not deployed."""
    try:
        return dict(context.profile_facility.get_table(SIP_SETTINGS).get("default") or {})
    except Exception:
        return {}


def enabled(context: Any, cfg: PresenceConfig) -> bool:
    if cfg.authentication != "registrar":
        return cfg.authentication == "on"
    return _flag(sip_settings(context).get("auth", False))


def is_local(context: Any, host: str) -> bool:
    """A served domain: the configured ``domains``; with none, any domain with subscribers
    (the proxy's rule, so both treat one sender alike)."""
    domains = sip_settings(context).get("domains") or ()
    if isinstance(domains, str):
        domains = domains.split(",")
    served = [d.strip().lower() for d in domains if d and d.strip()]
    if served:
        return host in served
    try:
        table = context.profile_facility.get_table(SUBSCRIBERS)
    except Exception:
        return False
    return bool(table.find("realm", host))


def authenticate(context: Any, event: RequestEvent, cfg: PresenceConfig) -> AuthOutcome | None:
    """None when the request may go on unauthenticated (auth off, or a foreign sender); an
    ``AuthOutcome`` otherwise — when not ``ok`` the 407/403/400 has been sent. On success the
    authenticated user was also checked against From (403 when it may not use it)."""
    if not enabled(context, cfg):
        return None
    st = event.server_transaction
    try:
        sender = event.request.from_.uri
    except SipParseError:
        st.respond(400, "Bad Request (malformed From)")
        return AuthOutcome(False, status=400)
    if not isinstance(sender, SipURI) or not is_local(context, (sender.host or "").lower()):
        return None
    usage = context.usage("presence")
    outcome = DigestAuthenticator.for_service(context, SUBSCRIBERS).check(
        st, context.profile_facility, proxy=True, now=context.now())
    if not outcome.ok:
        usage.increment("auth_challenges" if outcome.status == 407 else "auth_refused")
        return outcome
    if not outcome.may_use(aor_of(sender)):
        usage.increment("auth_refused")
        st.respond(403, "Forbidden (From is not your address)")
        return AuthOutcome(False, status=403)
    return outcome

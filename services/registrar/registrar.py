"""The Registrar SBB (RFC 3261 §10.3, RFC 3327 Path): bindings in the location service.

One job: answer REGISTER. It reads the AOR's bindings from the location RA, decides with
``process_register`` (pure), writes the new set back in its own SLEE transaction, and answers;
the 200 OK leaves only after the write is durable (the SIP provider defers sends), and the
location RA announces the change to other services after commit.

REGISTERs for one AOR never lose a binding to each other: the handler is synchronous, so
its read-modify-write of the AOR runs without interleaving on the container's loop, and the
write also carries the version it read (``expected_version``), which the location service
checks.
"""

from __future__ import annotations

from typing import Any

from slee import Sbb, event_handler
from slee.ra.sip import REQUEST, RequestEvent, aor_of
from slee.ra.sip.auth import DigestAuthenticator, RateLimit
from slee.sip import SipParseError, SipURI

from ._config import RegistrarConfig
from ._register import Accepted, ok_headers, process_register

SETTINGS_TABLE = "sip-settings"
SETTINGS_PROFILE = "default"


def settings(context: Any) -> dict[str, Any]:
    """Service config from the unit, overridden by the recipe's ``sip-settings/default`` profile."""
    out = dict(context.service_config or {})
    try:
        table = context.profile_facility.get_table(SETTINGS_TABLE)
    except Exception:
        return out
    profile = table.get(SETTINGS_PROFILE)
    if profile:
        out.update({k: v for k, v in profile.items() if v is not None})
    return out


class RegistrarSbb(Sbb):
    sbb_name, sbb_vendor, sbb_version = "RegistrarSbb", "slee.sip", "1.0"

    @event_handler(REQUEST["REGISTER"], initial=True, select=("activity_context",))
    def on_register(self, event: RequestEvent, aci: Any) -> None:
        st = event.server_transaction
        request = event.request
        cfg = RegistrarConfig.from_service(settings(self.context))
        now = self.context.now()
        usage = self.context.usage()
        try:
            to_uri = request.to.uri
        except SipParseError:
            st.respond(400, "Bad Request (malformed To)")
            return
        if not isinstance(to_uri, SipURI):  # RFC 4475 §3.3.2 (unksm2): the AOR must be SIP/SIPS
            st.respond(400, "Bad Request (the To header must be a SIP or SIPS address-of-record)")
            return
        if not to_uri.user:
            st.respond(404, "Not Found (the To header must be a SIP address-of-record)")
            return
        aor = aor_of(to_uri)
        domain = to_uri.host.lower()
        if cfg.domains and domain not in cfg.domains:
            st.respond(404, "Not Found (domain not served here)")
            return
        if cfg.auth:
            outcome = self._authenticator(cfg).check(st, self.context.profile_facility, proxy=False, now=now)
            if not outcome.ok:
                usage.increment("auth_challenges" if outcome.status == 401 else "auth_refused")
                return
            if not outcome.may_use(aor):  # A may register only A's AOR (§10.3 step 3)
                usage.increment("auth_refused")
                st.respond(403, "Forbidden (not your address-of-record)")
                return
        location = self.context.ra("location")
        version = location.version(aor)
        src = event.source
        decision = process_register(request, aor, location.lookup(aor), now, cfg,
                                    (src.transport, src.host, src.port))
        if not isinstance(decision, Accepted):
            usage.increment(f"rejected_{decision.status}")
            st.respond(decision.status, decision.reason, headers=decision.headers)
            return
        if decision.changed:
            location.save(aor, decision.bindings, decision.reason, expected_version=version)
            usage.increment(decision.reason)
        else:
            usage.increment("queries")
        st.respond(200, "OK", headers=ok_headers(request, decision.bindings, now))
        tracer = self.tracer
        if tracer.is_fine_enabled:
            tracer.fine("REGISTER %s: %s, %d binding(s)", aor, decision.reason, len(decision.bindings))

    def _authenticator(self, cfg: RegistrarConfig) -> DigestAuthenticator:
        return DigestAuthenticator.for_service(
            self.context, cfg.subscribers_table, nonce_lifetime=cfg.nonce_lifetime, algorithms=cfg.auth_algorithms,
            rate_limit=RateLimit(cfg.auth_failures, cfg.auth_window))

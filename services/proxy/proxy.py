"""The Proxy SBB: a stateful forking proxy (RFC 3261 §16) for requests to registered AORs.

Per request it decides one of three things. A request carrying a Route (an in-dialog BYE,
re-INVITE, or the ACK of a 2xx of a Record-Routed dialog) is forwarded by the Route /
Request-URI (loose routing, §16.4, §16.6); the ACK statelessly. A request for an AOR in a
served domain is forwarded in parallel to every registered contact (§16.6), over the flow the
contact registered on, or via its stored Path (RFC 3327); the best final response wins
(§16.7). Anything else (e.g. OPTIONS to the server itself) is not taken: the SIP RA answers.

State per request lives in CMP on one root entity per server transaction: the branches
(their activity contexts) and the best final response so far.
"""

from __future__ import annotations

from typing import Any

from slee import CmpField, Sbb, event_handler, initial_event_selector
from slee.ra.sip import (
    REQUEST,
    RESPONSE_CLIENT_ERROR,
    RESPONSE_GLOBAL_FAILURE,
    RESPONSE_PROVISIONAL,
    RESPONSE_REDIRECT,
    RESPONSE_SERVER_ERROR,
    RESPONSE_SUCCESS,
    TRANSACTION_TIMEOUT,
    RequestEvent,
    ResponseEvent,
    TimeoutEvent,
    aor_of,
)
from slee.ra.sip.auth import DigestAuthenticator
from slee.ra.sip.events import REQUEST_EXTENSION
from slee.sip import Peer, Request, SipParseError, SipURI, parse_message
from slee.sip._addressing import request_destination

from ._select import better, upstream_status

SETTINGS_TABLE = "sip-settings"
PROXIED = ("MESSAGE", "INVITE", "OPTIONS", "INFO", "UPDATE", "PRACK", "REFER", "BYE", "NOTIFY", "ACK")
ROUTE_ONLY = ("BYE", "NOTIFY", "ACK", "PRACK", "UPDATE", "INFO")  # only ever in a dialog


def proxy_settings(context: Any) -> dict[str, Any]:
    out = dict(context.service_config or {})
    try:
        profile = context.profile_facility.get_table(SETTINGS_TABLE).get("default")
    except Exception:
        profile = None
    if profile:
        out.update({k: v for k, v in profile.items() if v is not None})
    return out


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "yes", "true")
    return bool(value)


class ProxySbb(Sbb):
    sbb_name, sbb_vendor, sbb_version = "ProxySbb", "slee.sip", "1.0"

    server_aci = CmpField(object)  # the request's server transaction
    branches = CmpField(list)  # [{"aci": ACI, "final": status or None}]
    best = CmpField(bytes)  # best final response so far (wire bytes), for §16.7 step 6
    best_status = CmpField(int)
    done = CmpField(bool, default=False)  # a final response went upstream

    # -- which requests are ours ---------------------------------------------------------------
    @initial_event_selector
    def select_request(self, ies: Any) -> Any:
        request: Request = ies.event.request
        sip = self.context.ra("sip")
        ies.select_activity_context()
        try:
            if request.headers.get("Route"):
                return ies  # loose routing through us (the RA checked it is not for us alone)
            uri = request.uri
        except SipParseError:
            ies.initial_event = False
            return ies
        if request.method in ROUTE_ONLY or not isinstance(uri, SipURI) or not uri.user or sip.is_local(uri):
            ies.initial_event = False  # for this element itself, or nothing a proxy can route
            return ies
        domains = [d.lower() for d in proxy_settings(self.context).get("domains") or ()]
        if domains and uri.host.lower() not in domains:
            ies.initial_event = False
        return ies

    @event_handler(REQUEST["MESSAGE"], initial=True, selector="select_request")
    def on_message(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["INVITE"], initial=True, selector="select_request")
    def on_invite(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["OPTIONS"], initial=True, selector="select_request")
    def on_options(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["BYE"], initial=True, selector="select_request")
    def on_bye(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["ACK"], initial=True, selector="select_request")
    def on_ack(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["INFO"], initial=True, selector="select_request")
    def on_info(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["UPDATE"], initial=True, selector="select_request")
    def on_update(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["PRACK"], initial=True, selector="select_request")
    def on_prack(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["REFER"], initial=True, selector="select_request")
    def on_refer(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST["NOTIFY"], initial=True, selector="select_request")
    def on_notify(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    @event_handler(REQUEST_EXTENSION, initial=True, selector="select_request")
    def on_extension(self, event: RequestEvent, aci: Any) -> None:
        self._proxy(event, aci)

    # -- request processing (§16.3 - §16.6) --------------------------------------------------
    def _proxy(self, event: RequestEvent, aci: Any) -> None:
        request = event.request
        st = event.server_transaction
        sip = self.context.ra("sip")
        is_ack = request.method == "ACK"
        mf = request.max_forwards
        if mf is not None and mf <= 0:  # §16.3 step 3
            if not is_ack:
                st.respond(483, "Too Many Hops")
            return
        if self._looped(request, sip):  # §16.3 step 4
            if not is_ack:
                st.respond(482, "Loop Detected")
            return
        settings = proxy_settings(self.context)
        record_route = _flag(settings.get("record_route", False))
        if is_ack:
            self._forward_ack(request, sip)
            return
        if _flag(settings.get("auth", False)) and not self._authenticated(event, settings):
            return
        self.server_aci = aci
        self.branches = []
        self.best = None
        self.best_status = None
        self.done = False
        aor = aor_of(request.uri)
        location = self.context.ra("location")
        bindings = location.lookup(aor)
        if not bindings and self._routed(request, sip):
            self._fork(st, [(None, None)], record_route)  # loose routing: next Route or R-URI
            return
        if not bindings:
            self.context.usage().increment("not_found" if not self._known(aor, location) else "unavailable")
            if self._known(aor, location):
                st.respond(480, "Temporarily Unavailable")
            else:
                st.respond(404, "Not Found")
            return
        targets = []
        for b in bindings:
            if b.path:  # RFC 3327 §5.2: reach the contact through the stored Path
                targets.append((b.contact, ("path", list(b.path))))
            elif b.received is not None:  # the flow it registered over (NAT, TCP connection reuse)
                targets.append((b.contact, ("flow", list(b.received))))
            else:
                targets.append((b.contact, None))
        self._fork(st, targets, record_route)

    def _authenticated(self, event: RequestEvent, settings: dict[str, Any]) -> bool:
        """Digest-authenticate (407, RFC 3261 §22.3) an out-of-dialog request whose sender
        claims a local address, and check the sender may use that From address. Requests from
        other domains are not challenged: their own domain vouches for them (and a foreign
        user has no credentials here). In-dialog requests (To-tag), ACK and CANCEL never are
        (§22.1: ACK and CANCEL cannot be resubmitted)."""
        request = event.request
        try:
            if request.to_tag is not None:
                return True
            sender = request.from_.uri
        except SipParseError:
            event.server_transaction.respond(400, "Bad Request (malformed From or To)")
            return False
        if not isinstance(sender, SipURI) or not self._local_domain(sender.host.lower(), settings):
            return True
        st = event.server_transaction
        algorithms = settings.get("auth_algorithms") or "SHA-256,MD5"
        if isinstance(algorithms, str):
            algorithms = algorithms.split(",")
        auth = DigestAuthenticator.for_service(self.context, "subscribers",
                                               algorithms=tuple(a.strip().upper() for a in algorithms if a.strip()))
        outcome = auth.check(st, self.context.profile_facility, proxy=True, now=self.context.now())
        usage = self.context.usage()
        if not outcome.ok:
            usage.increment("auth_challenges" if outcome.status == 407 else "auth_refused")
            return False
        if not outcome.may_use(aor_of(sender)):
            usage.increment("auth_refused")
            st.respond(403, "Forbidden (From is not your address)")
            return False
        return True

    def _local_domain(self, host: str, settings: dict[str, Any]) -> bool:
        """Is ``host`` a domain served here? The configured domains; with none configured,
        every domain that has subscribers (so a foreign sender is still let through)."""
        domains = settings.get("domains") or ()
        if isinstance(domains, str):
            domains = domains.split(",")
        domains = [d.strip().lower() for d in domains if d and d.strip()]
        if domains:
            return host in domains
        try:
            table = self.context.profile_facility.get_table("subscribers")
        except Exception:
            return False
        return bool(table.find("realm", host))

    def _known(self, aor: str, location: Any) -> bool:
        """480 vs 404: a subscriber, or an AOR that was registered once, is known."""
        if location.was_registered(aor):
            return True
        try:
            table = self.context.profile_facility.get_table("subscribers")
        except Exception:
            return False
        uri = _user_host(aor)
        return uri is not None and f"{uri[0]}@{uri[1]}" in table

    @staticmethod
    def _routed(request: Request, sip: Any) -> bool:
        """Forward by Route / Request-URI rather than by the location service? Yes when a
        Route other than ours follows, or the Request-URI is a contact (an IP address or an
        explicit port), as in-dialog requests carry; a UA that merely uses us as its outbound
        proxy (Route: us) and addresses an AOR gets the AOR treatment."""
        try:
            routes = [r for r in request.routes if not sip.is_local(r.uri)]
            uri = request.uri
        except SipParseError:
            return False
        if routes:
            return True
        if not request.headers.get("Route") or not isinstance(uri, SipURI):
            return False
        host = uri.host
        return uri.port is not None or host.replace(".", "").isdigit() or ":" in host

    @staticmethod
    def _looped(request: Request, sip: Any) -> bool:
        """§16.3 step 4 (simplified): our own sent-by in a Via means the request came back."""
        try:
            vias = request.vias
        except SipParseError:
            return False
        return any(v.host.lower() == sip.host.lower() and (v.port or 5060) == sip.port for v in vias)

    def _fork(self, st: Any, targets: list[tuple[str | None, Any]], record_route: bool) -> None:
        sip = self.context.ra("sip")
        me = self.context.sbb_local_object
        branches = []
        for index, (target, how) in enumerate(targets):
            original = st.request
            request = original
            destination = None
            if how is not None and how[0] == "path":
                request = parse_message(original.to_bytes())
                for route in reversed(how[1]):
                    request.headers.prepend("Route", route)
                request.uri = target
                destination = request_destination(request)
            elif how is not None and how[0] == "flow":
                transport, host, port = how[1]
                destination = Peer(transport, host, int(port))
            ct = sip.forward_request(request if request is not original else st, target, record_route=record_route,
                                     destination=destination, context=index)
            ct_aci = self.context.aci_for(ct)
            ct_aci.attach(me)
            branches.append({"aci": ct_aci, "final": None})
        self.branches = branches
        self.context.usage().increment("forwarded")

    def _forward_ack(self, request: Request, sip: Any) -> None:
        """The ACK of a 2xx is its own transaction-less request (§16.6 + §17): forward statelessly."""
        out = parse_message(request.to_bytes())
        mf = request.max_forwards
        out.headers.set("Max-Forwards", str((mf if mf is not None else 70) - 1))
        routes = out.headers.get_all("Route")
        if routes and sip.is_local(out.routes[0].uri):
            out.headers.remove("Route")
            for r in routes[1:]:
                out.headers.add("Route", r)
        try:
            destination = request_destination(out)
        except ValueError:
            return
        host = f"[{sip.host}]" if ":" in sip.host else sip.host
        out.headers.prepend("Via", f"SIP/2.0/{destination.transport.upper()} {host}:{sip.port};"
                                   f"branch={sip.new_branch()}")
        sip.send_stateless(out, destination)

    # -- responses (§16.7) -----------------------------------------------------------------------
    @event_handler(RESPONSE_PROVISIONAL)
    def on_provisional(self, event: ResponseEvent, aci: Any) -> None:
        st = self._st()
        if st is not None and not self.done and not st.answered and event.status > 100:
            self.context.ra("sip").forward_response(st, event.response)  # §16.7 step 5

    @event_handler(RESPONSE_SUCCESS)
    def on_success(self, event: ResponseEvent, aci: Any) -> None:
        self._final(event.client_transaction, event.status, event.response)
        st = self._st()
        if st is None or st.answered:
            return
        self.context.ra("sip").forward_response(st, event.response)  # a 2xx goes up at once
        self.done = True
        if st.method == "INVITE":
            self._cancel_pending()

    @event_handler(RESPONSE_REDIRECT)
    def on_redirect(self, event: ResponseEvent, aci: Any) -> None:
        self._failure(event)

    @event_handler(RESPONSE_CLIENT_ERROR)
    def on_client_error(self, event: ResponseEvent, aci: Any) -> None:
        self._failure(event)

    @event_handler(RESPONSE_SERVER_ERROR)
    def on_server_error(self, event: ResponseEvent, aci: Any) -> None:
        self._failure(event)

    @event_handler(RESPONSE_GLOBAL_FAILURE)
    def on_global_failure(self, event: ResponseEvent, aci: Any) -> None:
        self._final(event.client_transaction, event.status, event.response)
        st = self._st()
        if st is None or st.answered or self.done:
            return
        self._cancel_pending()  # §16.7 step 5: a 6xx ends the search
        self._send_upstream(st, event.status, event.response.to_bytes())

    @event_handler(TRANSACTION_TIMEOUT)
    def on_timeout(self, event: TimeoutEvent, aci: Any) -> None:
        self._final(event.client_transaction, 408, None)
        self._maybe_finish()

    @event_handler(REQUEST["CANCEL"])
    def on_cancel(self, event: RequestEvent, aci: Any) -> None:
        """Upstream CANCEL (§16.10): cancel every pending branch; the RA answers 487."""
        self._cancel_pending()

    def _failure(self, event: ResponseEvent) -> None:
        self._final(event.client_transaction, event.status, event.response)
        if better(event.status, self.best_status):
            self.best_status = event.status
            self.best = event.response.to_bytes()
        self._maybe_finish()

    def _final(self, ct: Any, status: int, response: Any) -> None:
        branches = list(self.branches or [])
        for branch in branches:
            if branch["aci"].activity is ct and branch["final"] is None:
                branch["final"] = status
        self.branches = branches

    def _maybe_finish(self) -> None:
        st = self._st()
        if st is None or st.answered or self.done:
            return
        if any(b["final"] is None for b in self.branches or []):
            return
        self.done = True
        if self.best is None:
            st.respond(408, "Request Timeout")
            return
        self._send_upstream(st, self.best_status, self.best)

    def _send_upstream(self, st: Any, status: int, raw: bytes) -> None:
        self.done = True
        response = parse_message(raw)
        if upstream_status(status) != status:
            st.respond(500, "Server Internal Error")
            return
        self.context.ra("sip").forward_response(st, response)

    def _cancel_pending(self) -> None:
        sip = self.context.ra("sip")
        for branch in self.branches or []:
            ct = branch["aci"].activity
            if branch["final"] is None and ct.method == "INVITE" and ct.final_status is None:
                sip.cancel(ct)

    def _st(self) -> Any:
        aci = self.server_aci
        return aci.activity if aci is not None else None


def _user_host(aor: str) -> tuple[str, str] | None:
    """(user, host) of ``sip:user@host``."""
    if not aor.startswith("sip:") or "@" not in aor:
        return None
    user, _, host = aor[4:].partition("@")
    return user, host

"""The SIP provider: the interface SBBs use to answer, send, proxy and keep dialogs.

Everything an SBB sends inside a SLEE transaction leaves only after that transaction
commits and its writes are durable (``after_durable``): a 200 OK to a REGISTER is never sent
for a binding that could still be lost, and nothing is sent by a handler that rolled back.
The provider builds messages; the *engine* behind it (the RA, or a recorder in unit tests)
moves them through the transaction layer and the transports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from slee.ra.sip.activities import (
    ClientTransactionActivity,
    Dialog,
    ServerTransactionActivity,
    new_tag,
    random_hex,
    uas_dialog,
)
from slee.sip import Request, Response, SipURI, make_response, parse_uri
from slee.sip._addressing import Peer, request_destination
from slee.sip._message import Headers
from slee.transaction import current_transaction

MAGIC_COOKIE = "z9hG4bK"
UDP_MTU_LIMIT = 1300  # RFC 3261 §18.1.1: larger requests go over a congestion-controlled transport


class SipEngine(Protocol):
    """What the provider needs from whoever owns the network (the RA, or a test recorder)."""

    host: str  # advertised host for Via / Contact / Record-Route
    port: int
    transports: tuple[str, ...]
    server_header: str | None
    branch_prefix: str  # "z9hG4bK", or "z9hG4bK-w<N>-" naming this worker (slee.transport._shard)

    def transmit_response(self, st: ServerTransactionActivity, response: Response) -> None: ...
    def transmit_request(self, ct: ClientTransactionActivity) -> None: ...
    def transmit_stateless(self, message: Request | Response, destination: Peer) -> None: ...
    def start_client_activity(self, ct: ClientTransactionActivity) -> None: ...
    def abandon_client_activity(self, ct: ClientTransactionActivity) -> None: ...
    def dialog_created(self, dialog: Dialog) -> None: ...
    def dialog_changed(self, dialog: Dialog) -> None: ...
    def dialog_terminated(self, dialog: Dialog) -> None: ...
    def dialog_destination(self, dialog: Dialog, request: Request) -> Peer: ...
    def is_local(self, uri: Any) -> bool: ...


def _defer(action: Any) -> None:
    txn = current_transaction.get()
    if txn is None:
        action()
    else:
        txn.after_durable(action)


def aor_of(uri: Any) -> str:
    """The address-of-record form of a URI: ``sip:user@host`` (no port, params or headers)."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    if isinstance(uri, SipURI):
        scheme = "sip" if uri.scheme in ("sip", "sips") else uri.scheme
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        return f"{scheme}:{uri.user}@{host}" if uri.user else f"{scheme}:{host}"
    return str(uri)


class SipProvider:
    """Handed to SBBs by ``self.context.ra("sip")``."""

    def __init__(self, engine: SipEngine) -> None:
        self._engine = engine

    # -- identity -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._engine.host

    @property
    def port(self) -> int:
        return self._engine.port

    def contact(self, transport: str | None = None, user: str | None = None) -> str:
        """This element's Contact header value, e.g. ``<sip:192.0.2.1:5060;transport=tcp>``."""
        host = f"[{self._engine.host}]" if ":" in self._engine.host else self._engine.host
        userpart = f"{user}@" if user else ""
        tp = f";transport={transport}" if transport and transport != "udp" else ""
        return f"<sip:{userpart}{host}:{self._engine.port}{tp}>"

    def is_local(self, uri: Any) -> bool:
        """True if ``uri`` addresses this element itself (its host and port)."""
        return self._engine.is_local(uri)

    @staticmethod
    def new_tag() -> str:
        return new_tag()

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch; with several workers it names this one, so the responses
        find their way back to the worker holding the client transaction."""
        return self._engine.branch_prefix + random_hex(8)

    def new_call_id(self) -> str:
        return f"{random_hex(10)}@{self._engine.host}"

    aor_of = staticmethod(aor_of)

    # -- responses ------------------------------------------------------------------------
    def create_response(self, request: Request, status: int, reason: str | None = None, *,
                        to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                        body: bytes = b"", content_type: str | None = None) -> Response:
        response = make_response(request, status, reason, to_tag=to_tag)
        h = response.headers
        for name, value in headers:
            h.add(name, value)
        if self._engine.server_header and "server" not in h:
            h.add("Server", self._engine.server_header)
        if body:
            response.body = body
            if content_type:
                h.set("Content-Type", content_type)
        return response

    def _emit_response(self, st: ServerTransactionActivity, response: Response) -> None:
        if response.status >= 200:
            st.answered = True
            st.final_status = response.status
            txn = current_transaction.get()
            if txn is not None:
                def undo() -> None:
                    st.answered = False
                    st.final_status = None

                txn.record_undo(undo)
        engine = self._engine
        _defer(lambda: engine.transmit_response(st, response))

    def forward_response(self, st: ServerTransactionActivity, response: Response) -> None:
        """Relay a response received on a proxied branch upstream (§16.7 step 9)."""
        out = _copy(response)
        rows = out.headers.get_all("Via")
        out.headers.remove("Via")
        for via in rows[1:]:
            out.headers.add("Via", via)
        self._emit_response(st, out)

    # -- dialogs --------------------------------------------------------------------------
    def create_dialog(self, st: ServerTransactionActivity, *, persistent: bool = False) -> Dialog:
        """The UAS dialog created by answering ``st`` with a 2xx (SUBSCRIBE, INVITE)."""
        if st.to_tag is None:
            st.to_tag = new_tag()
        dialog = uas_dialog(self, st.request, st.source, st.to_tag, persistent=persistent)
        st.dialog = dialog
        self._engine.dialog_created(dialog)
        return dialog

    def _build_dialog_request(self, dialog: Dialog, method: str, *, body: bytes, content_type: str | None,
                              headers: Iterable[tuple[str, str]]) -> Request:
        route_set = list(dialog.route_set)
        if route_set and ";lr" not in route_set[0]:  # strict router (§12.2.1.1)
            target = route_set[0].strip("<>")
            route_set = [*route_set[1:], f"<{dialog.remote_target}>"]
        else:
            target = dialog.remote_target
        h = Headers()  # the Via is added when the destination (and so the transport) is known
        h.add("Max-Forwards", "70")
        h.add("To", f"{dialog.remote_uri};tag={dialog.remote_tag}" if dialog.remote_tag else dialog.remote_uri)
        h.add("From", f"{dialog.local_uri};tag={dialog.local_tag}")
        h.add("Call-ID", dialog.call_id)
        h.add("CSeq", f"{dialog.local_seq} {method}")
        for route in route_set:
            h.add("Route", route)
        if method not in ("ACK", "CANCEL", "BYE"):
            h.add("Contact", self.contact(dialog.flow.transport if dialog.flow and dialog.flow.reliable else None))
        for name, value in headers:
            h.add(name, value)
        if self._engine.server_header:
            h.add("User-Agent", self._engine.server_header)
        request = Request(method, target, h, body)
        if body and content_type:
            h.set("Content-Type", content_type)
        return request

    def _send_in_dialog(self, dialog: Dialog, request: Request, context: Any) -> ClientTransactionActivity:
        destination = self._engine.dialog_destination(dialog, request)
        return self._send(request, destination, dialog=dialog, context=context, start_activity=False)

    def _dialog_changed(self, dialog: Dialog) -> None:
        self._engine.dialog_changed(dialog)

    def _terminate_dialog(self, dialog: Dialog) -> None:
        engine = self._engine
        _defer(lambda: engine.dialog_terminated(dialog))

    # -- requests -------------------------------------------------------------------------
    def create_request(self, method: str, request_uri: str, from_: str, to: str, *, call_id: str | None = None,
                       cseq: int = 1, body: bytes = b"", content_type: str | None = None,
                       headers: Iterable[tuple[str, str]] = (), contact: bool = True) -> Request:
        """An out-of-dialog request from this element (``from_`` gets a fresh tag)."""
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("To", to)
        h.add("From", f"{from_};tag={new_tag()}")
        h.add("Call-ID", call_id or self.new_call_id())
        h.add("CSeq", f"{cseq} {method}")
        if contact and method not in ("ACK", "CANCEL"):
            h.add("Contact", self.contact())
        for name, value in headers:
            h.add(name, value)
        request = Request(method, request_uri, h, body)
        if body and content_type:
            h.set("Content-Type", content_type)
        return request

    def send_request(self, request: Request, destination: Peer | None = None, *,
                     context: Any = None) -> ClientTransactionActivity:
        """Send an out-of-dialog request in a new client transaction (an activity: attach to it
        to receive the response events)."""
        if destination is None:
            destination = request_destination(request)
        return self._send(request, destination, dialog=None, context=context, start_activity=True)

    def _send(self, request: Request, destination: Peer, *, dialog: Dialog | None, context: Any,
              start_activity: bool) -> ClientTransactionActivity:
        destination = self._choose_transport(request, destination)
        self._set_via(request, destination)
        ct = ClientTransactionActivity(self, request, destination, dialog, context)
        engine = self._engine
        if start_activity:
            engine.start_client_activity(ct)
            txn = current_transaction.get()
            if txn is not None:
                txn.record_undo(lambda: engine.abandon_client_activity(ct))
        _defer(lambda: engine.transmit_request(ct))
        return ct

    def _choose_transport(self, request: Request, destination: Peer) -> Peer:
        if (destination.transport == "udp" and "tcp" in self._engine.transports
                and len(request.body) + 600 > UDP_MTU_LIMIT and len(request.to_bytes()) > UDP_MTU_LIMIT):
            return Peer("tcp", destination.host, destination.port)
        return destination

    def _set_via(self, request: Request, destination: Peer) -> None:
        host = f"[{self._engine.host}]" if ":" in self._engine.host else self._engine.host
        via = f"SIP/2.0/{destination.transport.upper()} {host}:{self._engine.port};branch={self.new_branch()};rport"
        request.headers.prepend("Via", via)

    def send_stateless(self, message: Request | Response, destination: Peer | None = None) -> None:
        """Send without a transaction (ACK for a 2xx, a stateless proxy)."""
        if destination is None:
            destination = request_destination(message) if isinstance(message, Request) else None
        engine = self._engine
        _defer(lambda: engine.transmit_stateless(message, destination))

    # -- proxying (RFC 3261 §16) ----------------------------------------------------------
    def forward_request(self, st: ServerTransactionActivity | Request, target: str | SipURI | None = None, *,
                        record_route: bool = False, destination: Peer | None = None,
                        context: Any = None) -> ClientTransactionActivity:
        """Proxy a request to ``target`` (a new Request-URI) in a new client transaction.

        Per §16.6: copy, set the Request-URI, decrement Max-Forwards, optionally Record-Route
        ourselves, pop a Route that names us, push our Via. Responses arrive as events on the
        returned client transaction activity.
        """
        original = st.request if isinstance(st, ServerTransactionActivity) else st
        out = _copy(original)
        if target is not None:
            out.uri = str(target)
        mf = original.max_forwards
        out.headers.set("Max-Forwards", str((mf if mf is not None else 70) - 1))
        routes = out.headers.get_all("Route")
        if routes:
            try:
                first = out.routes[0]
                if self.is_local(first.uri):
                    out.headers.remove("Route")
                    for r in routes[1:]:
                        out.headers.add("Route", r)
            except Exception:
                pass
        if record_route and original.method in ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"):
            out.headers.prepend("Record-Route", self._record_route(destination))
        if destination is None:
            destination = request_destination(out)
        return self._send(out, destination, dialog=None, context=context, start_activity=True)

    def _record_route(self, destination: Peer | None) -> str:
        host = f"[{self._engine.host}]" if ":" in self._engine.host else self._engine.host
        tp = f";transport={destination.transport}" if destination and destination.transport != "udp" else ""
        return f"<sip:{host}:{self._engine.port}{tp};lr>"

    def cancel(self, ct: ClientTransactionActivity) -> ClientTransactionActivity:
        """CANCEL a pending INVITE branch (§9.1): same Request-URI, Call-ID, From, To, top Via."""
        req = ct.request
        h = Headers()
        h.add("Via", req.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("To", req.headers.get("To") or "")
        h.add("From", req.headers.get("From") or "")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", f"{req.cseq.seq} CANCEL")
        for route in req.headers.get_all("Route"):
            h.add("Route", route)
        cancel = Request("CANCEL", req.raw_uri, h)
        out = ClientTransactionActivity(self, cancel, ct.destination, None, ct.context)
        engine = self._engine
        engine.start_client_activity(out)
        _defer(lambda: engine.transmit_request(out))
        return out


def _copy(message: Request | Response) -> Any:
    from slee.sip import parse_message

    return parse_message(message.to_bytes())

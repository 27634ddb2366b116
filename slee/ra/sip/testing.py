"""Fakes for unit-testing SIP SBBs with ``slee.testing.SbbHarness`` (no sockets).

``FakeSipNetwork`` stands where the SIP RA stands: hand ``network.provider`` to the harness
as the ``sip`` link, build incoming requests with ``network.request_event(...)``, fire them,
and assert on ``network.responses`` / ``network.requests`` — what the SBB sent, after its
transaction committed::

    net = FakeSipNetwork()
    h = SbbHarness(RegistrarSbb, providers={"sip": net.provider})
    st, event = net.request_event(REGISTER_BYTES)
    h.fire(REQUEST["REGISTER"], event, st, address=...)
    assert net.responses[-1].status == 200
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slee.events import Address
from slee.ra.sip.activities import ClientTransactionActivity, Dialog, ServerTransactionActivity
from slee.ra.sip.events import RequestEvent, ResponseEvent
from slee.ra.sip.provider import SipProvider, aor_of
from slee.sip import Request, Response, SipURI, parse_message, parse_uri
from slee.sip._addressing import Peer, apply_received

__all__ = ["FakeSipNetwork", "SentRequest"]


@dataclass(slots=True)
class SentRequest:
    request: Request
    destination: Peer
    transaction: ClientTransactionActivity | None
    dialog: Dialog | None


@dataclass
class FakeSipNetwork:
    """A recording SIP engine: what would have gone on the wire lands in lists."""

    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    server_header: str | None = "slee-test"
    branch_prefix: str = "z9hG4bK"
    responses: list[Response] = field(default_factory=list)
    requests: list[SentRequest] = field(default_factory=list)
    stateless: list[tuple[Request | Response, Peer | None]] = field(default_factory=list)
    dialogs: dict[tuple[str, str, str], Dialog] = field(default_factory=dict)
    client_activities: list[ClientTransactionActivity] = field(default_factory=list)
    ended_dialogs: list[Dialog] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.provider = SipProvider(self)
        self.harness: Any = None  # set by attach(); needed to start dialog activities

    def attach(self, harness: Any) -> FakeSipNetwork:
        """Bind to a harness so dialogs and client transactions become real activities."""
        self.harness = harness
        return self

    # -- building inputs ----------------------------------------------------------------
    def request_event(self, raw: bytes | str | Request, source: Peer | None = None) -> tuple[ServerTransactionActivity, RequestEvent]:
        """An incoming request as the RA would deliver it (out of dialog, or in a known dialog)."""
        if isinstance(raw, str):
            raw = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        request = raw if isinstance(raw, Request) else parse_message(raw)
        source = source or Peer("udp", "127.0.0.1", 5070)
        apply_received(request, source)
        dialog = None
        if request.to_tag:
            dialog = self.dialogs.get((request.call_id, request.to_tag, request.from_tag or ""))
        st = ServerTransactionActivity(self.provider, object(), request, source, dialog)
        if dialog is not None:
            dialog.remote_seq = request.cseq.seq
        return st, RequestEvent(request, st, dialog, source)

    def fire_request(self, event_type: Any, raw: bytes | str | Request, source: Peer | None = None) -> tuple[ServerTransactionActivity, Any]:
        """Fire a request into the bound harness like the RA does; returns (st, outcome)."""
        st, event = self.request_event(raw, source)
        h = self.harness
        address = Address("sip", aor_of(event.request.to.uri))
        if event.dialog is not None:
            outcome = h.fire(event_type, event, event.dialog, address=address)
        else:
            outcome = h.fire(event_type, event, h.activity_for(st), address=address)
        return st, outcome

    def respond_to(self, sent: SentRequest, status: int, reason: str | None = None, *,
                   headers: list[tuple[str, str]] | None = None) -> ResponseEvent:
        """A response to a request the SBB sent (fire it on the dialog or client txn)."""
        from slee.sip import make_response

        response = make_response(sent.request, status, reason, to_tag="remote-tag" if status > 100 else None)
        for name, value in headers or ():
            response.headers.add(name, value)
        ct = sent.transaction
        assert ct is not None
        if status >= 200:
            ct.final_status = status
        return ResponseEvent(response, ct, sent.dialog)

    # -- the engine interface -----------------------------------------------------------
    def transmit_response(self, st: ServerTransactionActivity, response: Response) -> None:
        self.responses.append(response)

    def transmit_request(self, ct: ClientTransactionActivity) -> None:
        self.requests.append(SentRequest(ct.request, ct.destination, ct, ct.dialog))

    def transmit_stateless(self, message: Request | Response, destination: Peer | None) -> None:
        self.stateless.append((message, destination))

    def start_client_activity(self, ct: ClientTransactionActivity) -> None:
        self.client_activities.append(ct)
        if self.harness is not None:
            self.harness.container.start_activity("harness", ct, ct)

    def abandon_client_activity(self, ct: ClientTransactionActivity) -> None:
        if ct in self.client_activities:
            self.client_activities.remove(ct)

    def dialog_created(self, dialog: Dialog) -> None:
        self.dialogs[dialog.key] = dialog
        if self.harness is not None:
            self.harness.container.start_activity("harness", dialog, dialog, persistent=dialog.persistent)

    def dialog_changed(self, dialog: Dialog) -> None:
        pass

    def dialog_terminated(self, dialog: Dialog) -> None:
        self.dialogs.pop(dialog.key, None)
        self.ended_dialogs.append(dialog)
        if self.harness is not None and ("harness", dialog) in self.harness.container.activity_contexts:
            self.harness.container.end_activity(("harness", dialog))

    def end_transactions(self) -> int:
        """End every server and client transaction activity, as the RA does when the
        transactions terminate (Timer J/K on UDP, at once on TCP); returns how many."""
        h = self.harness
        ended = [act for owner, act in list(h.container.activity_contexts)
                 if owner == "harness" and isinstance(act, ServerTransactionActivity | ClientTransactionActivity)]
        for act in ended:
            h.end(act)
        return len(ended)

    def dialog_destination(self, dialog: Dialog, request: Request) -> Peer:
        from slee.sip._addressing import request_destination

        return request_destination(request)

    def is_local(self, uri: Any) -> bool:
        if isinstance(uri, str):
            uri = parse_uri(uri)
        return isinstance(uri, SipURI) and uri.host == self.host and (uri.port or 5060) == self.port

    # -- assertions helpers ---------------------------------------------------------------
    def last_response(self) -> Response:
        assert self.responses, "the SBB sent no response"
        return self.responses[-1]

    def sent(self, method: str) -> list[SentRequest]:
        return [r for r in self.requests if r.request.method == method]

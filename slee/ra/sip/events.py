"""SIP event types and event objects fired by the SIP RA.

Names follow the JAIN SIP RA type that Rhino and RestComm users know: out-of-dialog requests
are ``javax.sip.message.Request.<METHOD>`` fired on the server transaction activity;
requests inside a dialog the RA knows are ``javax.sip.Dialog.<METHOD>`` fired on the dialog
activity; responses are classed by status (``javax.sip.message.Response.SUCCESS``...) and
fired on the client transaction activity, or on the dialog activity for requests sent in a
dialog; a client transaction that gets no final response fires ``javax.sip.timeout.TRANSACTION``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slee._ids import EventTypeId

if TYPE_CHECKING:
    from slee.ra.sip.activities import ClientTransactionActivity, Dialog, ServerTransactionActivity
    from slee.sip import Request, Response
    from slee.sip._addressing import Peer

VENDOR = "net.java"
VERSION = "1.2"

KNOWN_METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
)


def _eid(name: str) -> EventTypeId:
    return EventTypeId(name, VENDOR, VERSION)


REQUEST: dict[str, EventTypeId] = {m: _eid(f"javax.sip.message.Request.{m}") for m in KNOWN_METHODS}
REQUEST_EXTENSION = _eid("javax.sip.message.Request.EXTENSION")  # methods not listed above
DIALOG_REQUEST: dict[str, EventTypeId] = {m: _eid(f"javax.sip.Dialog.{m}") for m in KNOWN_METHODS}
DIALOG_REQUEST_EXTENSION = _eid("javax.sip.Dialog.EXTENSION")

RESPONSE_PROVISIONAL = _eid("javax.sip.message.Response.PROVISIONAL")
RESPONSE_SUCCESS = _eid("javax.sip.message.Response.SUCCESS")
RESPONSE_REDIRECT = _eid("javax.sip.message.Response.REDIRECT")
RESPONSE_CLIENT_ERROR = _eid("javax.sip.message.Response.CLIENT_ERROR")
RESPONSE_SERVER_ERROR = _eid("javax.sip.message.Response.SERVER_ERROR")
RESPONSE_GLOBAL_FAILURE = _eid("javax.sip.message.Response.GLOBAL_FAILURE")
TRANSACTION_TIMEOUT = _eid("javax.sip.timeout.TRANSACTION")

RESPONSES = (RESPONSE_PROVISIONAL, RESPONSE_SUCCESS, RESPONSE_REDIRECT, RESPONSE_CLIENT_ERROR,
             RESPONSE_SERVER_ERROR, RESPONSE_GLOBAL_FAILURE)


def request_event_type(method: str, *, in_dialog: bool = False) -> EventTypeId:
    table = DIALOG_REQUEST if in_dialog else REQUEST
    found = table.get(method)
    if found is not None:
        return found
    return DIALOG_REQUEST_EXTENSION if in_dialog else REQUEST_EXTENSION


def response_event_type(status: int) -> EventTypeId:
    return RESPONSES[min(status // 100, 6) - 1]


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """A request: answer it through ``server_transaction`` (``respond(...)``)."""

    request: Request
    server_transaction: ServerTransactionActivity
    dialog: Dialog | None
    source: Peer

    @property
    def method(self) -> str:
        return self.request.method


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """A response to a request we sent (``client_transaction.request``)."""

    response: Response
    client_transaction: ClientTransactionActivity
    dialog: Dialog | None

    @property
    def status(self) -> int:
        return self.response.status


@dataclass(frozen=True, slots=True)
class TimeoutEvent:
    """No final response came (Timer B/F), or the transport could not deliver the request."""

    client_transaction: ClientTransactionActivity
    dialog: Dialog | None
    transport_error: bool = False
    detail: Any = None


def all_event_types() -> dict[EventTypeId, type]:
    out: dict[EventTypeId, type] = {}
    for eid in (*REQUEST.values(), REQUEST_EXTENSION, *DIALOG_REQUEST.values(), DIALOG_REQUEST_EXTENSION):
        out[eid] = RequestEvent
    for eid in RESPONSES:
        out[eid] = ResponseEvent
    out[TRANSACTION_TIMEOUT] = TimeoutEvent
    return out

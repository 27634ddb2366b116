"""The SIP resource adaptor: SIP over UDP and TCP as SLEE activities and events.

SBBs reach it with ``self.context.ra("sip")`` (a ``SipProvider``) and receive
``RequestEvent`` / ``ResponseEvent`` / ``TimeoutEvent`` objects; event type ids are in
``slee.ra.sip.events``.
"""

from slee.ra.sip.activities import ClientTransactionActivity, Dialog, ServerTransactionActivity
from slee.ra.sip.events import (
    DIALOG_REQUEST,
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
)
from slee.ra.sip.provider import SipProvider, aor_of
from slee.ra.sip.ra import SIP_RA_TYPE, SipResourceAdaptor

__all__ = [
    "DIALOG_REQUEST",
    "REQUEST",
    "RESPONSE_CLIENT_ERROR",
    "RESPONSE_GLOBAL_FAILURE",
    "RESPONSE_PROVISIONAL",
    "RESPONSE_REDIRECT",
    "RESPONSE_SERVER_ERROR",
    "RESPONSE_SUCCESS",
    "SIP_RA_TYPE",
    "TRANSACTION_TIMEOUT",
    "ClientTransactionActivity",
    "Dialog",
    "RequestEvent",
    "ResponseEvent",
    "ServerTransactionActivity",
    "SipProvider",
    "SipResourceAdaptor",
    "TimeoutEvent",
    "aor_of",
]

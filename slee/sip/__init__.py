"""The sans-IO SIP core: message model, URIs, parser, serialiser, stream framing and
request validation (RFC 3261 §7, §8.2, §18, §19, §20, §25; RFC 4475; RFC 5118).

No sockets, no event loop, no clock: bytes go in (``parse_message``,
``StreamFramer.feed``), typed objects come out, and ``to_bytes()`` goes back to the wire.
"""

from slee.sip._errors import SipParseError
from slee.sip._framing import (
    FramerEvent,
    FramingFailed,
    KeepAliveReceived,
    MessageFramed,
    StreamFramer,
)
from slee.sip._headers import (
    Challenge,
    Contact,
    Credentials,
    CSeq,
    Event,
    Headers,
    NameAddr,
    SubscriptionState,
    Via,
    canonical_name,
    quote_string,
    split_commas,
    unquote_string,
)
from slee.sip._message import REASON_PHRASES, Request, Response, SipMessage, make_response
from slee.sip._parser import parse_message
from slee.sip._uri import AbsoluteURI, SipURI, TelURI, parse_uri
from slee.sip._validate import DEFAULT_URI_SCHEMES, error_response, validate_request

__all__ = [
    "DEFAULT_URI_SCHEMES",
    "REASON_PHRASES",
    "AbsoluteURI",
    "CSeq",
    "Challenge",
    "Contact",
    "Credentials",
    "Event",
    "FramerEvent",
    "FramingFailed",
    "Headers",
    "KeepAliveReceived",
    "MessageFramed",
    "NameAddr",
    "Request",
    "Response",
    "SipMessage",
    "SipParseError",
    "SipURI",
    "StreamFramer",
    "SubscriptionState",
    "TelURI",
    "Via",
    "canonical_name",
    "error_response",
    "make_response",
    "parse_message",
    "parse_uri",
    "quote_string",
    "split_commas",
    "unquote_string",
    "validate_request",
]

from slee.sip._addressing import Peer, apply_received, request_destination, response_destination
from slee.sip._digest import (
    AuthResult,
    DigestChallenge,
    NonceManager,
    NonceStatus,
    build_credentials,
    compute_ha1,
    compute_response,
    verify,
)
from slee.sip._transaction import (
    AckReceived,
    ClientTransaction,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponseReceived,
    TimerConfig,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
)

__all__ += [
    "AckReceived",
    "AuthResult",
    "ClientTransaction",
    "DigestChallenge",
    "NonceManager",
    "NonceStatus",
    "Outgoing",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponseReceived",
    "TimerConfig",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportErrorOccurred",
    "apply_received",
    "build_credentials",
    "compute_ha1",
    "compute_response",
    "request_destination",
    "response_destination",
    "verify",
]

"""SIP requests and responses: raw rows plus typed header values parsed on first use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from slee.sip import _abnf
from slee.sip._errors import SipParseError
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
    parse_auth,
    parse_contact,
    parse_cseq,
    parse_event,
    parse_name_addr,
    parse_subscription_state,
    parse_via,
    split_commas,
)
from slee.sip._uri import AbsoluteURI, SipURI, TelURI, parse_uri

__all__ = ["REASON_PHRASES", "Request", "Response", "SipMessage", "make_response"]

T = TypeVar("T")
_MISSING = object()

# RFC 3261 §21 plus the codes of later RFCs this stack uses.
REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


_UNUSUAL = ('"', "\\", " ", "\t", ",")  # in header parameters: leave them to the full parser


class SipMessage:
    """What requests and responses share: header rows, body bytes, typed accessors.

    Typed values are parsed on first access and cached until the headers change; a
    malformed value raises :class:`SipParseError` (status 0 and ``is_response`` set when
    the message is a response, which is never answered).
    """

    __slots__ = ("body", "headers", "version")

    def __init__(self, headers: Headers | None = None, body: bytes = b"",
                 version: str = "SIP/2.0") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = version

    # -- typed-value cache ------------------------------------------------------------

    def _typed(self, key: str, compute: Callable[[], T]) -> T:
        cache = self.headers._typed
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            try:
                value = compute()
            except SipParseError as exc:
                if isinstance(self, Response):
                    raise exc.as_response_error() from None
                raise
            cache[key] = value
        return value  # type: ignore[return-value]

    def _required(self, name: str) -> str:
        """The first value of a header that must be there; ``name`` is its spelling in the
        error, its lowercase form the lookup key (no compact-form mapping needed)."""
        headers = self.headers
        first = headers._first
        if first is None:
            first = headers._index()
        value = first.get(name.lower())
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    # -- hot path: no closures, cache checked inline ------------------------------------

    @property
    def vias(self) -> list[Via]:
        vias = self.headers._typed.get("vias")
        if vias is None:
            vias = self._typed("vias", lambda: [parse_via(v) for v in self.headers.get_all("Via")])
            if vias:  # the top one is the first: not parsed a second time for top_via
                self.headers._typed.setdefault("top_via", vias[0])
        return vias  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        value = self.headers._typed.get("top_via")
        if value is None:
            value = self._typed("top_via", self._compute_top_via)
        return value  # type: ignore[return-value]

    def _compute_top_via(self) -> Via:
        row = self._required("Via")
        if "," in row:
            items = split_commas(row)
            if not items:
                raise SipParseError("malformed Via")
            row = items[0]
        return parse_via(row)

    @property
    def from_(self) -> NameAddr:
        value = self.headers._typed.get("from")
        if value is None:
            value = self._typed("from", self._compute_from)
        return value  # type: ignore[return-value]

    def _compute_from(self) -> NameAddr:
        return parse_name_addr(self._required("From"), "From")

    @property
    def to(self) -> NameAddr:
        value = self.headers._typed.get("to")
        if value is None:
            value = self._typed("to", self._compute_to)
        return value  # type: ignore[return-value]

    def _compute_to(self) -> NameAddr:
        return parse_name_addr(self._required("To"), "To")

    @property
    def from_tag(self) -> str | None:
        return self._tag("from", "From")

    @property
    def to_tag(self) -> str | None:
        return self._tag("to", "To")

    def _tag(self, key: str, name: str) -> str | None:
        """The tag parameter, read without parsing the whole name-addr when it is plain.

        Header parameters follow the closing ``>`` of a name-addr, or the URI of an
        addr-spec (where every ``;param`` belongs to the header, RFC 3261 §20.10). Anything
        unusual — quotes, escapes, whitespace, commas, another spelling or a second ``tag`` —
        takes the full parser, which also reports malformed values.
        """
        parsed = self.headers._typed.get(key)
        if parsed is None:
            value = self._required(name)
            params = value[value.rfind(">") + 1:]
            if not any(c in params for c in _UNUSUAL) and params.lower().count("tag") == params.count(";tag="):
                at = params.find(";tag=")
                if at < 0:
                    return None
                tag = params[at + 5:].partition(";")[0]
                if tag:
                    return tag
            parsed = self.from_ if key == "from" else self.to
        return parsed.params.get("tag")  # type: ignore[attr-defined]

    @property
    def call_id(self) -> str:
        value = self.headers._typed.get("call_id")
        if value is None:
            value = self._typed("call_id", self._compute_call_id)
        return value  # type: ignore[return-value]

    def _compute_call_id(self) -> str:
        value = self._required("Call-ID")
        # callid = word [ "@" word ]: not empty, no whitespace
        if len(value.split()) != 1:
            raise SipParseError("malformed Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        value = self.headers._typed.get("cseq")
        if value is None:
            value = self._typed("cseq", self._compute_cseq)
        return value  # type: ignore[return-value]

    def _compute_cseq(self) -> CSeq:
        return parse_cseq(self._required("CSeq"))

    @property
    def expires(self) -> int | None:
        """Expires (§20.19); values beyond 2**32-1 are capped (RFC 4475 §3.1.2.4)."""
        cache = self.headers._typed
        if "expires" in cache:
            return cache["expires"]  # type: ignore[return-value]
        return self._typed("expires", self._compute_expires)

    def _compute_expires(self) -> int | None:
        return _delta_seconds(self.headers.get("Expires"), "Expires")

    @property
    def event(self) -> Event | None:
        cache = self.headers._typed
        if "event" in cache:
            return cache["event"]  # type: ignore[return-value]
        return self._typed("event", self._compute_event)

    def _compute_event(self) -> Event | None:
        value = self.headers.get("Event")
        return None if value is None else parse_event(value)

    # -- everything else, lazily ----------------------------------------------------

    @property
    def max_forwards(self) -> int | None:
        def compute() -> int | None:
            value = self.headers.get("Max-Forwards")
            if value is None:
                return None
            value = value.strip()
            if not _abnf.DIGITS_RE.match(value):
                raise SipParseError("malformed Max-Forwards")
            number = int(value)
            # Out of range (0-255): treated as absent (RFC 4475 §3.1.2.4).
            return number if number <= 255 else None

        return self._typed("max_forwards", compute)

    @property
    def contacts(self) -> list[Contact]:
        return self._typed("contacts", lambda: [
            parse_contact(v) for v in self.headers.get_all("Contact")])

    @property
    def content_type(self) -> str | None:
        """Lowercased ``type/subtype`` without parameters."""
        def compute() -> str | None:
            value = self.headers.get("Content-Type")
            if value is None:
                return None
            media = value.split(";", 1)[0].strip().lower()
            kind, slash, sub = media.partition("/")
            if not slash or not _abnf.TOKEN_FULL_RE.match(kind.strip()) or \
                    not _abnf.TOKEN_FULL_RE.match(sub.strip()):
                raise SipParseError("malformed Content-Type")
            return f"{kind.strip()}/{sub.strip()}"

        return self._typed("content_type", compute)

    @property
    def content_length(self) -> int | None:
        def compute() -> int | None:
            value = self.headers.get("Content-Length")
            if value is None:
                return None
            value = value.strip()
            if not _abnf.DIGITS_RE.match(value):
                raise SipParseError("malformed Content-Length")
            return int(value)

        return self._typed("content_length", compute)

    @property
    def subscription_state(self) -> SubscriptionState | None:
        def compute() -> SubscriptionState | None:
            value = self.headers.get("Subscription-State")
            return None if value is None else parse_subscription_state(value)

        return self._typed("subscription_state", compute)

    @property
    def sip_etag(self) -> str | None:
        """SIP-ETag (RFC 3903 §11.3.1): an entity-tag token."""
        return _token_header(self, "SIP-ETag")

    @property
    def sip_if_match(self) -> str | None:
        """SIP-If-Match (RFC 3903 §11.3.2)."""
        return _token_header(self, "SIP-If-Match")

    @property
    def allow_events(self) -> list[str]:
        return _token_list(self, "Allow-Events")

    @property
    def allow(self) -> list[str]:
        return _token_list(self, "Allow")

    @property
    def supported(self) -> list[str]:
        return _token_list(self, "Supported")

    @property
    def require(self) -> list[str]:
        return _token_list(self, "Require")

    @property
    def proxy_require(self) -> list[str]:
        return _token_list(self, "Proxy-Require")

    @property
    def unsupported(self) -> list[str]:
        return _token_list(self, "Unsupported")

    @property
    def accept(self) -> list[str]:
        """Accept media ranges, lowercased, parameters dropped."""
        return self._typed("accept", lambda: [
            v.split(";", 1)[0].strip().lower() for v in self.headers.get_all("Accept")])

    @property
    def routes(self) -> list[NameAddr]:
        return _name_addr_list(self, "Route")

    @property
    def record_routes(self) -> list[NameAddr]:
        return _name_addr_list(self, "Record-Route")

    @property
    def path(self) -> list[NameAddr]:
        return _name_addr_list(self, "Path")

    @property
    def service_routes(self) -> list[NameAddr]:
        return _name_addr_list(self, "Service-Route")

    @property
    def min_expires(self) -> int | None:
        return self._typed("min_expires", lambda: _delta_seconds(
            self.headers.get("Min-Expires"), "Min-Expires"))

    @property
    def www_authenticate(self) -> list[Challenge]:
        return _auth_list(self, "WWW-Authenticate", Challenge)

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        return _auth_list(self, "Proxy-Authenticate", Challenge)

    @property
    def authorization(self) -> list[Credentials]:
        return _auth_list(self, "Authorization", Credentials)  # type: ignore[return-value]

    @property
    def proxy_authorization(self) -> list[Credentials]:
        return _auth_list(self, "Proxy-Authorization", Credentials)  # type: ignore[return-value]

    # -- modification helpers ---------------------------------------------------------

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the topmost Via value (e.g. adding received/rport, RFC 3581 §4), leaving
        the other values of a combined row untouched."""
        rows = self.headers._rows
        for i, (key, name, value) in enumerate(rows):
            if key == "via":
                items = split_commas(value)
                items[0] = str(via)
                rows[i] = (key, name, ", ".join(items))
                headers = self.headers
                headers._changed("via")
                headers._typed["top_via"] = via  # what the row now says: no need to parse it again
                return
        raise SipParseError("missing Via")

    # -- serialisation ----------------------------------------------------------------

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form; rows as received unless modified, Content-Length from the body."""
        lines = [self._start_line()]
        length = str(len(self.body))
        seen_length = False
        for key, name, value in self.headers._rows:
            if key == "content-length":
                if seen_length:
                    continue
                seen_length = True
                value = length
            lines.append(f"{name}: {value}")
        if not seen_length:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes


def _delta_seconds(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not _abnf.DIGITS_RE.match(value):
        raise SipParseError(f"malformed {what}")
    return min(int(value), 2**32 - 1)


def _token_header(msg: SipMessage, name: str) -> str | None:
    def compute() -> str | None:
        value = msg.headers.get(name)
        if value is None:
            return None
        value = value.strip()
        if not _abnf.TOKEN_FULL_RE.match(value):
            raise SipParseError(f"malformed {name}")
        return value

    return msg._typed(name.lower(), compute)


def _token_list(msg: SipMessage, name: str) -> list[str]:
    def compute() -> list[str]:
        values = msg.headers.get_all(name)
        for value in values:
            if not _abnf.TOKEN_FULL_RE.match(value):
                raise SipParseError(f"malformed {name}")
        return values

    return msg._typed(name.lower(), compute)


def _name_addr_list(msg: SipMessage, name: str) -> list[NameAddr]:
    return msg._typed(name.lower(), lambda: [
        parse_name_addr(v, name) for v in msg.headers.get_all(name)])


def _auth_list(msg: SipMessage, name: str, cls: type[Challenge]) -> list[Challenge]:
    return msg._typed(name.lower(), lambda: [
        parse_auth(v, cls) for v in msg.headers.get_rows(name)])


class Request(SipMessage):
    """A SIP request; the Request-URI is kept raw and parsed on first use of ``uri``."""

    __slots__ = ("_uri", "method", "raw_uri")

    def __init__(
        self,
        method: str,
        uri: SipURI | TelURI | AbsoluteURI | str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.method = method
        if isinstance(uri, str):
            self.raw_uri = uri
            self._uri: SipURI | TelURI | AbsoluteURI | None = None
        else:
            self.raw_uri = str(uri)
            self._uri = uri

    @classmethod
    def _parsed(cls, method: str, raw_uri: str, headers: Headers, body: bytes,
                version: str) -> Request:
        """Constructor for the parser: skips ``__init__``'s argument handling."""
        self = cls.__new__(cls)
        self.method, self.raw_uri, self._uri = method, raw_uri, None
        self.headers, self.body, self.version = headers, body, version
        return self

    @property
    def uri(self) -> SipURI | TelURI | AbsoluteURI:
        if self._uri is None:
            self._uri = parse_uri(self.raw_uri)
        return self._uri

    @uri.setter
    def uri(self, value: SipURI | TelURI | AbsoluteURI | str) -> None:
        if isinstance(value, str):
            self.raw_uri, self._uri = value, None
        else:
            self.raw_uri, self._uri = str(value), value

    def _start_line(self) -> str:
        uri = self.raw_uri if self._uri is None else str(self._uri)
        return f"{self.method} {uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_uri}>"


class Response(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# RFC 3261 §12.1.1 / RFC 6665 §4.1.3: dialog-creating responses copy Record-Route.
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via row (same order), From, To (adding ``to_tag`` when To has none,
    §8.2.6.2), Call-ID and CSeq; Timestamp for a 100 (§8.2.6.1); Record-Route for a
    101-299 answer to a dialog-creating request (§12.1.1, RFC 6665 §4.1.3). The body is
    empty (Content-Length 0 on the wire).
    """
    copy_rr = 100 < status < 300 and request.method in _DIALOG_METHODS
    wanted = ["via", "from", "to", "call-id", "cseq"]
    if copy_rr:
        wanted.append("record-route")
    if status == 100:
        wanted.append("timestamp")
    by_key: dict[str, list[tuple[str, str, str]]] = {key: [] for key in wanted}
    for row in request.headers._rows:
        if row[0] in by_key:
            by_key[row[0]].append(row)
    if to_tag is not None and by_key["to"]:
        key, name, value = by_key["to"][0]
        if request.to.tag is None:  # the request's To, parsed once and cached
            by_key["to"][0] = (key, name, value.rstrip() + f";tag={to_tag}")
    rows = [row for key in wanted for row in by_key[key]]
    headers = Headers._from_parsed(rows)
    # The same rows mean the same values: what the request already parsed is not parsed
    # again (a copy of the Via, whose parameters are a dict; CSeq and Call-ID are immutable).
    parsed = request.headers._typed
    typed = headers._typed
    for name in ("cseq", "call_id"):
        if name in parsed:
            typed[name] = parsed[name]
    via = parsed.get("top_via")
    if via is not None:
        typed["top_via"] = dataclasses.replace(via, params=dict(via.params))  # type: ignore[type-var]
    return Response(status, reason, headers, b"", "SIP/2.0")

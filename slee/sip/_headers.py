"""Header rows (an ordered, case-insensitive multimap) and typed header values.

Rows keep the name and value exactly as received (folding undone) so that a parsed message
serialises as it arrived; typed values are parsed on first use by :mod:`slee.sip._message`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from slee.sip import _abnf
from slee.sip._errors import SipParseError
from slee.sip._uri import AbsoluteURI, SipURI, TelURI, parse_uri

__all__ = [
    "CSeq",
    "Challenge",
    "Contact",
    "Credentials",
    "Event",
    "Headers",
    "NameAddr",
    "SubscriptionState",
    "Via",
    "canonical_name",
    "quote_string",
    "split_commas",
    "unquote_string",
]

# RFC 3261 §7.3.3 compact forms, plus those registered later (IANA "Header Fields"):
# o Event / u Allow-Events (RFC 6665), r Refer-To / b Referred-By (RFC 3515/3892),
# x Session-Expires (RFC 4028), y Identity (RFC 8224), a/j/d caller prefs (RFC 3841).
COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "c": "content-type", "o": "event", "u": "allow-events", "r": "refer-to",
    "b": "referred-by", "x": "session-expires", "y": "identity", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition", "n": "identity-info",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
        "Event", "Expires", "From", "History-Info", "Identity", "Identity-Info",
        "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
        "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
        "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
        "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
        "Security-Client", "Security-Server", "Security-Verify", "Server",
        "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
        "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1: only these may be
# combined into one row or split across several).  Auth headers are NOT lists in SIP:
# their commas separate auth-params.
LIST_HEADERS = frozenset({
    "accept", "accept-contact", "accept-encoding", "accept-language", "alert-info",
    "allow", "allow-events", "call-info", "contact", "content-encoding",
    "content-language", "error-info", "history-info", "in-reply-to", "p-asserted-identity",
    "p-preferred-identity", "path", "privacy", "proxy-require", "reason", "record-route",
    "reject-contact", "request-disposition", "require", "route", "security-client",
    "security-server", "security-verify", "service-route", "supported", "unsupported",
    "via", "warning",
})

_KEY_CACHE: dict[str, str] = {}


# The typed values SipMessage caches from each header (the cache key is the header key
# unless listed): a change of that header's rows drops exactly these.
_TYPED_FROM: dict[str, tuple[str, ...]] = {
    "via": ("vias", "top_via"),
    "call-id": ("call_id",),
    "max-forwards": ("max_forwards",),
    "contact": ("contacts",),
    "content-type": ("content_type",),
    "content-length": ("content_length",),
    "subscription-state": ("subscription_state",),
    "min-expires": ("min_expires",),
}


def header_key(name: str) -> str:
    """The lookup key of a header name: lowercased long form."""
    key = _KEY_CACHE.get(name)
    if key is None:
        low = name.strip().lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_KEY_CACHE) < 4096:  # names come from the wire: bound the cache
            _KEY_CACHE[name] = key
    return key


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name (``call-id`` -> ``Call-ID``)."""
    key = header_key(name)
    return _CANONICAL.get(key) or name.strip()


def split_commas(value: str) -> list[str]:
    """Split a list header on commas outside quoted strings and <URIs> (§7.3.1)."""
    if "," not in value:  # the common case: one value per row
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:
        return [item for item in (part.strip() for part in value.split(",")) if item]
    items: list[str] = []
    start = 0
    in_quote = in_angle = False
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == ",":
            item = value[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        items.append(item)
    return items


def unquote_string(text: str) -> str:
    """The content of a quoted-string, quoted-pairs resolved; other text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _abnf.QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


def quote_string(text: str) -> str:
    """A quoted-string for ``text`` (RFC 3261 §25.1 quoted-pair for ``"`` and ``\\``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TOKEN_ALPHABET = _abnf.ALPHANUM + "-.!%*_+`'~"


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """``*( SEMI generic-param )``; names lowercased, values kept as written (quotes too)."""
    params: dict[str, str | None] = {}
    if not text or text.isspace():
        return params
    if text[0] == ";" and not (
        '"' in text or " " in text or "," in text or "\t" in text
    ):
        # common case: no LWS, no quoted strings -- plain splits; str.strip() with the
        # token alphabet checks a name in C (empty result = all token characters)
        for item in text[1:].split(";"):
            name, eq, value = item.partition("=")
            if not name or name.strip(_TOKEN_ALPHABET) or (eq and not value):
                raise SipParseError(f"malformed {what} parameters")
            name = name.lower()
            if name not in params:
                params[name] = value if eq else None
        return params
    pos, n = 0, len(text)
    match = _abnf.PARAM_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            if text[pos:].isspace():
                break
            raise SipParseError(f"malformed {what} parameters")
        name = m.group(1).lower()
        if name not in params:
            params[name] = m.group(2)
        pos = m.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------------------------------
# Header rows


class Headers:
    """Ordered multimap of header rows; names are case-insensitive, compact forms map to
    their long names. Rows keep the name as received so serialisation is faithful."""

    __slots__ = ("_first", "_rows", "_typed")

    def __init__(self, rows: Iterable[tuple[str, str]] | None = None) -> None:
        # each row: (key, name as written, value)
        self._rows: list[tuple[str, str, str]] = []
        self._typed: dict[str, object] = {}
        self._first: dict[str, str] | None = None  # key -> first value, built on demand
        if rows is not None:
            for name, value in rows:
                self._rows.append((header_key(name), name, value))

    @classmethod
    def _from_parsed(cls, rows: list[tuple[str, str, str]]) -> Headers:
        self = cls.__new__(cls)
        self._rows = rows
        self._typed = {}
        self._first = None
        return self

    def _changed(self, key: str | None = None) -> None:
        """Rows of header ``key`` changed (any header when None): forget what was parsed
        from them. A response's added Contact or Expires keeps its parsed Via, From and To."""
        self._first = None
        if key is None:
            self._typed.clear()
            return
        typed = self._typed
        for name in _TYPED_FROM.get(key, (key,)):
            typed.pop(name, None)

    def _index(self) -> dict[str, str]:
        first = self._first = {k: v for k, _, v in reversed(self._rows)}
        return first

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first row's value as received."""
        first = self._first
        if first is None:
            first = self._index()
        return first.get(header_key(name), default)

    def get_rows(self, name: str) -> list[str]:
        """Every row's value as received, without splitting comma lists."""
        key = header_key(name)
        return [value for k, _, value in self._rows if k == key]

    def get_all(self, name: str) -> list[str]:
        """All values; comma lists split where the grammar allows (§7.3.1)."""
        key = header_key(name)
        values = [value for k, _, value in self._rows if k == key]
        if key not in LIST_HEADERS:
            return values
        out: list[str] = []
        for value in values:
            out.extend(split_commas(value))
        return out

    def add(self, name: str, value: str) -> None:
        """Append a row (after any rows of the same name, since it goes at the end)."""
        key = header_key(name)
        self._rows.append((key, _display_name(name), str(value)))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a row before the first row of that header, or at the top (a proxy's Via,
        RFC 3261 §16.6 step 8, or a Record-Route)."""
        key = header_key(name)
        index = next((i for i, row in enumerate(self._rows) if row[0] == key), 0)
        self._rows.insert(index, (key, _display_name(name), str(value)))
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every row of ``name`` by one row, at the position of the first."""
        key = header_key(name)
        row = (key, _display_name(name), str(value))
        for i, existing in enumerate(self._rows):
            if existing[0] == key:
                self._rows[i] = (key, existing[1], row[2])
                self._rows[i + 1:] = [r for r in self._rows[i + 1:] if r[0] != key]
                break
        else:
            self._rows.append(row)
        self._changed(key)

    def remove(self, name: str) -> None:
        """Remove every row of ``name`` (no error if there is none)."""
        key = header_key(name)
        self._rows = [r for r in self._rows if r[0] != key]
        self._changed(key)

    def set_values(self, name: str, values: Iterable[str]) -> None:
        """Replace a list header by one row per value (at the first row's position)."""
        key = header_key(name)
        values = [str(v) for v in values]
        first = next((i for i, row in enumerate(self._rows) if row[0] == key), None)
        disp = self._rows[first][1] if first is not None else _display_name(name)
        rest = [r for r in self._rows if r[0] != key]
        index = len(rest) if first is None else sum(
            1 for r in self._rows[:first] if r[0] != key)
        rest[index:index] = [(key, disp, v) for v in values]
        self._rows = rest
        self._changed(key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        first = self._first
        if first is not None:
            return key in first
        return any(k == key for k, _, _ in self._rows)

    def items(self) -> Iterator[tuple[str, str]]:
        """(name as written, value) for every row, in order."""
        for _, name, value in self._rows:
            yield name, value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self.items()

    def __len__(self) -> int:
        return len(self._rows)

    def count(self, name: str) -> int:
        """How many rows carry ``name`` (compact and long forms together)."""
        key = header_key(name)
        return sum(1 for k, _, _ in self._rows if k == key)

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._rows))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._rows] == [(k, v) for k, _, v in other._rows]

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


def _display_name(name: str) -> str:
    name = name.strip()
    if not _abnf.HEADER_NAME_RE.match(name):
        raise ValueError(f"invalid header name {name!r}")
    return _CANONICAL.get(name.lower(), name)


# ---------------------------------------------------------------------------------------
# Typed values

URIType = SipURI | TelURI | AbsoluteURI


class NameAddr:
    """``[display-name] <URI> *(;param)`` of From, To, Contact, Route, Record-Route, Path.

    The URI is parsed on first access; ``params`` are the header parameters (in the
    addr-spec form every ``;param`` after the URI is one of them, RFC 3261 §20.10).
    Parameter values are kept as written (a quoted-string keeps its quotes).
    """

    __slots__ = ("_uri", "_uri_text", "display_name", "params")

    def __init__(
        self,
        uri: URIType | str,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        if isinstance(uri, str):
            self._uri: URIType | None = None
            self._uri_text: str | None = uri
        else:
            self._uri = uri
            self._uri_text = None
        self.display_name = display_name
        self.params: dict[str, str | None] = params if params is not None else {}

    @property
    def uri(self) -> URIType:
        if self._uri is None:
            assert self._uri_text is not None
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @uri.setter
    def uri(self, value: URIType) -> None:
        self._uri = value
        self._uri_text = None

    @property
    def uri_text(self) -> str:
        """The URI as a string, without parsing it if it was never touched."""
        return self._uri_text if self._uri is None else str(self._uri)  # type: ignore[return-value]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    def __str__(self) -> str:
        # Always the name-addr form: safe whatever the URI contains (§20.10).
        text = f"<{self.uri_text}>"
        if self.display_name is not None:
            text = f"{quote_string(self.display_name)} {text}"
        return text + format_params(self.params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (type(self) is type(other) and self.display_name == other.display_name
                and self.uri_text == other.uri_text and self.params == other.params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Contact(NameAddr):
    """A Contact value; ``is_star`` for the ``Contact: *`` of a REGISTER (§10.2.2)."""

    __slots__ = ("is_star",)

    def __init__(
        self,
        uri: URIType | str | None,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
        *,
        is_star: bool = False,
    ) -> None:
        super().__init__(uri if uri is not None else "*", display_name, params)
        self.is_star = is_star

    @classmethod
    def star(cls) -> Contact:
        return cls(None, is_star=True)

    @property
    def uri(self) -> URIType:
        if self.is_star:
            raise SipParseError("Contact '*' has no URI")
        return NameAddr.uri.fget(self)  # type: ignore[attr-defined,no-any-return]

    @uri.setter
    def uri(self, value: URIType) -> None:
        NameAddr.uri.fset(self, value)  # type: ignore[attr-defined]

    @property
    def expires(self) -> int | None:
        """The expires parameter; out-of-range values are capped at 2**32-1 (§20.19)."""
        value = self.params.get("expires")
        if value is None:
            return None
        value = unquote_string(value)
        if not _abnf.DIGITS_RE.match(value):
            raise SipParseError("malformed Contact expires parameter")
        return min(int(value), 2**32 - 1)

    @property
    def q(self) -> float | None:
        """The q parameter: ``qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )``."""
        value = self.params.get("q")
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            raise SipParseError("malformed Contact q parameter")
        if not 0.0 <= q <= 1.0:
            raise SipParseError("Contact q parameter out of range")
        return q

    def __str__(self) -> str:
        return "*" if self.is_star else super().__str__()


def parse_name_addr(value: str, what: str, cls: type[NameAddr] = NameAddr) -> NameAddr:
    """Parse ``name-addr / addr-spec`` followed by header parameters."""
    m = _abnf.NAME_ADDR_FAST_RE.match(value)
    if m is not None:
        quoted, token_name, uri_text, rest = m.groups()
        if quoted is not None:
            display: str | None = unquote_string(quoted)
        else:
            token_name = token_name.strip()
            # display-name = *(token LWS) / quoted-string.  A comma or other separator in an
            # unquoted display name is an error (RFC 4475 §3.1.2.15 "baddn"); LWS before
            # "<" may be missing (§3.1.1.6 "lwsdisp", an RFC 3261 grammar bug).
            if token_name and not all(
                _abnf.TOKEN_FULL_RE.match(t) for t in token_name.split()
            ):
                raise SipParseError(f"malformed display name in {what}")
            display = token_name or None
        if rest and rest[0] != ";":
            raise SipParseError(f"malformed {what}")
        return cls(uri_text, display, parse_params(rest, what))
    text = value.strip()
    if "<" in text or ">" in text or '"' in text:
        raise SipParseError(f"malformed {what}")
    # addr-spec: the URI ends at the first ";" -- whatever follows are header params.
    uri_text, semi, rest = text.partition(";")
    uri_text = uri_text.rstrip()
    if not uri_text or not _abnf.SCHEME_RE.match(uri_text) or len(uri_text.split(None, 1)) > 1:
        raise SipParseError(f"malformed URI in {what}")
    return cls(uri_text, None, parse_params(semi + rest, what) if semi else {})


def parse_contact(value: str) -> Contact:
    if value.strip() == "*":
        return Contact.star()
    contact = parse_name_addr(value, "Contact", Contact)
    contact.is_star = False  # type: ignore[attr-defined]
    return contact  # type: ignore[return-value]


@dataclass(eq=True)
class Via:
    """One Via value (RFC 3261 §20.42); ``host`` is lowercased, IPv6 without brackets."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP"
    version: str = "2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @branch.setter
    def branch(self, value: str | None) -> None:
        _set_param(self.params, "branch", value)

    @property
    def received(self) -> str | None:
        """The received address; RFC 5118 §4.5 allows an IPv6 reference with brackets."""
        value = self.params.get("received")
        if value and value.startswith("[") and value.endswith("]"):
            return value[1:-1]
        return value

    @received.setter
    def received(self, value: str | None) -> None:
        _set_param(self.params, "received", value)

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581: ``True`` when present without a value (asking for one), else the port."""
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        if value is None:
            return True
        if not _abnf.DIGITS_RE.match(value) or int(value) > 65535:
            raise SipParseError("malformed Via rport")
        return int(value)

    @rport.setter
    def rport(self, value: int | bool | None) -> None:
        if value is None or value is False:
            self.params.pop("rport", None)
        else:
            self.params["rport"] = None if value is True else str(int(value))

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return (f"{self.protocol}/{self.version}/{self.transport} {self.host_port()}"
                + format_params(self.params))


def _set_param(params: dict[str, str | None], name: str, value: str | None) -> None:
    if value is None:
        params.pop(name, None)
    else:
        params[name] = value


def parse_via(value: str) -> Via:
    m = _abnf.VIA_FAST_RE.match(value)
    if m is not None:  # "SIP/2.0/UDP host[:port];params" without LWS
        transport, host, port, rest = m.groups()
        return Via(transport.upper(), host.lower(), int(port) if port else None,
                   parse_params(rest, "Via") if rest else {})
    m = _abnf.VIA_RE.match(value)
    if m is None:
        raise SipParseError("malformed Via")
    protocol, version, transport, host, port, rest = m.groups()
    if host[0] == "[":
        host = host[1:-1]
        if not _abnf.IPV6_RE.match(host):
            raise SipParseError("malformed Via sent-by")
    elif ":" in host:
        raise SipParseError("malformed Via sent-by")
    port_num = None
    if port is not None:
        port_num = int(port)
        if port_num > 65535:
            raise SipParseError("malformed Via port")
    return Via(transport.upper(), host.lower(), port_num,
               parse_params(rest, "Via") if rest else {}, protocol.upper(), version)


class CSeq(NamedTuple):
    """``CSeq: seq method`` (§20.16); seq < 2**31 (§8.1.1.5). Immutable."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    m = _abnf.CSEQ_RE.match(value)
    if m is None:
        raise SipParseError("malformed CSeq")
    seq = int(m.group(1))
    if seq >= 2**31:
        raise SipParseError("CSeq number out of range")
    return CSeq(seq, m.group(2))


@dataclass(eq=True)
class Event:
    """``Event: package[.template] *(;param)`` (RFC 6665 §8.2.1)."""

    package: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def id(self) -> str | None:
        return self.params.get("id")

    def __str__(self) -> str:
        return self.package + format_params(self.params)


def parse_event(value: str) -> Event:
    text = value.strip()
    package, semi, rest = text.partition(";")
    package = package.strip()
    if not _abnf.TOKEN_FULL_RE.match(package):
        raise SipParseError("malformed Event")
    return Event(package, parse_params(semi + rest, "Event") if semi else {})


@dataclass(eq=True)
class SubscriptionState:
    """``Subscription-State: active|pending|terminated *(;param)`` (RFC 6665 §8.2.3)."""

    state: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def expires(self) -> int | None:
        return _int_param(self.params, "expires", "Subscription-State")

    @property
    def retry_after(self) -> int | None:
        return _int_param(self.params, "retry-after", "Subscription-State")

    @property
    def reason(self) -> str | None:
        value = self.params.get("reason")
        return value.lower() if value else None

    def __str__(self) -> str:
        return self.state + format_params(self.params)


def _int_param(params: dict[str, str | None], name: str, what: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not _abnf.DIGITS_RE.match(value):
        raise SipParseError(f"malformed {what} {name}")
    return min(int(value), 2**32 - 1)


def parse_subscription_state(value: str) -> SubscriptionState:
    state, semi, rest = value.strip().partition(";")
    state = state.strip()
    if not _abnf.TOKEN_FULL_RE.match(state):
        raise SipParseError("malformed Subscription-State")
    return SubscriptionState(
        state.lower(), parse_params(semi + rest, "Subscription-State") if semi else {})


# Digest parameters that are never quoted (RFC 3261 §25.1, RFC 7616 §3.3-3.4).
_UNQUOTED_CHALLENGE = frozenset({"algorithm", "stale"})
_UNQUOTED_CREDENTIALS = frozenset({"algorithm", "nc", "qop"})


@dataclass(eq=True)
class Challenge:
    """A WWW-Authenticate / Proxy-Authenticate value; params unquoted (RFC 3261 §20.44)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    _unquoted = _UNQUOTED_CHALLENGE

    def __str__(self) -> str:
        return _format_auth(self.scheme, self.params, self._unquoted)


@dataclass(eq=True)
class Credentials(Challenge):
    """An Authorization / Proxy-Authorization value; params unquoted (§20.7)."""

    _unquoted = _UNQUOTED_CREDENTIALS


def _format_auth(scheme: str, params: dict[str, str], unquoted: frozenset[str]) -> str:
    parts = []
    for name, value in params.items():
        if name.lower() in unquoted and _abnf.TOKEN_FULL_RE.match(value):
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}={quote_string(value)}")
    return f"{scheme} {', '.join(parts)}" if parts else scheme


def parse_auth(value: str, cls: type[Challenge]) -> Challenge:
    """``auth-scheme LWS auth-param *(COMMA auth-param)``; param names lowercased."""
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if not _abnf.TOKEN_FULL_RE.match(scheme):
        raise SipParseError(f"malformed {cls.__name__.lower()} header")
    params: dict[str, str] = {}
    for item in split_commas(rest):
        name, eq, val = item.partition("=")
        name = name.strip()
        if not eq or not _abnf.TOKEN_FULL_RE.match(name):
            raise SipParseError("malformed auth-param")
        val = val.strip()
        if val.startswith('"'):
            if not _abnf.QUOTED_STRING_RE.fullmatch(val):
                raise SipParseError("malformed auth-param quoted-string")
            val = unquote_string(val)
        params[name.lower()] = val
    # RFC 3261 §19.1.4-style case-insensitive scheme: "digest" is "Digest".
    if scheme.lower() == "digest":
        scheme = "Digest"
    return cls(scheme, params)

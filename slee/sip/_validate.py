"""What a UAS checks before processing a request, and the stateless error answer.

``validate_request`` raises :class:`SipParseError` carrying the status RFC 3261 prescribes;
``error_response`` turns such an error into the response to send, built from whatever
could be read of the offending bytes (RFC 3261 §8.2, §16.3, §18.3; RFC 4475).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from slee.sip import _abnf
from slee.sip._errors import SipParseError
from slee.sip._headers import Headers, header_key, parse_name_addr, parse_via, split_commas
from slee.sip._message import Request, Response
from slee.sip._uri import SipURI

__all__ = ["DEFAULT_URI_SCHEMES", "error_response", "validate_request"]

DEFAULT_URI_SCHEMES = frozenset({"sip", "sips", "tel"})

# Headers that may appear once only (RFC 3261 §7.3.1: not comma lists).
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type", "Expires",
           "Event", "Subscription-State", "SIP-If-Match")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
_SINGLE_KEYS = tuple((name, header_key(name)) for name in _SINGLE)
_MANDATORY_KEYS = tuple((name, header_key(name)) for name in _MANDATORY)


def validate_request(
    request: Request,
    *,
    supported: frozenset[str] = frozenset(),
    proxy_supported: frozenset[str] | None = None,
    uri_schemes: frozenset[str] = DEFAULT_URI_SCHEMES,
    check_max_forwards: bool = True,
) -> None:
    """Check a parsed request as a UAS (or, with ``proxy_supported``, a proxy) must.

    Raises :class:`SipParseError` with 505 (version), 400 (missing, repeated or malformed
    mandatory header; CSeq method not the request method; headers in the Request-URI),
    416 (Request-URI scheme not in ``uri_schemes``), 420 (Require, or Proxy-Require when
    ``proxy_supported`` is given, names an unsupported extension; ``error.unsupported``
    lists them) and, last, 483 when Max-Forwards is 0 -- only a proxy must refuse that
    (§16.3 step 3), so a UAS passes ``check_max_forwards=False`` or ignores the 483.
    Max-Forwards itself may be absent (§8.2: tolerate RFC 2543 clients).
    """
    # §8.2 / §7.1: a version we do not speak -> 505 (RFC 4475 §3.1.2.16)
    if request.version != "SIP/2.0":
        raise SipParseError("SIP version not supported", 505)
    headers = request.headers
    counts = Counter([row[0] for row in headers._rows])  # one pass instead of one per name
    for name, key in _MANDATORY_KEYS:
        if key not in counts:
            raise SipParseError(f"missing {name}")
    for name, key in _SINGLE_KEYS:
        if counts.get(key, 0) > 1:
            raise SipParseError(f"multiple {name} headers")
    # Parse what every request needs; any malformed value raises 400 here.
    if not request.vias:
        raise SipParseError("malformed Via")
    for name_addr in (request.from_, request.to):
        _ = name_addr.uri
    _ = request.call_id
    cseq = request.cseq
    max_forwards = request.max_forwards
    for contact in request.contacts:
        if not contact.is_star:
            _ = contact.uri
    for route in request.routes:
        _ = route.uri
    _ = request.expires
    _ = request.event
    _ = request.content_type
    # §8.1.1.5 / §20.16: the CSeq method matches the Request-Line (RFC 4475 §3.1.2.17/18)
    if cseq.method != request.method:
        raise SipParseError("CSeq method does not match the request method")
    # §8.2.2.1: Request-URI scheme
    scheme = request.raw_uri.split(":", 1)[0].lower()
    if scheme not in uri_schemes:
        raise SipParseError(f"unsupported URI scheme {scheme!r}", 416)
    uri = request.uri
    if isinstance(uri, SipURI) and uri.headers:
        # §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11)
        raise SipParseError("headers in Request-URI")
    # §8.2.2.3: Require (never for ACK/CANCEL); §16.3 step 5: Proxy-Require for proxies
    if request.method not in ("ACK", "CANCEL"):
        unsupported = [tag for tag in request.require if tag not in supported]
        if proxy_supported is not None:
            unsupported += [tag for tag in request.proxy_require
                            if tag not in proxy_supported and tag not in unsupported]
        if unsupported:
            raise SipParseError("unsupported extension " + ", ".join(unsupported), 420,
                                unsupported=unsupported,
                                reason="Bad Extension")
    if check_max_forwards and max_forwards == 0:
        raise SipParseError("Max-Forwards is 0", 483, reason="Too Many Hops")


# --- stateless error responses ----------------------------------------------------------

_VIA_SALVAGE_RE = re.compile(
    rf"\s*SIP\s*/\s*2\.0\s*/\s*({_abnf.TOKEN})\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)"
    r"(?:\s*:\s*(\d{1,5}))?",
    re.IGNORECASE,
)
_BRANCH_RE = re.compile(rf";\s*branch\s*=\s*({_abnf.TOKEN})", re.IGNORECASE)
_CSEQ_LOOSE_RE = re.compile(rf"\s*\d+\s+{_abnf.TOKEN}\s*\Z")


def _lenient_rows(data: bytes) -> tuple[str, list[tuple[str, str, str]]] | None:
    """Start line and header rows of possibly broken bytes, skipping what cannot be read."""
    data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data
    text = head.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or not lines[0].strip():
        return None
    rows: list[tuple[str, str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if rows:
                key, name, value = rows[-1]
                rows[-1] = (key, name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if colon and _abnf.TOKEN_FULL_RE.match(name):
            rows.append((header_key(name), name, value.strip()))
    return lines[0], rows


def _stateless_tag(*parts: str | None) -> str:
    """A To tag that is the same for every retransmission of the request, so a stateless
    answer looks like one response to the client (RFC 3261 §8.2.6.2, §16.11)."""
    digest = hashlib.sha1("|".join(p or "" for p in parts).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def error_response(
    data: bytes, error: SipParseError, *, to_tag: str | None = None
) -> Response | None:
    """The response to send for ``error`` raised on the request ``data``, or None.

    None when nothing may be sent: the message was a response (§8.1.3.1), an ACK
    (§17.2.1: never answered), the status is 0, or no usable Via, Call-ID or CSeq could be
    read (a response without them cannot reach or match the client transaction).
    """
    if error.is_response or error.status < 300:
        return None
    read = _lenient_rows(data)
    if read is None:
        return None
    start, rows = read
    if start[:4].upper() == "SIP/":
        return None
    method = start.split(None, 1)[0]
    if method == "ACK":
        return None
    vias = [r for r in rows if r[0] == "via"]
    call_ids = [r for r in rows if r[0] == "call-id"]
    cseqs = [r for r in rows if r[0] == "cseq"]
    if not vias or not call_ids or not cseqs:
        return None
    if not call_ids[0][2] or not _CSEQ_LOOSE_RE.match(cseqs[0][2]):
        return None
    vias = _usable_vias(vias)
    if vias is None:
        return None

    out: list[tuple[str, str, str]] = list(vias)
    froms = [r for r in rows if r[0] == "from"]
    tos = [r for r in rows if r[0] == "to"]
    from_tag = None
    if froms:
        out.append(froms[0])
        try:
            from_tag = parse_name_addr(froms[0][2], "From").tag
        except SipParseError:
            pass
    if tos:
        key, name, value = tos[0]
        try:
            if parse_name_addr(value, "To").tag is None:
                tag = to_tag or _stateless_tag(call_ids[0][2], from_tag, vias[0][2])
                value = f"{value};tag={tag}"
        except SipParseError:
            pass  # echo a broken To as received; it cannot carry a tag
        out.append((key, name, value))
    out += [call_ids[0], cseqs[0]]
    response = Response(error.status, error.reason, Headers._from_parsed(out))
    if error.status == 420 and error.unsupported:
        response.headers.add("Unsupported", ", ".join(error.unsupported))
    return response


def _usable_vias(vias: list[tuple[str, str, str]]) -> list[tuple[str, str, str]] | None:
    """The Via rows to echo. When the top Via cannot be parsed, a minimal one is salvaged
    from its sent-by (RFC 4475 §3.1.2.1 still expects a 400), else None."""
    first = vias[0]
    items = split_commas(first[2])
    try:
        parse_via(items[0] if items else "")
        return vias
    except SipParseError:
        pass
    m = _VIA_SALVAGE_RE.match(first[2])
    if m is None:
        return None
    transport, host, port = m.groups()
    value = f"SIP/2.0/{transport.upper()} {host}" + (f":{port}" if port else "")
    branch = _BRANCH_RE.search(first[2])
    if branch:
        value += f";branch={branch.group(1)}"
    return [(first[0], first[1], value)]

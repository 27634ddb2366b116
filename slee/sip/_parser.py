"""Bytes -> :class:`Request` / :class:`Response` (RFC 3261 §7, §18.3).

The parser splits the start line and the header rows and frames the body; it does not
interpret header values (that happens lazily in :mod:`slee.sip._message`), which keeps the
per-message cost low for a server that only looks at a handful of headers.
"""

from __future__ import annotations

from operator import countOf, itemgetter

from slee.sip import _abnf
from slee.sip._errors import SipParseError
from slee.sip._headers import Headers, header_key
from slee.sip._message import Request, Response

__all__ = ["parse_message"]

# raw header name (as split off the line) -> (lookup key, name without trailing LWS);
# only valid names are stored, so a hit skips both validation and the compact-form map.
_NAME_CACHE: dict[str, tuple[str, str]] = {}


_KEY = itemgetter(0)
_VALUE = itemgetter(2)
_KNOWN_METHODS = {m: m for m in (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "MESSAGE", "REFER", "INFO", "UPDATE", "PRACK",
)}


class _Folded(Exception):
    """A continuation line was met: unfold the header section, then split again."""


def _split_rows(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Start line and (key, name, value) rows. Lines are split on LF; the CR of CRLF goes
    with the surrounding whitespace (values are stripped), so bare-LF input works too."""
    lines = text.split("\n")
    start = lines[0].rstrip("\r")
    del lines[0]
    if lines and lines[0][:1] in (" ", "\t"):
        raise ValueError("continuation line before any header")
    get = _NAME_CACHE.get
    rows = [
        (known[0], known[1], value.strip())
        for name, colon, value in [line.partition(":") for line in lines]
        for known in ((get(name) if colon else None) or _learn_name(name, colon),)
    ]
    return start, rows


def _learn_name(raw: str, colon: str) -> tuple[str, str]:
    if raw[:1] in (" ", "\t"):
        if raw.strip():
            raise _Folded
        raise ValueError("continuation line before any header")
    if not colon:
        raise ValueError("malformed header line")
    name = raw.rstrip()
    if not _abnf.HEADER_NAME_RE.match(name):
        raise ValueError("malformed header name")
    known = (header_key(name), name)
    if len(_NAME_CACHE) < 4096:  # names come from the wire: bound the cache
        _NAME_CACHE[raw] = known
    return known


def _fail(detail: str, is_response: bool, status: int = 400) -> SipParseError:
    if is_response:
        return SipParseError(detail, 0, is_response=True)
    return SipParseError(detail, status)


def parse_message(
    data: bytes, *, datagram: bool = True, max_size: int | None = None
) -> Request | Response:
    """Parse one whole message: a UDP datagram, or one message framed off a stream.

    ``datagram`` selects RFC 3261 §18.3 datagram rules: a missing Content-Length means the
    rest of the datagram is the body, octets beyond Content-Length are discarded, and a
    header section that runs to the end of the datagram without its empty line is accepted.
    Raises :class:`SipParseError` (400, 505 never: the version is checked by
    ``validate_request``; 513 when ``max_size`` is exceeded).
    """
    # §7.5: CRLFs before the start line are ignored (keep-alives, stray line ends).
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    is_response = data[:4].upper() == b"SIP/"
    if max_size is not None and len(data) > max_size:
        raise _fail("message too large", is_response, 513)
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body_start = data[:end], end + 4
    else:
        end = data.find(b"\n\n")  # tolerate bare-LF line ends
        if end >= 0:
            head, body_start = data[:end], end + 2
        elif datagram:
            # The datagram ends the header section (RFC 4475 §3.1.2.15 "baddn").
            head, body_start = data.rstrip(b"\r\n"), len(data)
        else:
            raise _fail("header section not terminated", is_response)
    if not head:
        raise _fail("empty message", is_response)
    text = head.decode("utf-8", "surrogateescape")
    try:
        try:
            start, rows = _split_rows(text)
        except _Folded:
            # LWS continuation lines are folded onto their row as one SP (§7.3.1).
            start, rows = _split_rows(_abnf.FOLD_RE.sub(" ", text))
    except ValueError as exc:
        raise _fail(str(exc), is_response) from None
    # first value of every header, built in C (reversed so that the first row wins)
    first = dict(zip(map(_KEY, reversed(rows)), map(_VALUE, reversed(rows)), strict=True))
    content_length = first.get("content-length")
    cl_rows = countOf(map(_KEY, rows), "content-length") if content_length is not None else 0

    rest = data[body_start:]
    if cl_rows > 1:
        raise _fail("multiple Content-Length", is_response)
    if content_length is None:
        if not datagram:
            # §18.3: Content-Length MUST be used with stream transports.
            raise _fail("missing Content-Length", is_response)
        body = rest
    else:
        if not _abnf.DIGITS_RE.match(content_length):
            raise _fail("malformed Content-Length", is_response)
        length = int(content_length)
        if length > len(rest):
            raise _fail("Content-Length larger than the message", is_response)
        # §18.3: octets beyond Content-Length in a datagram are discarded.
        body = rest if length == len(rest) else rest[:length]

    headers = Headers._from_parsed(rows)
    headers._first = first
    if is_response:
        version, _, status_reason = start.partition(" ")
        code, _, reason = status_reason.partition(" ")
        if not _abnf.SIP_VERSION_RE.match(version):
            raise _fail("malformed Status-Line", True)
        if not _abnf.STATUS_CODE_RE.match(code):
            raise _fail("malformed status code", True)
        return Response(int(code), reason.strip(), headers, body, version.upper())
    parts = start.split()
    if len(parts) != 3:
        # Liberal about extra SP between the parts (RFC 4475 §3.1.2.9/.10); LWS *inside*
        # the Request-URI gives four parts and is an error (§3.1.2.8).
        raise _fail("malformed Request-Line", False)
    method, uri, version = parts
    known = _KNOWN_METHODS.get(method)
    if known is not None:
        method = known  # one shared string: transaction keys of completed requests keep it
    elif not _abnf.METHOD_RE.match(method):
        raise _fail("malformed method", False)
    if version != "SIP/2.0":
        if not _abnf.SIP_VERSION_RE.match(version):
            raise _fail("malformed SIP-Version", False)
        version = version.upper()
    if not _abnf.SCHEME_RE.match(uri):
        # e.g. "<sip:user@example.com>" as Request-URI (RFC 4475 §3.1.2.7)
        raise _fail("malformed Request-URI", False)
    return Request._parsed(method, uri, headers, body, version)

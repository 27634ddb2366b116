"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25; RFC 3966; RFC 5118 for IPv6 references).

Components are stored unescaped; ``str()`` escapes them again with the character sets of
RFC 3261 §25.1, so ``parse_uri(str(uri)).equivalent(uri)`` always holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

from slee.sip import _abnf
from slee.sip._errors import SipParseError

__all__ = ["URI", "AbsoluteURI", "SipURI", "TelURI", "parse_uri"]

# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
_USERINFO_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%:]+\Z")
_PORT_RE = re.compile(r"\d{1,5}\Z")
_OPAQUE_BAD_RE = re.compile(r"[\s<>\"]")


def unescape(text: str) -> str:
    """Undo %HH escapes once (never recursively, RFC 4475 §3.1.1.3); keeps any octet."""
    if "%" not in text:
        return text
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def escape(text: str, safe: str) -> str:
    """Escape every character outside ``safe`` (alphanumerics are always safe)."""
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_host(host: str, text: str) -> str:
    """Validate a host (brackets already removed for IPv6) and lowercase it."""
    if ":" in host:
        if not _abnf.IPV6_RE.match(host):
            raise SipParseError(f"malformed IPv6 reference in URI {text!r}")
    elif not host or not _abnf.HOSTNAME_RE.match(host):
        raise SipParseError(f"malformed host in URI {text!r}")
    return host.lower()


def _parse_params(text: str, uri: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError(f"empty URI parameter in {uri!r}")
        key = unescape(name).lower()
        if key not in params:  # the first occurrence wins; duplicates are ignored
            params[key] = unescape(value) if eq else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(";" + escape(name, _abnf.PARAM_SAFE))
        else:
            out.append(f";{escape(name, _abnf.PARAM_SAFE)}={escape(value, _abnf.PARAM_SAFE)}")
    return "".join(out)


@dataclass(eq=True)
class SipURI:
    """A sip: or sips: URI; components unescaped, host lowercased, IPv6 without brackets."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def host_port(self) -> str:
        """``host[:port]`` with IPv6 in brackets, as in a Via sent-by or a Host header."""
        host = _format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def copy(self) -> SipURI:
        return SipURI(self.scheme, self.user, self.password, self.host, self.port,
                      dict(self.params), dict(self.headers))

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escape(self.user, _abnf.USER_SAFE))
            if self.password is not None:
                parts += [":", escape(self.password, _abnf.PASSWORD_SAFE)]
            parts.append("@")
        parts.append(self.host_port())
        if self.params:
            parts.append(_format_params(self.params))
        if self.headers:
            parts.append("?")
            parts.append("&".join(
                f"{escape(k, _abnf.HEADER_SAFE)}={escape(v, _abnf.HEADER_SAFE)}"
                for k, v in self.headers.items()
            ))
        return "".join(parts)

    def equivalent(self, other: object) -> bool:
        """URI comparison of RFC 3261 §19.1.4."""
        if not isinstance(other, SipURI):
            return False
        if (self.scheme != other.scheme or self.user != other.user
                or self.password != other.password or self.host != other.host
                or self.port != other.port):
            return False
        for name in self.params.keys() | other.params.keys():
            mine, theirs = self.params.get(name, _MISSING), other.params.get(name, _MISSING)
            if mine is _MISSING or theirs is _MISSING:
                # user, ttl, method, maddr (and transport, by common practice) must be in
                # both; any other parameter present in only one URI is ignored.
                if name in ("user", "ttl", "method", "maddr", "transport"):
                    return False
                continue
            if (mine or "").lower() != (theirs or "").lower() or (mine is None) != (
                theirs is None
            ):
                return False
        # URI headers are never ignored; names compare case-insensitively.
        mine_h = {k.lower(): v for k, v in self.headers.items()}
        theirs_h = {k.lower(): v for k, v in other.headers.items()}
        return mine_h == theirs_h


_MISSING = object()


@dataclass(eq=True)
class TelURI:
    """A tel: URI (RFC 3966): the number as written plus its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"

    def equivalent(self, other: object) -> bool:
        """RFC 3966 §4: visual separators are ignored; parameters must match."""
        if not isinstance(other, TelURI):
            return False
        strip = str.maketrans("", "", "-.()")
        return (self.number.translate(strip).lower() == other.number.translate(strip).lower()
                and {k: (v or "").lower() for k, v in self.params.items()}
                == {k: (v or "").lower() for k, v in other.params.items()})


@dataclass(eq=True)
class AbsoluteURI:
    """Any other URI (http:, urn:, im:, pres:, ...): kept opaque, as RFC 3261 allows."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def equivalent(self, other: object) -> bool:
        return (isinstance(other, AbsoluteURI) and self.scheme == other.scheme
                and self.opaque == other.opaque)


URI = SipURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> SipURI | TelURI | AbsoluteURI:
    """Parse any URI that may appear in SIP; raises :class:`SipParseError` (400)."""
    m = _abnf.SCHEME_RE.match(text)
    if m is None:
        raise SipParseError(f"malformed URI {text!r}")
    scheme = m.group(1).lower()
    rest = text[m.end():]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest, text)
    if not rest or _OPAQUE_BAD_RE.search(rest):
        raise SipParseError(f"malformed URI {text!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError(f"malformed tel URI {text!r}")
        return TelURI(number, _parse_params(params, text) if params else {})
    return AbsoluteURI(scheme, rest)


def _parse_sip(scheme: str, rest: str, text: str) -> SipURI:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        if not _USERINFO_RE.match(userinfo):
            raise SipParseError(f"malformed userinfo in URI {text!r}")
        user_raw, colon, password_raw = userinfo.partition(":")
        user = unescape(user_raw)
        password = unescape(password_raw) if colon else None
        rest = rest[at + 1:]
    # hostport, then uri-parameters, then headers
    rest, qmark, headers_raw = rest.partition("?")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in URI {text!r}")
        host = rest[1:end]
        if ":" not in host:
            raise SipParseError(f"malformed IPv6 reference in URI {text!r}")
        rest = rest[end + 1:]
        port_raw, semi, params_raw = rest.partition(";")
        if port_raw and not port_raw.startswith(":"):
            raise SipParseError(f"malformed host in URI {text!r}")
        port_raw = port_raw[1:] if port_raw else None
    else:
        hostport, semi, params_raw = rest.partition(";")
        host, colon, port_raw = hostport.partition(":")
        if not colon:
            port_raw = None
    host = _check_host(host, text)
    port = None
    if port_raw is not None:
        if not _PORT_RE.match(port_raw) or int(port_raw) > 65535:
            raise SipParseError(f"malformed port in URI {text!r}")
        port = int(port_raw)
    params = _parse_params(params_raw, text) if semi else {}
    headers: dict[str, str] = {}
    if qmark:
        for item in headers_raw.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError(f"malformed URI header in {text!r}")
            headers[unescape(name)] = unescape(value)
    return SipURI(scheme, user, password, host, port, params, headers)

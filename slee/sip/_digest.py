"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760; RFC 3261 §22.4).

Sans-IO: time is a parameter and the server secret is passed in. Servers may store HA1
(``H(username:realm:password)``) instead of clear-text passwords; :func:`compute_ha1` makes it.
Nonces are stateless (HMAC-signed issue time), so any node sharing the secret can verify them;
the only state is a bounded LRU of the highest nonce-count seen per nonce, for replay
protection (RFC 7616 §3.3, §5.3).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "DigestChallenge",
    "NonceManager",
    "NonceStatus",
    "build_credentials",
    "compute_ha1",
    "compute_response",
    "verify",
]


def _hasher(name: str) -> Callable[[bytes], str]:
    def digest(data: bytes) -> str:
        return hashlib.new(name, data).hexdigest()

    return digest


# RFC 7616 §6.1 / RFC 8760 §2: algorithm token -> hash function. SHA-512-256 only when the
# interpreter's OpenSSL provides it.
_HASHES: dict[str, Callable[[bytes], str]] = {"MD5": _hasher("md5"), "SHA-256": _hasher("sha256")}
if "sha512_256" in hashlib.algorithms_available:
    try:
        hashlib.new("sha512_256", b"")
        _HASHES["SHA-512-256"] = _hasher("sha512_256")
    except ValueError:  # pragma: no cover - listed but unusable under some FIPS builds
        pass

ALGORITHMS: tuple[str, ...] = tuple(
    name for base in _HASHES for name in (base, base + "-sess")
)
_CANONICAL = {name.upper(): name for name in ALGORITHMS}


def _split_algorithm(algorithm: str | None) -> tuple[str, bool]:
    """``'sha-256-sess'`` -> ``('SHA-256', True)``; absent means MD5 (RFC 2617 §3.2.1)."""
    name = _CANONICAL.get((algorithm or "MD5").upper())
    if name is None:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    if name.endswith("-sess"):
        return name[:-5], True
    return name, False


def _h(base: str, text: str) -> str:
    return _HASHES[base](text.encode("utf-8"))


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)``: what a server stores instead of the password.

    For ``-sess`` algorithms this is the base HA1; the session key is derived per nonce.
    """
    base, _sess = _split_algorithm(algorithm)
    return _h(base, f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1).

    ``qop`` None is the RFC 2069 form ``H(HA1:nonce:HA2)``; ``nc`` is the 8-hex-digit string
    as sent on the wire.
    """
    base, sess = _split_algorithm(algorithm)
    if sess:
        if cnonce is None:
            raise ValueError("-sess algorithms need a cnonce")
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")  # RFC 7616 §3.4.2
    if qop == "auth-int":
        ha2 = _h(base, f"{method}:{uri}:{_HASHES[base](body)}")  # RFC 7616 §3.4.3
    else:
        ha2 = _h(base, f"{method}:{uri}")
    if qop is None:
        return _h(base, f"{ha1}:{nonce}:{ha2}")  # RFC 2069 compatibility
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(value: str) -> str:
    """RFC 3261 §25.1 quoted-string with backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge (RFC 3261 §22.4)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)  # empty: RFC 2069 style (MD5 only)
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    def to_header(self) -> str:
        parts = [f"Digest realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm}")  # a token, never quoted (RFC 8760 §2.4)
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return ", ".join(parts)


def build_credentials(
    challenge: Mapping[str, str],
    *,
    username: str,
    method: str,
    uri: str,
    password: str | None = None,
    ha1: str | None = None,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge`` (its params).

    The client side, for tests and the proxy. Chooses ``qop=auth`` when offered, else
    ``auth-int``, else the RFC 2069 form.
    """
    realm = challenge.get("realm", "")
    nonce = challenge["nonce"]
    algorithm = _CANONICAL.get(challenge.get("algorithm", "MD5").upper())
    if algorithm is None:
        raise ValueError(f"unsupported digest algorithm: {challenge.get('algorithm')!r}")
    if ha1 is None:
        if password is None:
            raise ValueError("need password or ha1")
        ha1 = compute_ha1(username, realm, password, algorithm)
    offered = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else None
    if qop is not None or algorithm.endswith("-sess"):
        cnonce = cnonce or base64.b32encode(os.urandom(10)).decode("ascii").lower()
    nc_text = f"{nc:08x}" if qop is not None else None
    response = compute_response(
        ha1=ha1, method=method, uri=uri, nonce=nonce, algorithm=algorithm, qop=qop,
        nc=nc_text, cnonce=cnonce, body=body,
    )
    parts = [
        f"Digest username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if "opaque" in challenge:
        parts.append(f"opaque={_quote(challenge['opaque'])}")
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_text}")
    return ", ".join(parts)


class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # genuine but expired (or forgotten): re-challenge with stale=true
    REPLAY = "replay"  # nonce-count not above the highest seen
    INVALID = "invalid"  # not ours: bad signature or garbage


class AuthResult(enum.Enum):
    OK = "ok"
    STALE = "stale"  # right password, old nonce: challenge again with stale=TRUE
    FAILED = "failed"


_NONCE_LAYOUT = struct.Struct(">Q8s")  # issue time (ms) + 8 random bytes
_MAC_SIZE = 16


class NonceManager:
    """Issues HMAC-signed nonces carrying their issue time; tracks nonce-counts (LRU-bounded).

    Stateless validation means a restart or another node with the same secret still accepts
    nonces. Replay protection keeps the highest ``nc`` per nonce for at most ``max_tracked``
    nonces; a nonce evicted from that table that shows up again is answered STALE (never
    accepted unchecked), so the bound cannot open a replay window.
    """

    __slots__ = ("_evicted_floor", "_lifetime", "_max_tracked", "_random", "_secret", "_seen")

    def __init__(
        self,
        secret: bytes,
        lifetime: float = 300.0,
        *,
        max_tracked: int = 100_000,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self._secret = secret
        self._lifetime = lifetime
        self._max_tracked = max_tracked
        self._random = random
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (issued, nc)
        self._evicted_floor = -1  # issue time (ms) of the newest nonce forgotten by the LRU

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_SIZE]

    def issue(self, now: float) -> str:
        payload = _NONCE_LAYOUT.pack(int(now * 1000), self._random(8))
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii").rstrip("=")

    def _issued_at(self, nonce: str) -> int | None:
        """Issue time in ms if ``nonce`` is one of ours, else None."""
        if len(nonce) != 43:  # 32 bytes, unpadded base64url
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (ValueError, TypeError):
            return None
        payload, mac = raw[: _NONCE_LAYOUT.size], raw[_NONCE_LAYOUT.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        return _NONCE_LAYOUT.unpack(payload)[0]

    def validate(self, nonce: str, now: float) -> NonceStatus:
        """Signature and age only; records nothing."""
        issued = self._issued_at(nonce)
        if issued is None:
            return NonceStatus.INVALID
        age = now - issued / 1000.0
        if age > self._lifetime or age < -1.0:  # 1s slack for clocks of sibling nodes
            return NonceStatus.STALE
        return NonceStatus.VALID

    def check(self, nonce: str, nc: int | None, now: float) -> NonceStatus:
        """Validate ``nonce`` and record ``nc`` (RFC 7616 §3.3: nc must increase).

        ``nc`` None (RFC 2069 clients, no qop) cannot be replay-checked; the nonce lifetime
        bounds the exposure.
        """
        status = self.validate(nonce, now)
        if status is not NonceStatus.VALID or nc is None:
            return status
        entry = self._seen.get(nonce)
        if entry is not None:
            issued, highest = entry
            if nc <= highest:
                return NonceStatus.REPLAY
            self._seen[nonce] = (issued, nc)
            self._seen.move_to_end(nonce)
            return NonceStatus.VALID
        issued = self._issued_at(nonce)
        assert issued is not None
        if issued <= self._evicted_floor:
            return NonceStatus.STALE
        self._seen[nonce] = (issued, nc)
        while len(self._seen) > self._max_tracked:
            _old, (old_issued, _nc) = self._seen.popitem(last=False)
            self._evicted_floor = max(self._evicted_floor, old_issued)
        return NonceStatus.VALID

    def __len__(self) -> int:
        return len(self._seen)


def verify(
    credentials: Mapping[str, str],
    method: str,
    ha1: str | Mapping[str, str],
    nonce_manager: NonceManager,
    now: float,
    *,
    body: bytes = b"",
    realm: str | None = None,
    request_uri: str | None = None,
) -> AuthResult:
    """Check Digest credentials (the params of an Authorization header) on the server side.

    ``ha1`` is the stored HA1 for the credentials' username and realm, or a mapping from base
    algorithm (``'MD5'``, ``'SHA-256'``) to HA1 when several are stored. The response is
    compared in constant time before the nonce is consulted, so STALE is only ever reported
    to someone who knows the password (RFC 7616 §3.2), and a nonce-count is only recorded for
    a correct response.
    """
    try:
        base, _sess = _split_algorithm(credentials.get("algorithm"))
    except ValueError:
        return AuthResult.FAILED
    nonce = credentials.get("nonce")
    uri = credentials.get("uri")
    response = credentials.get("response")
    if not nonce or uri is None or not response:
        return AuthResult.FAILED
    if realm is not None and credentials.get("realm") != realm:
        return AuthResult.FAILED
    if request_uri is not None and uri != request_uri:
        return AuthResult.FAILED  # RFC 2617 §3.2.2.5
    if not isinstance(ha1, str):
        found = ha1.get(base)
        if found is None:
            return AuthResult.FAILED
        ha1 = found
    qop = credentials.get("qop")
    nc_text = credentials.get("nc")
    cnonce = credentials.get("cnonce")
    nc: int | None = None
    if qop is not None:
        if qop not in ("auth", "auth-int") or not nc_text or not cnonce:
            return AuthResult.FAILED
        if len(nc_text) != 8:
            return AuthResult.FAILED
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult.FAILED
    elif base != "MD5":
        return AuthResult.FAILED  # RFC 2069 form exists for MD5 only
    try:
        expected = compute_response(
            ha1=ha1, method=method, uri=uri, nonce=nonce,
            algorithm=credentials.get("algorithm") or "MD5", qop=qop, nc=nc_text,
            cnonce=cnonce, body=body,
        )
    except ValueError:
        return AuthResult.FAILED
    if not hmac.compare_digest(expected.encode("ascii"), response.lower().encode("utf-8")):
        return AuthResult.FAILED
    status = nonce_manager.check(nonce, nc, now)
    if status is NonceStatus.VALID:
        return AuthResult.OK
    if status is NonceStatus.STALE:
        return AuthResult.STALE
    return AuthResult.FAILED

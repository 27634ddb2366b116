"""REGISTER processing (RFC 3261 §10.3 steps 5-8, RFC 3327 Path) as a pure function.

No SLEE, no clock: the stored bindings and ``now`` go in, a decision comes out — either a
rejection (status, reason, extra headers) or the AOR's new binding set and the reason to
announce. The SBB does the I/O around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate

from slee.ra.location import Binding, contact_key
from slee.sip import Request, SipParseError, unquote_string

from ._config import RegistrarConfig


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Accepted:
    bindings: tuple[Binding, ...]  # the AOR's complete binding set afterwards
    reason: str  # for the location event: registered/refreshed/unregistered/wildcard/changed
    changed: bool  # False for a query or a no-op
    notes: list[str] = field(default_factory=list)


def process_register(request: Request, aor: str, stored: tuple[Binding, ...] | list[Binding], now: float,
                     cfg: RegistrarConfig, received: tuple[str, str, int] | None) -> Rejected | Accepted:
    """Decide the outcome of a REGISTER for ``aor`` given its ``stored`` bindings."""
    alive = [b for b in stored if b.expires_at > now]
    try:
        contacts = request.contacts
        header_expires = request.expires
        call_id = request.call_id
        cseq = request.cseq.seq
    except SipParseError as exc:
        return Rejected(400, f"Bad Request ({exc})")
    if not contacts:  # a query (§10.2.3)
        return Accepted(tuple(alive), "changed", False)

    if any(c.is_star for c in contacts):  # §10.3 step 6: "*" alone, with Expires: 0
        if len(contacts) != 1 or header_expires != 0:
            return Rejected(400, "Bad Request (Contact * needs Expires: 0 and no other Contact)")
        keep = [b for b in alive if b.call_id == call_id and b.cseq >= cseq]
        return Accepted(tuple(keep), "wildcard" if not keep else "changed", len(keep) != len(alive))

    path = tuple(request.headers.get_all("Path"))
    user_agent = request.headers.get("User-Agent")
    current = {contact_key(b): b for b in alive}
    order = list(current)
    registered, removed, refreshed = 0, 0, 0
    seen: set[str] = set()
    for contact in contacts:
        try:
            contact.uri  # noqa: B018 -- parse now: a malformed URI is the client's error (400)
            expires = contact.expires
            q = contact.q
        except SipParseError as exc:
            return Rejected(400, f"Bad Request ({exc})")
        if expires is None:
            expires = header_expires if header_expires is not None else cfg.default_expires
        if 0 < expires < cfg.min_expires:  # §10.3 step 7
            return Rejected(423, "Interval Too Brief", (("Min-Expires", str(cfg.min_expires)),))
        expires = min(expires, cfg.max_expires)
        instance = contact.params.get("+sip.instance")
        reg_id_text = contact.params.get("reg-id")
        try:
            reg_id = int(reg_id_text) if reg_id_text is not None else None
        except ValueError:
            return Rejected(400, "Bad Request (malformed reg-id)")
        binding = Binding(aor, contact.uri_text, now + expires, q, call_id, cseq, path, received,
                          unquote_string(instance) if instance else None, reg_id, user_agent)
        key = contact_key(binding)
        if key in seen:
            continue  # the same contact twice in one request: the first one counts
        seen.add(key)
        old = current.get(key)
        if old is not None and old.call_id == call_id and cseq <= old.cseq:
            return Rejected(500, "Server Internal Error (out-of-order CSeq)",
                            (("Retry-After", "1"),))  # §10.3 step 7
        if expires == 0:
            if old is not None:
                del current[key]
                removed += 1
            continue
        if old is None:
            order.append(key)
            registered += 1
        else:
            refreshed += 1
        current[key] = binding
    if len(current) > cfg.max_contacts:
        return Rejected(403, f"Forbidden (at most {cfg.max_contacts} contacts per address-of-record)")
    bindings = tuple(current[k] for k in order if k in current)
    if registered:
        reason = "registered"
    elif removed:
        reason = "unregistered" if not bindings else "changed"
    else:
        reason = "refreshed"
    return Accepted(bindings, reason, bool(registered or removed or refreshed))


def ok_headers(request: Request, bindings: tuple[Binding, ...] | list[Binding], now: float) -> list[tuple[str, str]]:
    """The 200 OK's headers (§10.3 step 8): every current binding with its remaining
    expires, a Date, and the stored Path when the UA supports it (RFC 3327 §5.3)."""
    headers: list[tuple[str, str]] = []
    for b in bindings:
        params = f";expires={b.remaining(now)}"
        if b.q is not None:
            params += f";q={_q(b.q)}"
        if b.instance is not None:
            params += f';+sip.instance="{b.instance}"'
        if b.reg_id is not None:
            params += f";reg-id={b.reg_id}"
        headers.append(("Contact", f"<{b.contact}>{params}"))
    if "path" in [s.lower() for s in request.supported]:
        for p in request.headers.get_all("Path"):
            headers.append(("Path", p))
    headers.append(("Supported", "path"))
    headers.append(("Date", _date(now)))
    return headers


_last_date: tuple[int, str] = (0, "")


def _date(now: float) -> str:
    """RFC 1123 date of ``now``, formatted once per second (it was 1 % of a REGISTER)."""
    global _last_date
    second = int(now)
    if _last_date[0] != second:
        _last_date = (second, formatdate(second, usegmt=True))
    return _last_date[1]


def _q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text if "." in text else f"{text}.0"

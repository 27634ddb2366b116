"""Where SIP messages go: peers, the received/rport rules and request/response targets.

Sans-IO: nothing here resolves names or opens sockets. A :class:`Peer` is what the transport
layer needs to put bytes on the wire; hostnames are passed through for the transport to resolve
(RFC 3263 without SRV/NAPTR).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slee.sip._message import Request, Response

__all__ = [
    "Peer",
    "apply_received",
    "default_port",
    "request_destination",
    "response_destination",
]

_RELIABLE = frozenset({"tcp", "tls", "sctp", "tls-sctp", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote transport address: where a message came from or must go.

    ``connection_id`` names an existing stream connection to reuse (RFC 3261 §18.2.2: responses
    over TCP/TLS go back on the connection the request came on) when the transport knows it.
    """

    transport: str  # 'udp' | 'tcp' | 'tls' (lowercase)
    host: str  # IP literal or hostname; IPv6 without brackets
    port: int
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        """True for stream transports: no retransmission timers (RFC 3261 §17.1.1.2)."""
        return self.transport in _RELIABLE

    def same_address(self, other: Peer) -> bool:
        """Same transport, host and port; the connection id is not compared."""
        return (
            self.transport == other.transport
            and self.port == other.port
            and _same_host(self.host, other.host)
        )


def default_port(transport: str) -> int:
    """RFC 3261 §19.1.2: 5061 for TLS (sips), 5060 otherwise."""
    return 5061 if transport in ("tls", "tls-sctp", "wss") else 5060


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _strip_brackets(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def apply_received(request: Request, source: Peer, *, force_rport: bool = False) -> None:
    """Stamp the top Via with where the request really came from.

    RFC 3261 §18.2.1: add ``received`` when the sent-by host differs from the source address.
    RFC 3581 §4: when the top Via carries ``rport`` without a value, fill it with the source
    port and add ``received`` even when it equals the sent-by host. The Via row is rewritten in
    the request's headers so that responses built from the request carry the parameters.
    Idempotent: a second call with the same source changes nothing. ``force_rport`` treats
    a Via without ``rport`` as if the client had asked for it (answer the source address and
    port: what NATed clients need, as Kamailio's force_rport() does).
    """
    via = request.top_via
    params = via.params
    changed = False
    if force_rport and "rport" not in params:
        params["rport"] = None
    rport_empty = "rport" in params and not params["rport"]
    if rport_empty:
        params["rport"] = str(source.port)
        changed = True
    host, _port = via.sent_by
    needs_received = rport_empty or not _same_host(_strip_brackets(host), source.host)
    if needs_received and params.get("received") != source.host:
        params["received"] = source.host
        changed = True
    if changed:
        request.replace_top_via(via)


def response_destination(response: Response, *, source: Peer | None = None) -> Peer:
    """Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4).

    ``source`` is where the request came from; for stream transports with a known
    ``connection_id`` the response goes back on that connection.
    """
    if source is not None and source.reliable and source.connection_id is not None:
        # The request came on a connection: answer on it, whatever its Via says (a client
        # that writes UDP in the Via of a TCP request still reads its answer there).
        return source
    via = response.top_via
    transport = via.transport.lower()
    if source is not None and not source.reliable and transport in _RELIABLE:
        transport = source.transport  # a datagram whose Via names TCP/TLS: answer by datagram
    params = via.params
    sent_host, sent_port = via.sent_by
    sent_host = _strip_brackets(sent_host)
    received = params.get("received")
    received = _strip_brackets(received) if received else None
    port = sent_port if sent_port is not None else default_port(transport)
    if transport in _RELIABLE:
        # §18.2.2: reuse the connection the request arrived on ...
        if source is not None and source.connection_id is not None:
            return source
        # ... else open one to received (or sent-by) and the sent-by port.
        return Peer(transport, received or sent_host, port)
    maddr = params.get("maddr")
    if maddr:
        # §18.2.2: maddr wins; the sent-by port or 5060.
        return Peer(transport, _strip_brackets(maddr), port)
    rport = params.get("rport")
    if received:
        # RFC 3581 §4: received + rport when rport has a value; else §18.2.2 sent-by port.
        if rport and rport.isdigit():
            return Peer(transport, received, int(rport))
        return Peer(transport, received, port)
    if rport and rport.isdigit():
        return Peer(transport, source.host if source is not None else sent_host, int(rport))
    return Peer(transport, sent_host, port)


def request_destination(request: Request, *, default_transport: str = "udp") -> Peer:
    """Where a request goes next (RFC 3261 §8.1.2, RFC 3263 §4 without DNS).

    The top Route when it is a loose router (``;lr``), otherwise the Request-URI (a strict
    router has already been moved into the Request-URI, §12.2.1.1). ``maddr`` overrides the
    host; ``transport`` picks the protocol (sips implies TLS); the port defaults to
    5060/5061. Hostnames are left for the transport to resolve.
    """
    routes = request.routes
    target = routes[0].uri if routes and getattr(routes[0].uri, "lr", False) else request.uri
    scheme = getattr(target, "scheme", None)
    if scheme not in ("sip", "sips"):
        raise ValueError(f"cannot route a request to a {scheme or 'non-SIP'} URI: {target}")
    transport = (target.transport or "").lower()
    if scheme == "sips":
        # RFC 3261 §26.2.2 / RFC 3263 §4.1: sips runs over TLS (transport=tcp means TLS here).
        transport = "tls" if transport in ("", "tcp", "tls") else transport
    elif not transport:
        transport = default_transport.lower()
    maddr = target.params.get("maddr")
    host = _strip_brackets(maddr or target.host)
    port = target.port if target.port is not None else default_port(transport)
    return Peer(transport, host, port)

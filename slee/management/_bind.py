"""The management API listens on loopback only: anything else is refused before binding."""

from __future__ import annotations

import ipaddress
import socket


class NotLoopbackError(ValueError):
    """The management API was asked to listen on an address other machines can reach."""


def check_loopback(host: str) -> list[str]:
    """Every address ``host`` resolves to, all loopback, or ``NotLoopbackError``."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NotLoopbackError(f"management host {host!r} does not resolve: {exc}") from None
    addresses = sorted({info[4][0] for info in infos})
    bad = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if bad or not addresses:
        raise NotLoopbackError(f"the management API listens on loopback only (127.0.0.1 or ::1); {host!r} is "
                               f"{', '.join(bad) or 'no address'}. Reach it remotely through an SSH tunnel.")
    return addresses

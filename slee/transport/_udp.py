"""The UDP endpoint: one datagram is one SIP message (RFC 3261 §18.1.2, §18.2.1)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slee.transport._transport import SipTransport

__all__: list[str] = []

logger = logging.getLogger("slee.transport")


BATCH = 32  # datagrams read per readiness notification


class UdpEndpoint(asyncio.DatagramProtocol):
    """Hands datagrams to the owning SipTransport; ICMP errors are counted and logged."""

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport does not subclass DatagramTransport.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self._read_burst(data, addr)
        finally:
            self.owner.batch_end()

    def _read_burst(self, data: bytes, addr: tuple) -> None:
        owner = self.owner
        owner.datagram_received(data, addr)
        # asyncio reads one datagram per loop turn; under load read what else is queued
        # now (up to a bound, so other sockets and the event router still get their turn).
        sock = owner._udp_sock
        if sock is None:
            return
        for _ in range(BATCH - 1):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            owner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Asynchronous ICMP errors carry no destination on an unconnected socket; the
        # transaction layer's timers (RFC 3261 §17) are what notice the peer is gone.
        self.owner.count("udp_errors")
        logger.debug("SIP UDP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

"""One TCP connection: byte stream -> framed SIP messages, and bounded writes (RFC 3261 §18.3)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

from slee.sip._framing import FramingFailed, KeepAliveReceived, MessageFramed, StreamFramer

if TYPE_CHECKING:
    from slee.transport._transport import SipTransport

__all__: list[str] = []

logger = logging.getLogger("slee.transport")

_PONG = b"\r\n"


class TcpConnection(asyncio.Protocol):
    """A SIP flow over TCP, inbound (accepted) or outbound (opened by `SipTransport.send`).

    Uses a Protocol, not streams: `data_received` feeds the sans-IO framer directly, with no
    task per connection and no extra copy. Writes go straight to the asyncio transport; the
    bytes it holds for a peer that does not read are capped by `max_write_buffer`, beyond which
    the connection is closed rather than letting memory grow without bound.
    """

    def __init__(self, owner: SipTransport, connection_id: int, *, outbound: bool) -> None:
        self.owner = owner
        self.connection_id = connection_id
        self.outbound = outbound
        self.host = ""
        self.port = 0
        self.keys: list[tuple[str, int]] = []
        """Address-map keys that route to this connection (peer address, dialled name)."""
        self.transport: asyncio.Transport | None = None
        self.pending: list[tuple[bytes, object]] = []
        """(data, destination) queued while an outbound connect is in progress."""
        self.closed = asyncio.get_running_loop().create_future()
        self._framer = StreamFramer(max_message_size=owner.config.max_message_size)
        self._tail = b""
        """The bytes the framer holds (a partial message): what an error response needs."""
        self._last_activity = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._closing = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not every platform/socket allows it
                pass
        peer = transport.get_extra_info("peername")
        if peer is None:  # the socket died between accept and here
            transport.abort()
            return
        self.host, self.port = self.owner.normalize_address(peer)
        if not self.owner.connection_made(self):
            return
        self._touch()
        timeout = self.owner.config.tcp_idle_timeout
        if timeout > 0:
            self._idle_handle = asyncio.get_running_loop().call_later(timeout, self._check_idle)
        pending, self.pending = self.pending, []
        for data, destination in pending:
            self.owner.flush_pending(self, data, destination)

    def data_received(self, data: bytes) -> None:
        self._touch()
        self.owner.count("bytes_in", len(data))
        try:
            events = self._framer.feed(data)
        except Exception:  # a framer bug must cost one connection, not the transport
            logger.exception("SIP framer failed on connection %d; closing it", self.connection_id)
            self.abort()
            return
        try:
            self._handle(data, events)
        finally:
            self.owner.batch_end()

    def _handle(self, data: bytes, events: list[Any]) -> None:
        for index, event in enumerate(events):
            if self._closing:
                return
            if type(event) is MessageFramed:
                self.owner.stream_message_received(event.data, self)
            elif type(event) is KeepAliveReceived:
                self.owner.count("keepalives_in")
                if event.pong:  # RFC 5626 §3.5.1: CRLFCRLF ping -> CRLF pong
                    self.write(_PONG)
            elif type(event) is FramingFailed:
                partial = self._failed_message(data, events[:index])
                self.owner.framing_failed(self, event.status, event.reason, partial)
                self.close()
                return
        self._keep_tail(data)

    def _keep_tail(self, data: bytes) -> None:
        """Remember the bytes the framer still holds, for an error response built later.

        Costs nothing in the common case (whole messages per read: nothing is buffered).
        """
        buffered = self._framer.buffered
        if not buffered:
            self._tail = b""
        elif buffered <= len(data):
            self._tail = data[len(data) - buffered:]
        else:
            self._tail = (self._tail + data)[-buffered:]

    def _failed_message(self, data: bytes, before: list[object]) -> bytes:
        """The unframed bytes of the message framing gave up on (skip those framed first)."""
        stream = self._tail + data
        self._tail = b""
        offset = 0
        for event in before:
            if type(event) is MessageFramed:
                found = stream.find(event.data, offset)
                if found >= 0:
                    offset = found + len(event.data)
        return stream[offset:].lstrip(b"\r\n")

    def eof_received(self) -> bool:
        return False  # half-closed SIP flows are useless: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.owner.connection_lost(self, exc)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- used by SipTransport --------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Queue data; False (and the connection closed) when the peer stopped reading."""
        transport = self.transport
        if transport is None:
            return False
        if self._closing or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(data) > self.owner.config.max_write_buffer:
            logger.warning(
                "SIP TCP connection %d to %s:%d exceeded the %d-byte write buffer; closing it",
                self.connection_id, self.host, self.port, self.owner.config.max_write_buffer,
            )
            self.owner.count("write_overflows")
            self.abort()
            return False
        transport.write(data)
        self.owner.count("bytes_out", len(data))
        self._touch()
        return True

    def close(self) -> None:
        """Close after flushing what is queued."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what is queued (stalled or hostile peer)."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self._closing

    # -- internals ---------------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def _check_idle(self) -> None:
        timeout = self.owner.config.tcp_idle_timeout
        idle = asyncio.get_running_loop().time() - self._last_activity
        if idle >= timeout:
            logger.debug("closing idle SIP TCP connection %d to %s:%d",
                         self.connection_id, self.host, self.port)
            self.owner.count("idle_closes")
            self.close()
            self._idle_handle = None
        else:  # re-arm for the remainder instead of on every packet: one timer per connection
            self._idle_handle = asyncio.get_running_loop().call_later(
                timeout - idle, self._check_idle
            )

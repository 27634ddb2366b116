"""A small asyncio SIP peer for loopback end-to-end tests.

It plays a phone (``SipTestClient.connect``) or a remote server (``SipTestClient.listen``)
over real UDP or TCP sockets: send raw bytes or a message, await the next request or
response with a timeout, and optionally answer requests automatically (a phone answers the
NOTIFYs of its subscriptions with 200). TCP input is framed with the project's own
StreamFramer, so CRLF keep-alive pongs and server-side closes are observable too.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from slee.sip._errors import SipParseError
from slee.sip._framing import FramingFailed, KeepAliveReceived, MessageFramed, StreamFramer
from slee.sip._message import Request, Response, make_response
from slee.sip._parser import parse_message

__all__ = ["Received", "SipTestClient", "build_request"]

DEFAULT_TIMEOUT = 5.0
_counter = itertools.count(1)


@dataclass
class Received:
    """One message the client got, with where it came from (for replies)."""

    message: Request | Response
    data: bytes
    address: tuple[str, int]
    connection: _Stream | None = field(default=None, repr=False)


def build_request(
    method: str,
    uri: str,
    *,
    transport: str = "UDP",
    via_host: str = "127.0.0.1",
    via_port: int = 5060,
    from_uri: str = "sip:alice@example.com",
    to_uri: str | None = None,
    from_tag: str | None = None,
    to_tag: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    rport: bool = True,
    contact: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    max_forwards: int = 70,
) -> bytes:
    """The bytes of a well-formed request, with Content-Length computed from the body."""
    host = f"[{via_host}]" if ":" in via_host else via_host
    branch = branch or f"z9hG4bK-{uuid.uuid4().hex[:16]}"
    via = f"SIP/2.0/{transport.upper()} {host}:{via_port};branch={branch}"
    if rport:
        via += ";rport"
    to = f"<{to_uri or from_uri}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag={from_tag or uuid.uuid4().hex[:10]}",
        f"To: {to}",
        f"Call-ID: {call_id or uuid.uuid4().hex}@test",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Stream(asyncio.Protocol):
    """One TCP connection of the test client, framed like the server frames."""

    def __init__(self, owner: SipTestClient) -> None:
        self.owner = owner
        self.framer = StreamFramer(max_message_size=1 << 20)
        self.transport: asyncio.Transport | None = None
        self.address: tuple[str, int] = ("", 0)
        self.closed = asyncio.get_running_loop().create_future()
        self.raw = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.address = (peer[0], peer[1])
        self.owner._streams.append(self)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        for event in self.framer.feed(data):
            if isinstance(event, MessageFramed):
                self.owner._deliver(event.data, self.address, self)
            elif isinstance(event, KeepAliveReceived):
                self.owner.pongs += 1
                self.owner._notify()
            elif isinstance(event, FramingFailed):
                self.owner.unparsed.append(bytes(self.raw))
                self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner._notify()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTestClient) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.owner.datagrams.append(data)
        self.owner._deliver(data, (addr[0], addr[1]), None)


class SipTestClient:
    """A SIP peer on loopback. Use ``connect`` (client) or ``listen`` (server), then ``close``.

    ``auto_answer`` maps a method to a status: matching requests are answered at once
    (and still queued, so the test can inspect them).
    """

    def __init__(self, transport: str, auto_answer: dict[str, int] | None = None) -> None:
        self.transport = transport.lower()
        if self.transport not in ("udp", "tcp"):
            raise ValueError(f"unsupported test transport {transport!r}")
        self.auto_answer = dict(auto_answer or {})
        self.received: list[Received] = []
        """Every message received, in order, including those already taken by receive()."""
        self.unparsed: list[bytes] = []
        self.datagrams: list[bytes] = []
        self.pongs = 0
        self.remote: tuple[str, int] | None = None
        self._inbox: list[Received] = []
        self._arrived = asyncio.Event()
        self._streams: list[_Stream] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._local: tuple[str, int] = ("", 0)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    async def connect(cls, transport: str, host: str, port: int, *,
                      auto_answer: dict[str, int] | None = None,
                      timeout: float = DEFAULT_TIMEOUT) -> SipTestClient:
        """A client talking to host:port (UDP from an ephemeral port, or one TCP connection)."""
        client = cls(transport, auto_answer)
        client.remote = (host, port)
        loop = asyncio.get_running_loop()
        local_host = "::1" if ":" in host else "127.0.0.1"
        if client.transport == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(client), local_addr=(local_host, 0))
            client._udp = udp
            client._local = udp.get_extra_info("sockname")[:2]
        else:
            async with asyncio.timeout(timeout):
                transport_, _ = await loop.create_connection(lambda: _Stream(client), host, port)
            client._local = transport_.get_extra_info("sockname")[:2]
        return client

    @classmethod
    async def listen(cls, transport: str, host: str = "127.0.0.1", port: int = 0, *,
                     auto_answer: dict[str, int] | None = None) -> SipTestClient:
        """A server on host:port (0 = ephemeral) that records what it is sent."""
        client = cls(transport, auto_answer)
        loop = asyncio.get_running_loop()
        if client.transport == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(client), local_addr=(host, port))
            client._udp = udp
            client._local = udp.get_extra_info("sockname")[:2]
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            client._server = await loop.create_server(
                lambda: _Stream(client), host, port, family=family)
            client._local = client._server.sockets[0].getsockname()[:2]
        return client

    @property
    def local_host(self) -> str:
        return self._local[0]

    @property
    def local_port(self) -> int:
        return self._local[1]

    # -- sending -----------------------------------------------------------------------------

    def request_bytes(self, method: str, uri: str, **kwargs: object) -> bytes:
        """`build_request` with the Via sent-by set to this client's own address."""
        kwargs.setdefault("transport", self.transport.upper())
        kwargs.setdefault("via_host", self.local_host)
        kwargs.setdefault("via_port", self.local_port)
        return build_request(method, uri, **kwargs)  # type: ignore[arg-type]

    def send(self, data: bytes | Request | Response, to: tuple[str, int] | None = None) -> None:
        """Send bytes or a message: UDP to ``to`` (default the remote), TCP on the connection."""
        if not isinstance(data, bytes | bytearray):
            data = data.to_bytes()
        if self._udp is not None:
            address = to or self.remote
            if address is None:
                raise RuntimeError("no destination: pass to=(host, port)")
            self._udp.sendto(bytes(data), address)
            return
        stream = self._stream_for(to)
        assert stream.transport is not None
        stream.transport.write(bytes(data))

    async def send_slowly(self, data: bytes, chunk: int = 1) -> None:
        """Write ``chunk`` bytes at a time, yielding between writes (partial-write test)."""
        stream = self._stream_for(None)
        assert stream.transport is not None
        for start in range(0, len(data), chunk):
            stream.transport.write(data[start:start + chunk])
            await asyncio.sleep(0)

    def reply(self, received: Received, status: int, reason: str | None = None, *,
              to_tag: str | None = None) -> Response:
        """Answer a received request where it came from (RFC 3261 §18.2.2, simplified)."""
        assert isinstance(received.message, Request)
        response = make_response(received.message, status, reason,
                                 to_tag=to_tag or f"t{next(_counter)}")
        self._send_to(received, response.to_bytes())
        return response

    # -- receiving ---------------------------------------------------------------------------

    async def receive(self, predicate: Callable[[Received], bool] | None = None, *,
                      timeout: float = DEFAULT_TIMEOUT) -> Received:
        """The next queued message matching ``predicate``; TimeoutError when none arrives."""
        async with asyncio.timeout(timeout):
            while True:
                for index, item in enumerate(self._inbox):
                    if predicate is None or predicate(item):
                        del self._inbox[index]
                        return item
                self._arrived.clear()
                await self._arrived.wait()

    async def receive_request(self, method: str | None = None, *,
                              timeout: float = DEFAULT_TIMEOUT) -> Request:
        item = await self.receive(
            lambda r: isinstance(r.message, Request)
            and (method is None or r.message.method == method), timeout=timeout)
        return item.message  # type: ignore[return-value]

    async def receive_response(self, status: int | None = None, *,
                               timeout: float = DEFAULT_TIMEOUT) -> Response:
        item = await self.receive(
            lambda r: isinstance(r.message, Response)
            and (status is None or r.message.status == status), timeout=timeout)
        return item.message  # type: ignore[return-value]

    async def wait_pongs(self, count: int = 1, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``count`` keep-alive CRLFs arrived on TCP."""
        async with asyncio.timeout(timeout):
            while self.pongs < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_closed(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the other side closed our (first) TCP connection."""
        if not self._streams:
            raise RuntimeError("no TCP connection")
        await asyncio.wait_for(asyncio.shield(self._streams[0].closed), timeout)

    @property
    def connections(self) -> int:
        """How many TCP connections this peer has had (accepted or opened)."""
        return len(self._streams)

    def is_closed(self) -> bool:
        return bool(self._streams) and self._streams[0].closed.done()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for stream in self._streams:
            if stream.transport is not None:
                stream.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.sleep(0)

    async def __aenter__(self) -> SipTestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------------

    def _stream_for(self, to: tuple[str, int] | None) -> _Stream:
        open_streams = [s for s in self._streams if not s.closed.done()]
        if to is not None:
            open_streams = [s for s in open_streams if s.address[:2] == tuple(to)]
        if not open_streams:
            raise ConnectionError("no open TCP connection to send on")
        return open_streams[-1]

    def _send_to(self, received: Received, data: bytes) -> None:
        if received.connection is not None:
            assert received.connection.transport is not None
            received.connection.transport.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, received.address)

    def _deliver(self, data: bytes, address: tuple[str, int], stream: _Stream | None) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            self.unparsed.append(data)
            self._notify()
            return
        item = Received(message, data, address, stream)
        if isinstance(message, Request) and message.method in self.auto_answer:
            self.reply(item, self.auto_answer[message.method])
        self.received.append(item)
        self._inbox.append(item)
        self._notify()

    def _notify(self) -> None:
        self._arrived.set()

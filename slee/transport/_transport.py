"""SipTransport: the only SIP code that touches sockets (RFC 3261 §18).

Everything above it (transactions, the resource adaptor) sees parsed messages and `Peer`
addresses; everything below it is asyncio. No task runs per message or per connection: the
container's event loop calls the protocols, which call `on_message` synchronously.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from sys import intern
from typing import Any

from slee.sip._addressing import Peer, apply_received, response_destination
from slee.sip._errors import SipParseError
from slee.sip._message import Request, Response
from slee.sip._parser import parse_message
from slee.sip._validate import error_response
from slee.transport._config import TransportConfig
from slee.transport._shard import ShardConfig, WorkerMesh, owner_of, spread_datagrams
from slee.transport._steer import steer_datagrams
from slee.transport._stun import is_stun, stun_binding_response
from slee.transport._tcp import TcpConnection
from slee.transport._udp import UdpEndpoint

__all__ = ["MessageHandler", "SipTransport", "TransportErrorHandler"]

logger = logging.getLogger("slee.transport")

MessageHandler = Callable[[Request | Response, Peer], None]
TransportErrorHandler = Callable[[Peer, Exception], None]

_WILDCARDS = ("0.0.0.0", "::", "")
_STAT_NAMES = (
    "udp_datagrams_in", "udp_datagrams_out", "tcp_messages_in", "tcp_messages_out",
    "messages_in", "messages_out", "parse_errors", "error_responses_sent", "keepalives_in",
    "stun_requests", "handler_errors", "send_errors", "udp_errors", "connections_accepted",
    "connections_refused", "connections_outbound", "connect_failures", "write_overflows",
    "idle_closes", "bytes_in", "bytes_out", "handed_over", "taken_over", "sent_for_worker",
    "sent_by_worker",
)
_REMOTE_FLOWS_MAX = 100_000
_STREAM_TRANSPORTS = frozenset({"tcp"})
_NOT_SHED = frozenset({"ACK", "CANCEL"})  # never dropped on the way to a busy owner


class SipTransport:
    """UDP and TCP listeners on one port, plus the outbound TCP connections (RFC 3261 §18).

    ``on_message(message, source)`` receives every parsed request and response. Requests
    already carry ``received``/``rport`` on their top Via (RFC 3261 §18.2.1, RFC 3581 §4).
    Unparseable requests are answered here with the error response and never delivered;
    unparseable responses are dropped (RFC 3261 §18.1.2).

    ``on_transport_error(destination, exc)``, when set, hears about sends that failed
    (connect refused or timed out, a peer that stopped reading, an unreachable network), so
    the transaction layer can fail fast instead of waiting for Timer B/F (RFC 3261 §17.1.4).
    """

    def __init__(self, config: TransportConfig, on_message: MessageHandler) -> None:
        self.config = config
        self.on_message = on_message
        self.on_transport_error: TransportErrorHandler | None = None
        self.on_batch_end: Callable[[], None] | None = None
        self._stats: dict[str, int] = dict.fromkeys(_STAT_NAMES, 0)
        self._udp: UdpEndpoint | None = None
        self._udp_sock: socket.socket | None = None
        self._udp_family = socket.AF_INET
        self._server: asyncio.Server | None = None
        self._listening: list[Peer] = []
        self._connections: dict[int, TcpConnection] = {}
        self._by_address: dict[tuple[str, int], TcpConnection] = {}
        self._connecting: set[TcpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_connection_id = 1
        self._started = False
        self._closed = False
        self._guessed_host: str | None = None
        shard = config.shard
        self._shard = shard if shard is not None and shard.count > 1 else None
        self._mesh: WorkerMesh | None = None
        self._remote_flows: dict[tuple[str, int], int] = {}
        """TCP peers whose connection another worker holds: (host, port) -> that worker."""
        self._udp_peers: dict[tuple[str, int], Peer] = {}
        """One Peer per recent UDP source (see udp_peer)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the configured sockets; raises OSError naming the address on failure."""
        if self._started:
            raise RuntimeError("SipTransport already started")
        self._started = True
        loop = asyncio.get_running_loop()
        host, port = self.config.host, self.config.port
        family = _family_of(host)
        attempts = 20 if (port == 0 and self.config.udp and self.config.tcp) else 1
        for attempt in range(attempts):
            tcp_sock = udp_sock = None
            try:
                if self.config.tcp:
                    tcp_sock = _bind(family, socket.SOCK_STREAM, host, port, "TCP",
                                     reuse_port=self._shard is not None)
                    tcp_sock.listen(self.config.tcp_backlog)
                    port = tcp_sock.getsockname()[1]
                inherited = _claim_inherited_udp(self._shard)
                if inherited is not None and not (self.config.udp and _serves(inherited, family, host, port)):
                    inherited.close()  # not this transport's address: bind as without it
                    inherited = None
                if inherited is not None:
                    udp_sock = inherited
                    _set_buffers(udp_sock, self.config.udp_buffer)
                elif self.config.udp:
                    udp_sock = _bind(family, socket.SOCK_DGRAM, host, port, "UDP", self.config.udp_buffer,
                                     reuse_port=self._shard is not None)
                    port = udp_sock.getsockname()[1]
                    if self._shard is not None and self._shard.count > 1:
                        spread_datagrams(udp_sock, self._shard.count)
            except OSError as exc:
                for sock in (tcp_sock, udp_sock):
                    if sock is not None:
                        sock.close()
                if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    port = 0  # the ephemeral TCP port was taken for UDP: pick another pair
                    continue
                self._started = False
                raise
            break
        if self._shard is not None:
            self._mesh = WorkerMesh(self._shard, self._handed_over, self.batch_end)
            await self._mesh.start()
        if tcp_sock is not None:
            self._server = await loop.create_server(
                self._accept_factory, sock=tcp_sock, backlog=self.config.tcp_backlog
            )
            self._listening.append(Peer("tcp", _sockname_host(tcp_sock), port, None))
        if udp_sock is not None:
            self._udp_sock = udp_sock
            self._udp_family = udp_sock.family
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: UdpEndpoint(self), sock=udp_sock
            )
            self._udp = endpoint
            self._listening.insert(0, Peer("udp", _sockname_host(udp_sock), port, None))
        logger.info("SIP transport listening on %s",
                    ", ".join(f"{p.transport}:{_hostport(p.host, p.port)}"
                              for p in self._listening))

    async def close(self) -> None:
        """Stop listening, flush and close every connection, cancel pending connects."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        connections = list(self._connections.values()) + list(self._connecting)
        for connection in connections:
            connection.close()
        waiting = [c.closed for c in connections if c.transport is not None]
        if waiting:
            _, still_open = await asyncio.wait(waiting, timeout=2.0)
            for connection in connections:
                if connection.closed in still_open:
                    connection.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        self._udp = None
        self._udp_sock = None
        if self._mesh is not None:
            await self._mesh.close()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run

    # -- introspection -----------------------------------------------------------------------

    @property
    def listening(self) -> list[Peer]:
        """The bound addresses, with the actual port after binding port 0."""
        return list(self._listening)

    @property
    def port(self) -> int:
        """The bound port (UDP and TCP share it)."""
        if not self._listening:
            raise RuntimeError("SipTransport not started")
        return self._listening[0].port

    @property
    def advertised_host(self) -> str:
        """The host for Via sent-by and Contact: configured, else the bound address."""
        if self.config.advertised_host:
            return self.config.advertised_host
        host = self._listening[0].host if self._listening else self.config.host
        if host in _WILDCARDS:
            if self._guessed_host is None:
                self._guessed_host = _primary_address(_family_of(host))
                logger.warning("SIP transport bound to %s without advertised_host; "
                               "advertising %s", host, self._guessed_host)
            return self._guessed_host
        return host

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start (a copy); ``connections_open`` is the current count."""
        stats = dict(self._stats)
        stats["connections_open"] = len(self._connections)
        if self._mesh is not None:
            stats["worker_frames_dropped"] = self._mesh.stats["frames_dropped"]
            stats["worker_requests_shed"] = self._mesh.stats["requests_shed"]
        return stats

    def connection_for(self, host: str, port: int) -> int | None:
        """The id of an open TCP connection to (host, port), e.g. the one a client used."""
        connection = self._by_address.get((_normalize_host(host), port))
        if connection is None or not connection.is_open:
            return None
        return connection.connection_id

    def close_connection(self, connection_id: int) -> bool:
        """Close one TCP connection after flushing (RFC 5626 flow teardown); False if unknown."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.close()
        return True

    # -- sending -----------------------------------------------------------------------------

    def send_message(self, message: Request | Response, destination: Peer) -> None:
        """Serialise and send; see `send`.

        A response whose request connection has closed goes to a new connection to the
        Via's received address and sent-by port, not to the client's old ephemeral port
        (RFC 3261 §18.2.2).
        """
        connection_id = destination.connection_id
        if (
            connection_id is not None
            and isinstance(message, Response)
            and connection_id not in self._connections
        ):
            destination = response_destination(message)
        self.send(message.to_bytes(), destination)

    def send(self, data: bytes, destination: Peer) -> None:
        """Send bytes to a peer; failures go to ``on_transport_error``, never raise.

        UDP: one datagram. TCP: the connection ``destination.connection_id`` if still open
        (RFC 3261 §18.2.2: responses go back over the connection the request came on), else
        an open connection to (host, port) (RFC 5923-style reuse of the connection a client
        registered over), else a new outbound connection, the data queued until connected.
        """
        if not self._started or self._closed:
            raise RuntimeError("SipTransport is not running")
        kind = destination.transport.lower()
        if kind == "udp":
            self._send_udp(data, destination)
        elif kind in _STREAM_TRANSPORTS and self.config.tcp:
            self._send_stream(data, destination)
        else:
            self._fail(destination, OSError(
                errno.EPROTONOSUPPORT, f"SIP transport {destination.transport!r} not enabled"))

    def _send_udp(self, data: bytes, destination: Peer) -> None:
        sock = self._udp_sock
        endpoint = self._udp
        if sock is None or endpoint is None or endpoint.transport is None:
            self._fail(destination, OSError(errno.EPROTONOSUPPORT, "UDP transport not enabled"))
            return
        host = destination.host
        version = _ip_version(host)
        if version is None:  # a name: resolve off the loop's thread, then send
            self._spawn(self._resolve_and_send_udp(data, destination))
            return
        if version == 4 and self._udp_family == socket.AF_INET6:
            host = f"::ffff:{host}"  # dual-stack socket: IPv4-mapped destination
        elif version == 6 and self._udp_family == socket.AF_INET:
            self._fail(destination, OSError(
                errno.EAFNOSUPPORT, f"cannot send to IPv6 {host} from an IPv4 socket"))
            return
        address = (host, destination.port)
        transport = endpoint.transport
        if transport.get_write_buffer_size() == 0:
            # Fast path straight to the socket, so an immediate error (no route, message too
            # long) is reported against its destination rather than lost in error_received.
            try:
                sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                transport.sendto(data, address)
            except OSError as exc:
                self._fail(destination, exc)
                return
        elif transport.get_write_buffer_size() + len(data) > self.config.max_write_buffer:
            self._fail(destination, OSError(errno.ENOBUFS, "UDP send buffer full"))
            return
        else:
            transport.sendto(data, address)  # keep order behind what is already queued
        self._stats["udp_datagrams_out"] += 1
        self._stats["messages_out"] += 1
        self._stats["bytes_out"] += len(data)

    async def _resolve_and_send_udp(self, data: bytes, destination: Peer) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET if self._udp_family == socket.AF_INET else socket.AF_UNSPEC
        try:
            infos = await loop.getaddrinfo(destination.host, destination.port,
                                           family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            self._fail(destination, exc)
            return
        if self._closed:
            return
        ip = infos[0][4][0]
        self._send_udp(data, Peer("udp", ip, destination.port, None))

    def _send_stream(self, data: bytes, destination: Peer, allow_handover: bool = True) -> None:
        connection = None
        if destination.connection_id is not None:
            connection = self._connections.get(destination.connection_id)
            if connection is not None and not connection.is_open:
                connection = None
        if connection is None:
            connection = self._by_address.get((_normalize_host(destination.host),
                                               destination.port))
            if connection is not None and connection.transport is not None \
                    and not connection.is_open:
                connection = None
        if connection is None:
            worker = self._remote_flows.get((_normalize_host(destination.host), destination.port))
            if worker is not None and self._mesh is not None and allow_handover:
                # Another worker holds the client's connection (it received the request).
                self._stats["sent_by_worker"] += 1
                self._mesh.send(worker, "out", destination, data)
                return
            self._connect(data, destination)
            return
        if connection.transport is None:  # still connecting: queue behind the others
            queued = sum(len(item[0]) for item in connection.pending)
            if queued + len(data) > self.config.max_write_buffer:
                self._fail(destination, OSError(errno.ENOBUFS, "too much queued while "
                                                "connecting to " + _hostport(
                                                    destination.host, destination.port)))
                return
            connection.pending.append((data, destination))
            return
        self.flush_pending(connection, data, destination)

    def flush_pending(self, connection: TcpConnection, data: bytes, destination: Peer) -> None:
        """Write to a connected flow, reporting a refused write against its destination."""
        if connection.write(data):
            self._stats["tcp_messages_out"] += 1
            self._stats["messages_out"] += 1
        else:
            self._fail(destination, ConnectionResetError(
                errno.ECONNRESET, f"SIP TCP connection to "
                f"{_hostport(connection.host, connection.port)} closed"))

    def _connect(self, data: bytes, destination: Peer) -> None:
        if len(self._connections) + len(self._connecting) >= self.config.max_connections:
            self._fail(destination, OSError(
                errno.EMFILE, f"max_connections ({self.config.max_connections}) reached"))
            return
        connection = TcpConnection(self, self._allocate_id(), outbound=True)
        connection.pending.append((data, destination))
        key = (_normalize_host(destination.host), destination.port)
        connection.keys.append(key)
        self._by_address[key] = connection
        self._connecting.add(connection)
        self._stats["connections_outbound"] += 1
        self._spawn(self._open(connection, destination))

    async def _open(self, connection: TcpConnection, destination: Peer) -> None:
        loop = asyncio.get_running_loop()
        local_host = self._listening[0].host if self._listening else self.config.host
        local_addr = None if local_host in _WILDCARDS else (local_host, 0)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await loop.create_connection(
                    lambda: connection, destination.host, destination.port,
                    local_addr=local_addr,
                )
        except (OSError, TimeoutError) as exc:
            self._connecting.discard(connection)
            self._forget_keys(connection)
            self._stats["connect_failures"] += 1
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"connect to {_hostport(destination.host, destination.port)}"
                                   f" timed out after {self.config.connect_timeout}s")
            logger.info("SIP TCP connect to %s failed: %s",
                        _hostport(destination.host, destination.port), exc)
            pending, connection.pending = connection.pending, []
            for _data, queued_destination in pending:
                self._fail(queued_destination, exc)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._connecting.discard(connection)
            self._forget_keys(connection)
            if connection.transport is not None:
                connection.abort()
            raise

    # -- called by the protocols -------------------------------------------------------------

    def batch_end(self) -> None:
        """Every message of one read (a burst of datagrams, a TCP read, hand-off frames) has
        gone to ``on_message``: the receiver may act on them together now."""
        callback = self.on_batch_end
        if callback is not None:
            try:
                callback()
            except Exception:
                self._stats["handler_errors"] += 1
                logger.exception("SIP batch-end handler failed")

    def count(self, name: str, amount: int = 1) -> None:
        self._stats[name] += amount

    def normalize_address(self, address: tuple[Any, ...]) -> tuple[str, int]:
        return _normalize_host(address[0]), address[1]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        stats = self._stats
        stats["udp_datagrams_in"] += 1
        stats["bytes_in"] += len(data)
        host, port = intern(_normalize_host(addr[0])), addr[1]  # shared by transactions' Peers
        first = data[:1]
        if first in (b"\x00", b"\x01") and is_stun(data):
            stats["stun_requests"] += 1
            answer = stun_binding_response(data, host, port)
            if answer is not None and self._udp is not None and self._udp.transport:
                self._udp.transport.sendto(answer, addr)
            return
        if not data.strip(b"\r\n \t"):
            stats["keepalives_in"] += 1  # RFC 5626 §4.4.1 style CRLF keep-alive on UDP
            return
        stats["messages_in"] += 1
        self._dispatch(data, self.udp_peer(host, port), datagram=True)

    def udp_peer(self, host: str, port: int) -> Peer:
        """The Peer of a UDP source, shared by its messages while it is recent.

        Every transaction and dialog keeps where its request came from. A client's
        registrations, subscriptions and their refreshes come from one address, and behind
        a proxy everything does: one Peer instead of one per message (72 bytes plus the
        port, for 32 s per completed transaction and for the life of every dialog). The
        table is bounded: past ``_UDP_PEERS_MAX`` sources it starts over.
        """
        key = (host, port)
        peers = self._udp_peers
        peer = peers.get(key)
        if peer is None:
            if len(peers) >= _UDP_PEERS_MAX:
                peers.clear()
            peer = peers[key] = Peer("udp", host, port, None)
        return peer

    def stream_message_received(self, data: bytes, connection: TcpConnection) -> None:
        self._stats["tcp_messages_in"] += 1
        self._stats["messages_in"] += 1
        source = Peer("tcp", connection.host, connection.port, connection.connection_id)
        self._dispatch(data, source, datagram=False)

    def framing_failed(self, connection: TcpConnection, status: int, reason: str,
                       partial: bytes) -> None:
        """The stream cannot be resynchronised: answer if possible; the caller closes it."""
        self._stats["parse_errors"] += 1
        logger.info("SIP framing failed on TCP connection %d from %s: %d %s",
                    connection.connection_id, _hostport(connection.host, connection.port),
                    status, reason)
        if not status:
            return
        source = Peer("tcp", connection.host, connection.port, connection.connection_id)
        self._answer_error(partial, SipParseError(reason, status, reason=reason), source)

    def connection_made(self, connection: TcpConnection) -> bool:
        """Register a connected flow; False (and aborted) when over max_connections."""
        if connection.outbound:
            self._connecting.discard(connection)
        elif (len(self._connections) + len(self._connecting) >= self.config.max_connections
              or self._closed):
            self._stats["connections_refused"] += 1
            logger.warning("refusing SIP TCP connection from %s: max_connections (%d) reached",
                           _hostport(connection.host, connection.port),
                           self.config.max_connections)
            connection.abort()
            return False
        else:
            self._stats["connections_accepted"] += 1
        if self._closed:
            connection.abort()
            return False
        self._connections[connection.connection_id] = connection
        key = (connection.host, connection.port)
        if key not in connection.keys:
            connection.keys.append(key)
        for key in connection.keys:
            self._by_address[key] = connection
        return True

    def connection_lost(self, connection: TcpConnection, exc: Exception | None) -> None:
        self._connections.pop(connection.connection_id, None)
        self._connecting.discard(connection)
        self._forget_keys(connection)
        pending, connection.pending = connection.pending, []
        for _data, destination in pending:
            self._fail(destination, exc or ConnectionResetError("connection closed"))  # type: ignore[arg-type]

    # -- internals ---------------------------------------------------------------------------

    def _accept_factory(self) -> TcpConnection:
        return TcpConnection(self, self._allocate_id(), outbound=False)

    def _allocate_id(self) -> int:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        return connection_id

    def _forget_keys(self, connection: TcpConnection) -> None:
        for key in connection.keys:
            if self._by_address.get(key) is connection:
                del self._by_address[key]

    def _dispatch(self, data: bytes, source: Peer, *, datagram: bool, mine: bool = False) -> None:
        try:
            message = parse_message(data, datagram=datagram,
                                    max_size=self.config.max_message_size)
            shard = self._shard
            if shard is not None and not mine:
                owner = owner_of(message, shard.count, shard.owner_hash)
                if owner is not None and owner != shard.index:
                    # A new request over UDP may be shed when the owner is behind (its
                    # client retransmits; over TCP none would); responses and in-dialog
                    # requests carry work already done (a NOTIFY's 200, a refresh).
                    self._hand_over(owner, data, source, sheddable=datagram and isinstance(message, Request)
                                    and not message.to_tag and message.method not in _NOT_SHED)
                    return
            if isinstance(message, Request):
                apply_received(message, source)  # RFC 3261 §18.2.1, RFC 3581 §4
        except SipParseError as exc:
            self._stats["parse_errors"] += 1
            if exc.is_response or not exc.status:
                logger.debug("dropping malformed SIP message from %s: %s",
                             _hostport(source.host, source.port), exc.reason)
                return
            self._answer_error(data, exc, source)
            return
        try:
            self.on_message(message, source)
        except Exception:
            self._stats["handler_errors"] += 1
            logger.exception("SIP message handler failed on a message from %s",
                             _hostport(source.host, source.port))

    def _hand_over(self, owner: int, data: bytes, source: Peer, *, sheddable: bool = False) -> None:
        """Give a message to the worker that owns it, with where it came from."""
        assert self._mesh is not None
        self._stats["handed_over"] += 1
        self._mesh.send(owner, "in", source, data, sheddable=sheddable)

    def _handed_over(self, op: str, origin: int, peer: Peer, data: bytes) -> None:
        """A frame from another worker: a message it received for us, or a send it asks for."""
        if op == "in":
            self._stats["taken_over"] += 1
            if peer.transport in _STREAM_TRANSPORTS:
                flows = self._remote_flows
                if len(flows) >= _REMOTE_FLOWS_MAX:
                    del flows[next(iter(flows))]  # oldest first; a stale entry only costs a connect
                flows[(peer.host, peer.port)] = origin
            udp = peer.transport == "udp"
            if udp:
                peer = self.udp_peer(intern(peer.host), peer.port)
            self._dispatch(data, peer, datagram=udp, mine=True)
        elif op == "out" and not self._closed:  # only stream sends are handed over
            self._stats["sent_for_worker"] += 1
            self._send_stream(data, peer, allow_handover=False)

    def _answer_error(self, data: bytes, error: SipParseError, source: Peer) -> None:
        try:
            response = error_response(data, error)
            if response is None:
                return
            # The request never became a Request, so its Via was not stamped: stamp the
            # answer's copy, or a NATed client would never see it (RFC 3581 §4, §18.2.2).
            apply_received(response, source)  # type: ignore[arg-type]
            destination = response_destination(response, source=source)
            self.send_message(response, destination)
        except Exception:  # whatever is this broken gets no answer (RFC 3261 §18.2.1)
            logger.debug("no error response possible for a message from %s",
                         _hostport(source.host, source.port), exc_info=True)
            return
        self._stats["error_responses_sent"] += 1

    def _fail(self, destination: Peer, exc: Exception) -> None:
        self._stats["send_errors"] += 1
        handler = self.on_transport_error
        if handler is None:
            logger.info("SIP send to %s/%s failed: %s", destination.transport,
                        _hostport(destination.host, destination.port), exc)
            return
        try:
            handler(destination, exc)
        except Exception:
            logger.exception("SIP transport error handler failed")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_UDP_PEERS_MAX = 1024


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_udp_group(host: str, port: int, count: int, owner_hash: str) -> tuple[list[socket.socket], str]:
    """``count`` UDP sockets on one port, bound in order, so that socket ``i`` is slot ``i``
    of the port's SO_REUSEPORT group, for worker ``i`` to inherit. With the ``fnv1a`` owner
    hash the group's datagrams are steered to their owner (slee.transport._steer); else, or
    where the kernel refuses that program, spread at random (`spread_datagrams`). The caller
    keeps them open while its workers come and go, so the slots never move. Returns the
    sockets and how datagrams reach them: "steered", "random" or "hash"."""
    family = _family_of(host)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(_bind(family, socket.SOCK_DGRAM, host, port, "UDP", reuse_port=True))
        if owner_hash == "fnv1a":
            try:
                steer_datagrams(socks[0], count)
                return socks, "steered"
            except (OSError, ValueError) as exc:
                logger.warning("cannot steer datagrams to the worker owning them (%s): they are "
                               "spread at random and handed over", exc)
        spread = spread_datagrams(socks[0], count)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks, "random" if spread else "hash"


_claimed_fds: set[int] = set()


def _claim_inherited_udp(shard: ShardConfig | None) -> socket.socket | None:
    """The UDP socket the supervisor bound for this worker (its slot in the port's
    SO_REUSEPORT group, which steers datagrams to their owner: slee.transport._steer), the
    first time a transport of this process asks; after that (a restarted RA) None."""
    if shard is None or shard.udp_fd is None or shard.udp_fd in _claimed_fds:
        return None
    _claimed_fds.add(shard.udp_fd)
    try:
        sock = socket.socket(fileno=shard.udp_fd)
    except OSError as exc:
        logger.warning("the UDP socket inherited from the supervisor (fd %d) is unusable: %s",
                       shard.udp_fd, exc)
        return None
    sock.setblocking(False)
    return sock


def _serves(sock: socket.socket, family: socket.AddressFamily, host: str, port: int) -> bool:
    """Whether ``sock`` is bound where this transport would bind (an IP literal compared as
    an address; a name is taken on trust: the supervisor bound the same one)."""
    if sock.family != family or sock.type != socket.SOCK_DGRAM:
        return False
    bound_host, bound_port = sock.getsockname()[:2]
    if bound_port != port:
        return False
    try:
        return ipaddress.ip_address(bound_host) == ipaddress.ip_address(host)
    except ValueError:
        return True


def _set_buffers(sock: socket.socket, size: int) -> None:
    # See TransportConfig.udp_buffer: a queue of well under a second of traffic.
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass


def _bind(family: socket.AddressFamily, kind: socket.SocketKind, host: str, port: int,
          label: str, udp_buffer: int = 256 << 10, *, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if reuse_port:
            # Workers of one server share the port on purpose; the kernel hands datagrams
            # to their owner (or at random) and connections by address hash (slee.transport._shard).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM:
            _set_buffers(sock, udp_buffer)
        if kind == socket.SOCK_STREAM:
            # Restart without waiting out TIME_WAIT; never on UDP, where Linux would let a
            # second process share the port and split the traffic.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" serves IPv4 too where the OS allows (dual stack); a specific v6 address
            # is v6-only either way.
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
            except OSError:
                pass
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind SIP {label} transport to "
                                 f"{_hostport(host, port)}: {exc.strerror or exc}") from exc
    return sock


def _primary_address(family: socket.AddressFamily) -> str:
    """The source address the routing table picks for the outside world.

    Connecting a UDP socket only selects a route; nothing is sent. The targets are
    documentation addresses (RFC 5737, RFC 3849).
    """
    target = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            return _normalize_host(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1" if family == socket.AF_INET else "::1"


def _sockname_host(sock: socket.socket) -> str:
    return _normalize_host(sock.getsockname()[0])


def _normalize_host(host: str) -> str:
    """Canonical key for an address: v4-mapped v6 as plain v4, v6 compressed, names lowered."""
    if host.startswith("["):
        host = host[1:-1]
    if ":" in host:
        if host.startswith("::ffff:") and "." in host:
            return host[7:]
        try:
            return str(ipaddress.IPv6Address(host.split("%", 1)[0])) + (
                "%" + host.split("%", 1)[1] if "%" in host else "")
        except ValueError:
            return host.lower()
    return host.lower()


def _ip_version(host: str) -> int | None:
    """4 or 6 for an IP literal, None for a name (inet_pton: C speed on the send path)."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return 4
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        return 6
    except OSError:
        return None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

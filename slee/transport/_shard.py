"""Several worker processes on one SIP port: who owns a message, and the hand-off between them.

Every worker serves the same UDP and TCP port with SO_REUSEPORT. State lives per
address-of-record (a user's bindings, publications and watchers), so each AOR has one owner
worker, chosen by a stable hash. The kernel hands each datagram to its owner where a
steering program can tell it (`slee.transport._steer`), else to a random worker
(`spread_datagrams`), and each TCP connection to a worker by a hash of the addresses; a
message that arrives at another worker than its owner is handed to the owner over a Unix
stream socket, with the address it came from. The owner answers from its own socket on the
shared port, so the client sees one server. Responses find the worker that sent the request
by the worker number in the top Via branch (``z9hG4bK-w<N>-...``).

Who owns a request: REGISTER and in-dialog requests (To tag present) by the To URI, other
requests by the Request-URI; both reduce to ``user@host`` so REGISTER To, SUBSCRIBE/PUBLISH/
MESSAGE Request-URI and in-dialog To of one user agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slee.cluster import WorkerInfo
from slee.sip._addressing import Peer
from slee.sip._message import Request, Response
from slee.sip._uri import SipURI, parse_uri
from slee.transport._steer import aor_hash, attach_program, random_program

__all__ = ["BRANCH_PREFIX", "ShardConfig", "WorkerMesh", "branch_worker", "owner_of", "shard_of_uri",
           "spread_datagrams"]

logger = logging.getLogger("slee.transport")

BRANCH_PREFIX = "z9hG4bK-w"
_LENGTH = struct.Struct("!I")
_MAX_QUEUED = 32 << 20  # bytes queued for a worker that is not (yet) connected
SHED_QUEUED = 256 << 10
"""Bytes waiting for a connected worker beyond which new requests handed to it are dropped
(responses and requests inside a dialog still go, up to ``_MAX_QUEUED``): as much as a UDP
socket's receive buffer holds, a fraction of a second of work. Without it an owner that
fell behind could be handed seconds of requests (up to ``_MAX_QUEUED``), answered after
their clients had given up, while the worker that received them kept reading."""


ShardConfig = WorkerInfo
"""This transport is worker ``index`` of ``count`` on one port; ``run_dir`` holds the Unix
sockets the workers hand messages over (``w<index>.sock``)."""


def spread_datagrams(sock: socket.socket, count: int) -> bool:
    """Have the kernel hand each datagram of this SO_REUSEPORT group to a random one of its
    ``count`` sockets (a classic BPF program: a random number modulo ``count``), instead of
    by a hash of the addresses, which puts everything one source sends on one worker. A
    single source is common: an edge proxy or SBC in front of the server, or SIPp. That
    worker then read, parsed and handed over every message alone, and capped the group at
    what one process can receive. Used where the owner cannot be steered to
    (`slee.transport._steer`): a data dir whose owners are by crc32, or sockets bound by the
    workers themselves, whose order in the group changes when one restarts. False where
    the kernel refuses it (not Linux, or older than 4.5): the hash stays, which works,
    unevenly."""
    try:
        attach_program(sock, random_program(count))
    except OSError as exc:
        logger.warning("cannot spread datagrams over the workers at random (%s): the kernel "
                       "spreads them by address hash", exc)
        return False
    return True


def _socket_path(config: ShardConfig, index: int) -> str:
    return str(Path(config.run_dir) / f"w{index}.sock")


def shard_of_uri(uri: Any, count: int, owner_hash: str = "fnv1a") -> int:
    """The worker that owns the address-of-record of ``uri`` (the same in every process).

    ``fnv1a`` hashes ``user@host`` (``host`` alone without a user) as the kernel's steering
    program does (`slee.transport._steer`); ``crc32`` is the hash of data dirs laid out
    before it, kept so their users stay with the worker whose store holds them."""
    if count <= 1:
        return 0
    if isinstance(uri, str):
        uri = parse_uri(uri)
    if owner_hash == "crc32":
        key = f"{uri.user or ''}@{uri.host.lower()}" if isinstance(uri, SipURI) else str(uri)
        return zlib.crc32(key.encode("utf-8", "surrogateescape")) % count
    if isinstance(uri, SipURI):
        key = f"{uri.user}@{uri.host}" if uri.user else uri.host
    else:
        key = str(uri)
    return aor_hash(key.encode("utf-8", "surrogateescape")) % count


def branch_worker(branch: str | None) -> int | None:
    """The worker number a branch minted by `SipProvider.new_branch` carries, else None."""
    if not branch or not branch.startswith(BRANCH_PREFIX):
        return None
    end = branch.find("-", len(BRANCH_PREFIX))
    digits = branch[len(BRANCH_PREFIX):end]
    return int(digits) if end > 0 and digits.isdigit() else None


def owner_of(message: Request | Response, count: int, owner_hash: str = "fnv1a") -> int | None:
    """The worker that must handle ``message``; None when any worker may (stray responses)."""
    if isinstance(message, Response):
        worker = branch_worker(message.top_via.branch)
        return worker if worker is not None and worker < count else None
    if message.method == "REGISTER" or message.to_tag:
        return shard_of_uri(message.to.uri, count, owner_hash)
    return shard_of_uri(message.uri, count, owner_hash)


FrameHandler = Callable[[str, int, Peer, bytes], None]
"""(op, origin worker, peer, data): op "in" is a message origin received from peer; op "out"
asks this worker to send data to peer (over the TCP connection only it holds)."""


class _Link(asyncio.Protocol):
    """One Unix stream connection between two workers, either direction; length-prefixed frames."""

    def __init__(self, mesh: WorkerMesh) -> None:
        self.mesh = mesh
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = len(buffer)
        while size - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if size - offset - 4 < length:
                break
            start, offset = offset + 4, offset + 4 + length
            end = buffer.find(b"\n", start, offset)
            self.mesh._frame(bytes(buffer[start:end]) if end >= 0 else b"", bytes(buffer[end + 1:offset]))
        if offset:
            del buffer[:offset]
            self.mesh.batch_end()  # only when whole frames were handed on

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.mesh._lost(self)


class WorkerMesh:
    """Unix stream links to the other workers: ordered, lossless, connected on first use."""

    def __init__(self, config: ShardConfig, on_frame: FrameHandler,
                 on_batch_end: Callable[[], None] | None = None) -> None:
        self.config = config
        self.on_frame = on_frame
        self.on_batch_end = on_batch_end
        self._server: asyncio.AbstractServer | None = None
        self._out: dict[int, _Link] = {}
        self._queued: dict[int, list[bytes]] = {}
        self._queued_bytes: dict[int, int] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._inbound: set[_Link] = set()
        self.stats = {"frames_out": 0, "frames_in": 0, "frames_dropped": 0, "requests_shed": 0}

    async def start(self) -> None:
        path = _socket_path(self.config, self.config.index)
        Path(self.config.run_dir).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._accept, path)

    def _accept(self) -> _Link:
        link = _Link(self)
        self._inbound.add(link)
        return link

    async def close(self) -> None:
        for task in self._connecting.values():
            task.cancel()
        for link in list(self._out.values()) + list(self._inbound):
            if link.transport is not None:
                link.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_socket_path(self.config, self.config.index))
            self._server = None

    def send(self, worker: int, op: str, peer: Peer, data: bytes, *, sheddable: bool = False) -> None:
        """Queue one frame for ``worker``; connects first if needed. Never blocks or raises.

        ``sheddable`` (a new request): dropped instead while ``SHED_QUEUED`` bytes already wait
        for that worker, as a full UDP socket would drop it; its client retransmits."""
        link = self._out.get(worker)
        transport = link.transport if link is not None else None
        if transport is not None:
            queued = transport.get_write_buffer_size()
            if queued > SHED_QUEUED and (sheddable or queued > _MAX_QUEUED):
                # The owner is not keeping up: drop as a full UDP socket would; clients retransmit.
                self.stats["frames_dropped"] += 1
                self.stats["requests_shed"] += sheddable
                return
        header = f"{op} {self.config.index} {peer.transport} {peer.host} {peer.port}\n".encode()
        frame = b"".join((_LENGTH.pack(len(header) + len(data)), header, data))
        if transport is not None:
            transport.write(frame)
            self.stats["frames_out"] += 1
            return
        queued = self._queued_bytes.get(worker, 0) + len(frame)
        if queued > _MAX_QUEUED:
            self.stats["frames_dropped"] += 1
            return
        self._queued_bytes[worker] = queued
        self._queued.setdefault(worker, []).append(frame)
        if worker not in self._connecting:
            self._connecting[worker] = asyncio.get_running_loop().create_task(self._connect(worker))

    async def _connect(self, worker: int) -> None:
        loop = asyncio.get_running_loop()
        path = _socket_path(self.config, worker)
        try:
            for attempt in range(50):  # a worker still starting: retry for about 5 s
                try:
                    _, link = await loop.create_unix_connection(lambda: _Link(self), path)
                    break
                except OSError:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)
        except OSError as exc:
            self._queued_bytes.pop(worker, None)
            dropped = self._queued.pop(worker, [])
            self.stats["frames_dropped"] += len(dropped)
            logger.warning("worker %d: cannot reach worker %d at %s (%s); dropped %d message(s)",
                           self.config.index, worker, path, exc, len(dropped))
            return
        finally:
            self._connecting.pop(worker, None)
        self._out[worker] = link  # type: ignore[assignment]
        self._queued_bytes.pop(worker, None)
        for frame in self._queued.pop(worker, []):
            link.transport.write(frame)  # type: ignore[union-attr]
            self.stats["frames_out"] += 1

    def batch_end(self) -> None:
        if self.on_batch_end is not None:
            self.on_batch_end()

    def _lost(self, link: _Link) -> None:
        self._inbound.discard(link)
        for worker, out in list(self._out.items()):
            if out is link:
                del self._out[worker]

    def _frame(self, header: bytes, data: bytes) -> None:
        self.stats["frames_in"] += 1
        try:
            op, origin, transport, host, port = header.decode().split(" ")
            peer = Peer(transport, host, int(port), None)
        except ValueError:
            logger.error("worker %d: dropped a hand-off frame with a malformed header %r",
                         self.config.index, header[:80])
            return
        try:
            self.on_frame(op, int(origin), peer, data)
        except Exception:
            logger.exception("worker %d: handling a message handed over by worker %s failed",
                             self.config.index, origin)

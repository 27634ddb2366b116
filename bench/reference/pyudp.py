"""The ceiling for Python on this machine: the least a UDP SIP server can do, in asyncio.

It parses nothing but the headers it must echo, keeps registrations and presence state in
dicts, answers every request 200, sends the initial NOTIFY a SUBSCRIBE expects and, on a
PUBLISH, one NOTIFY per watcher of that presentity. No transactions, no retransmissions, no
validation: a real server can only be slower than this, so "ours / pyudp" says how much of
the interpreter's budget the SLEE spends. NOTIFYs go to the SUBSCRIBE's source address
(symmetric routing), not to its Contact.

Run: ``python bench/reference/pyudp.py [--host 127.0.0.1] [--port 5070]``; uses uvloop when
it is installed (bench/run.py records which loop ran).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import socket

_COMPACT = {
    b"v": b"via",
    b"f": b"from",
    b"t": b"to",
    b"i": b"call-id",
    b"m": b"contact",
    b"o": b"event",
    b"l": b"content-length",
    b"c": b"content-type",
}
_ECHO = (b"via", b"from", b"call-id", b"cseq")


class Responder(asyncio.DatagramProtocol):
    """Answers requests; remembers registrations, presentities and watchers in dicts."""

    def __init__(self, host: str, port: int) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._contact = f"Contact: <sip:pyudp@{host}:{port}>\r\n".encode()
        self._tags = itertools.count(1)
        self.bindings: dict[bytes, bytes] = {}
        self.presentities: dict[bytes, bytes] = {}
        # presentity -> list of [addr, call-id, local tag, remote From, cseq]
        self.watchers: dict[bytes, list[list]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        start = lines[0]
        if start.startswith(b"SIP/2.0"):
            return  # a response (200 to our NOTIFY): nothing to do
        method, _, rest = start.partition(b" ")
        ruri = rest.partition(b" ")[0]
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
        echo = [b"%s: %s\r\n" % (_canon(n), v) for n, v in headers if n in _ECHO]
        to = next((v for n, v in headers if n == b"to"), b"")
        extra = b""
        tag = b""
        if method == b"SUBSCRIBE" or method == b"PUBLISH" or method == b"REGISTER":
            if b";tag=" not in to:
                tag = b"%d" % next(self._tags)
                to = to + b";tag=" + tag
            extra = b"Expires: 3600\r\n" + self._contact
        if method == b"REGISTER":
            contact = next((v for n, v in headers if n == b"contact"), b"")
            self.bindings[_aor(to)] = contact
        elif method == b"PUBLISH":
            extra += b"SIP-ETag: e%s\r\n" % tag
        response = (
            b"SIP/2.0 200 OK\r\n"
            + b"".join(echo)
            + b"To: "
            + to
            + b"\r\n"
            + extra
            + b"Content-Length: 0\r\n\r\n"
        )
        self._transport.sendto(response, addr)
        if method == b"SUBSCRIBE":
            sender = next((v for n, v in headers if n == b"from"), b"")
            watcher = [addr, next((v for n, v in headers if n == b"call-id"), b""), to, sender, 1]
            self.watchers.setdefault(ruri, []).append(watcher)
            self._notify(watcher, self.presentities.get(ruri, b""))
        elif method == b"PUBLISH":
            self.presentities[ruri] = body
            for watcher in self.watchers.get(ruri, ()):
                self._notify(watcher, body)

    def _notify(self, watcher: list, body: bytes) -> None:
        addr, call_id, local, remote, cseq = watcher
        watcher[4] = cseq + 1
        kind = b"Content-Type: application/pidf+xml\r\n" if body else b""
        message = (
            b"NOTIFY sip:watcher@%s:%d SIP/2.0\r\n" % (addr[0].encode(), addr[1])
            + b"Via: SIP/2.0/UDP pyudp.invalid;branch=z9hG4bKpy%d\r\n" % next(self._tags)
            + b"Max-Forwards: 70\r\n"
            + b"From: "
            + local
            + b"\r\nTo: "
            + remote
            + b"\r\nCall-ID: "
            + call_id
            + b"\r\nCSeq: %d NOTIFY\r\n" % cseq
            + self._contact
            + b"Event: presence\r\nSubscription-State: active;expires=3600\r\n"
            + kind
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        self._transport.sendto(message, addr)


def _canon(name: bytes) -> bytes:
    return b"Call-ID" if name == b"call-id" else b"CSeq" if name == b"cseq" else name.title()


def _aor(to: bytes) -> bytes:
    start = to.find(b"<")
    return to[start + 1 : to.find(b">", start)] if start >= 0 else to.partition(b";")[0]


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((host, port))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Responder(host, sock.getsockname()[1]), sock=sock
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(f"pyudp listening on {host}:{sock.getsockname()[1]} pid {os.getpid()}", flush=True)
    try:
        await stop
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5070)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

"""The kernel steers each datagram to the worker owning it (slee.transport._steer).

A real SO_REUSEPORT group of loopback sockets with the program attached, as the supervisor
binds it: which socket a datagram reaches is the kernel's answer, compared with the owner
the Python parse assigns (`owner_of`, the authority).
"""

from __future__ import annotations

import random
import select
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from slee.sip._message import make_response
from slee.sip._parser import parse_message
from slee.transport import bind_udp_group, shard_of_uri
from slee.transport._shard import owner_of
from slee.transport._steer import STEER_WINDOWS, aor_hash, steering_program
from tests.support.sipclient import build_request

pytestmark = pytest.mark.timeout(30)


@contextmanager
def group(count: int, owner_hash: str = "fnv1a") -> Iterator[tuple[list[socket.socket], int]]:
    socks, _ = bind_udp_group("127.0.0.1", 0, 1, owner_hash)
    port = socks[0].getsockname()[1]
    for sock in socks:
        sock.close()
    socks, how = bind_udp_group("127.0.0.1", port, count, owner_hash)
    assert how == ("steered" if owner_hash == "fnv1a" else "random")
    try:
        yield socks, port
    finally:
        for sock in socks:
            sock.close()


def arrivals(socks: list[socket.socket], port: int, data: bytes) -> list[int]:
    """Indexes of the sockets the datagram reached (exactly one, or the test fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(data, ("127.0.0.1", port))
        ready, _, _ = select.select(socks, [], [], 2.0)
    got = [i for i, sock in enumerate(socks) if sock in ready]
    for i in got:
        assert socks[i].recv(65535) == data
    return got


def test_aor_hash_is_fnv1a_with_ascii_case_folded() -> None:
    assert aor_hash(b"a") == 0xE40C292C  # FNV-1a 32 reference vectors
    assert aor_hash(b"foobar") == 0xBF9CF968
    assert aor_hash(b"Alice@Example.COM") == aor_hash(b"alice@example.com")
    assert shard_of_uri("sip:Alice@Example.COM;transport=udp", 7) == aor_hash(b"alice@example.com") % 7
    assert shard_of_uri("sip:example.com:5060", 7) == aor_hash(b"example.com") % 7


def test_the_legacy_owner_hash_is_unchanged() -> None:
    # data dirs laid out before steering keep each user with the store that holds it
    assert shard_of_uri("sip:bob@Example.COM", 7, "crc32") == zlib.crc32(b"bob@example.com") % 7
    assert shard_of_uri("sip:example.com", 7, "crc32") == zlib.crc32(b"@example.com") % 7


def test_program_fits_the_kernel_cap_and_refuses_bad_counts() -> None:
    for count in (1, 2, 3, 16, 99):
        assert len(steering_program(count)) // 8 <= 4096
    for count in (0, 100):
        with pytest.raises(ValueError):
            steering_program(count)


def _requests(rng: random.Random) -> Iterator[bytes]:
    """Requests as clients write them: SIPp's REGISTER, display names, compact To, odd case."""
    for n in range(60):
        user = f"u{rng.randrange(10**7)}"
        aor = f"sip:{user}@example.com"
        yield build_request("REGISTER", "sip:example.com", from_uri=aor)
        yield build_request("SUBSCRIBE", aor, from_uri=f"sip:w{n}@example.com", to_uri=aor,
                            headers=[("Event", "presence")])
        yield build_request("NOTIFY", "sip:srv@10.0.0.1:5060", to_uri=aor, to_tag="t1")  # in dialog: by To
        yield (f"PUBLISH {aor} SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{n}\r\n"
               f"f: <sip:{user}@example.com>;tag=1\r\nt: \"{user.upper()} Smith\" <sip:{user}@EXAMPLE.com>\r\n"
               f"i: {n}\r\nCSeq: 1 PUBLISH\r\nl: 0\r\n\r\n").encode()
        yield (f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK{n}\r\n"
               f"Contact: <sip:{user}@10.0.0.2:5060;transport=udp>;+sip.instance=\"<urn:uuid:{n:08d}-"
               f"0000-0000-0000-000000000000>\";expires=3600\r\nMax-Forwards: 70\r\n"
               f"TO :\t<sip:{user}@example.com:5060;user=phone>\r\nFrom: <sip:{user}@example.com>;tag=2\r\n"
               f"Call-ID: c{n}\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n").encode()


@pytest.mark.parametrize("count", [2, 3])
def test_requests_reach_the_socket_of_their_owner(count: int) -> None:
    with group(count) as (socks, port):
        for data in _requests(random.Random(count)):
            owner = owner_of(parse_message(data), count)
            assert arrivals(socks, port, data) == [owner], data.decode()


def test_responses_reach_the_worker_their_branch_names() -> None:
    with group(3) as (socks, port):
        for worker in (0, 1, 2, 0, 2):
            request = parse_message(build_request("NOTIFY", "sip:w@127.0.0.1", branch=f"z9hG4bK-w{worker}-{worker}ab"))
            response = make_response(request, 200).to_bytes()  # type: ignore[arg-type]
            assert arrivals(socks, port, response) == [worker]


def test_what_the_program_cannot_read_still_arrives_somewhere() -> None:
    # no To in the window, a sips: URI, a key beyond the window, a stranger's branch: a random
    # socket, whose worker hands the message to its owner as before
    padding = [("X-Pad", "p" * (STEER_WINDOWS.to_line[1]))]
    odd = [
        build_request("OPTIONS", "sip:bob@example.com", headers=padding).replace(b"\r\nTo:", b"\r\nX-To:"),
        build_request("REGISTER", "sips:example.com", from_uri="sips:bob@example.com"),
        build_request("REGISTER", "sip:example.com", from_uri=f"sip:{'b' * STEER_WINDOWS.key}@example.com"),
        make_response(parse_message(build_request("NOTIFY", "sip:w@h", branch="z9hG4bKabc")), 200).to_bytes(),  # type: ignore[arg-type]
    ]
    with group(2) as (socks, port):
        for data in odd:
            for _ in range(4):
                assert len(arrivals(socks, port, data)) == 1


def test_the_legacy_layout_spreads_at_random() -> None:
    # crc32 owners cannot be computed by the program: every socket gets some of one user's messages
    data = build_request("REGISTER", "sip:example.com", from_uri="sip:bob@example.com")
    with group(2, "crc32") as (socks, port):
        seen = {arrivals(socks, port, data)[0] for _ in range(40)}
    assert seen == {0, 1}

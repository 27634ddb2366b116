"""Workers sharing one SIP port (slee.transport._shard): ownership and the hand-off between them.

Two SipTransports in one process stand for two worker processes: both bind the same port with
SO_REUSEPORT, the kernel gives each datagram to a random one of them (and each connection to
one by address hash), and whatever one receives for an AOR the other owns must reach the
other with its source address intact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slee.sip._addressing import Peer
from slee.sip._message import Request, Response, make_response
from slee.sip._parser import parse_message
from slee.transport import ShardConfig, shard_of_uri
from slee.transport._shard import branch_worker, owner_of
from tests.e2e.server import free_port
from tests.support.sipclient import SipTestClient, build_request
from tests.transport.harness import Recorder, run

pytestmark = pytest.mark.timeout(30)


def users_owned_by(count: int, domain: str = "example.com") -> list[str]:
    """One user name per worker index, found by trying names (the hash is stable)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        name = f"user{n}"
        found.setdefault(shard_of_uri(f"sip:{name}@{domain}", count), name)
        n += 1
    return [found[i] for i in range(count)]


def test_owner_of_requests_follows_the_aor() -> None:
    reg = parse_message(build_request("REGISTER", "sip:example.com", to_uri="sip:bob@Example.COM"))
    sub = parse_message(build_request("SUBSCRIBE", "sip:bob@example.com;transport=tcp",
                                      to_uri="sip:someone-else@example.com"))
    refresh = parse_message(build_request("SUBSCRIBE", "sip:srv@10.0.0.1:5060", to_uri="sip:bob@example.com",
                                          to_tag="abc"))
    expected = shard_of_uri("sip:bob@example.com", 7)
    # REGISTER by To (host case folded), out-of-dialog by Request-URI, in-dialog by To
    assert owner_of(reg, 7) == owner_of(sub, 7) == owner_of(refresh, 7) == expected  # type: ignore[arg-type]
    assert [shard_of_uri(f"sip:u{i}@example.com", 1) for i in range(5)] == [0] * 5
    assert len({shard_of_uri(f"sip:u{i}@example.com", 4) for i in range(64)}) == 4


def test_owner_of_responses_is_named_by_the_branch() -> None:
    request = parse_message(build_request("NOTIFY", "sip:w@127.0.0.1", branch="z9hG4bK-w3-abcdef"))
    response = make_response(request, 200)  # type: ignore[arg-type]
    assert branch_worker("z9hG4bK-w3-abcdef") == 3
    assert branch_worker("z9hG4bK-w-x") is None and branch_worker("z9hG4bKw3-1") is None
    assert owner_of(response, 4) == 3
    assert owner_of(response, 2) is None  # not a worker of this group: a stray, handled locally
    stray = make_response(parse_message(build_request("OPTIONS", "sip:x@y")), 200)  # type: ignore[arg-type]
    assert owner_of(stray, 2) is None


def test_shard_config_checks_index() -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        ShardConfig(2, 2, "/tmp")


class Pair:
    """Two transports on one port, as two workers of one server."""

    def __init__(self, tmp_path: Path, *, tcp: bool = False) -> None:
        port = free_port()
        self.workers = [Recorder(host="127.0.0.1", port=port, tcp=tcp,
                                 shard=ShardConfig(i, 2, str(tmp_path / "sock"))) for i in range(2)]
        self.port = port

    async def __aenter__(self) -> Pair:
        for worker in self.workers:
            await worker.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            await worker.__aexit__(*exc)

    def stat(self, name: str) -> int:
        return sum(w.transport.stats[name] for w in self.workers)


def test_udp_requests_reach_their_owner_and_answers_leave_from_the_shared_port(tmp_path: Path) -> None:
    users = users_owned_by(2)

    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            client = await SipTestClient.connect("udp", "127.0.0.1", pair.port)
            for user in users:
                client.send(build_request("REGISTER", "sip:example.com", to_uri=f"sip:{user}@example.com",
                                          from_uri=f"sip:{user}@example.com", via_port=client.local_port))
            for index, user in enumerate(users):
                worker = pair.workers[index]
                await worker.wait_messages()
                message, source = worker.messages[0]
                assert isinstance(message, Request) and message.to.uri.user == user
                # the source survives the hand-off, and received/rport were stamped by the owner
                assert source == Peer("udp", "127.0.0.1", client.local_port, None)
                assert message.top_via.params["rport"] == str(client.local_port)
                worker.transport.send_message(make_response(message, 200), source)
            answers = [await client.receive_response(200), await client.receive_response(200)]
            assert {a.to.uri.user for a in answers} == set(users)
            # whichever worker got each datagram, what it did not own reached the other
            assert pair.stat("handed_over") == pair.stat("taken_over") <= 2
            await client.close()

    run(scenario())


def test_udp_responses_reach_the_worker_that_sent_the_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            peer = await SipTestClient.listen("udp", "127.0.0.1")
            for index, worker in enumerate(pair.workers):
                notify = build_request("NOTIFY", f"sip:w@127.0.0.1:{peer.local_port}", via_port=pair.port,
                                       branch=f"z9hG4bK-w{index}-n{index}")
                worker.transport.send(notify, Peer("udp", "127.0.0.1", peer.local_port))
            for _ in range(2):
                item = await peer.receive()
                peer.reply(item, 200)
            for index, worker in enumerate(pair.workers):
                await worker.wait_messages()
                response, _ = worker.messages[0]
                assert isinstance(response, Response) and response.top_via.branch == f"z9hG4bK-w{index}-n{index}"
            assert pair.stat("handed_over") == pair.stat("taken_over") <= 2
            await peer.close()

    run(scenario())


def test_tcp_flow_held_by_one_worker_serves_requests_of_the_other(tmp_path: Path) -> None:
    """A client connected to one worker is owned by the other: the owner's answer and its later
    requests to the client go out over the connection the first worker holds."""
    users = users_owned_by(2)

    async def scenario() -> None:
        async with Pair(tmp_path, tcp=True) as pair:
            client = await SipTestClient.connect("tcp", "127.0.0.1", pair.port)
            await asyncio.sleep(0.05)
            holder = next(i for i, w in enumerate(pair.workers) if w.transport.stats["connections_accepted"])
            owner = 1 - holder
            user = users[owner]
            client.send(build_request("REGISTER", "sip:example.com", transport="TCP",
                                      to_uri=f"sip:{user}@example.com", from_uri=f"sip:{user}@example.com",
                                      via_port=client.local_port))
            worker = pair.workers[owner]
            await worker.wait_messages()
            message, source = worker.messages[0]
            assert source.transport == "tcp" and source.port == client.local_port
            assert source.connection_id is None  # the connection is the other worker's
            worker.transport.send_message(make_response(message, 200), source)
            assert (await client.receive_response(200)).to.uri.user == user
            # a request the owner sends later (a NOTIFY, a MESSAGE) uses the same flow
            worker.transport.send(build_request("MESSAGE", f"sip:{user}@127.0.0.1", transport="TCP",
                                                via_port=pair.port), Peer("tcp", "127.0.0.1", client.local_port))
            assert (await client.receive_request("MESSAGE")).method == "MESSAGE"
            assert pair.workers[owner].transport.stats["connections_outbound"] == 0
            assert pair.workers[holder].transport.stats["sent_for_worker"] == 2
            await client.close()

    run(scenario())


def test_a_malformed_request_is_answered_by_the_worker_that_got_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            client = await SipTestClient.connect("udp", "127.0.0.1", pair.port)
            data = client.request_bytes("OPTIONS", "sip:x@example.com")
            data = data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70 no colon\r\n")
            client.send(data)
            assert (await client.receive_response()).status == 400
            assert pair.stat("handed_over") == 0 and pair.stat("parse_errors") == 1
            await client.close()

    run(scenario())


def test_port_zero_is_refused_for_workers(tmp_path: Path) -> None:
    from slee.transport import TransportConfig

    with pytest.raises(ValueError, match="fixed port"):
        TransportConfig(port=0, shard=ShardConfig(0, 2, str(tmp_path)))


def test_a_malformed_hand_off_frame_is_dropped_and_the_link_goes_on(tmp_path: Path) -> None:
    """Only workers reach the socket (a private 0700 directory), but a broken frame must not
    take the link or the worker down: it is logged and dropped; the next frame is handled."""
    import struct

    from slee.transport._shard import _socket_path

    users = users_owned_by(2)

    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            worker = pair.workers[1]
            _, writer = await asyncio.open_unix_connection(_socket_path(worker.transport.config.shard, 1))
            good = build_request("REGISTER", "sip:example.com", to_uri=f"sip:{users[1]}@example.com")
            for header, data in ((b"in 0 udp\n", good), (b"in 0 udp 127.0.0.1 5099\n", good)):
                writer.write(struct.pack("!I", len(header) + len(data)) + header + data)
            await writer.drain()
            await worker.wait_messages()
            assert [source for _, source in worker.messages] == [Peer("udp", "127.0.0.1", 5099, None)]
            writer.close()

    run(scenario())


def test_datagrams_from_one_source_are_spread_over_the_workers(tmp_path: Path) -> None:
    """An edge proxy (or SIPp) sends everything from one address: with the kernel's address
    hash one worker would receive, parse and hand over all of it alone."""
    users = users_owned_by(2)

    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            client = await SipTestClient.connect("udp", "127.0.0.1", pair.port)
            for i in range(60):
                user = users[i % 2]
                client.send(build_request("OPTIONS", f"sip:{user}@example.com", via_port=client.local_port,
                                          call_id=f"spread-{i}"))
            for worker in pair.workers:
                for _ in range(100):
                    if len(worker.messages) >= 30:
                        break
                    await asyncio.sleep(0.01)
                # every message reached its owner, whichever socket it came in on
                assert len(worker.messages) == 30
            received = [w.transport.stats["udp_datagrams_in"] for w in pair.workers]
            assert sum(received) == 60 and min(received) > 0, received  # all on one: p = 2**-59
            assert pair.stat("handed_over") == pair.stat("taken_over") > 0
            await client.close()

    run(scenario())


class _BusyLink:
    """A hand-off link whose peer is behind by ``queued`` bytes."""

    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.written: list[bytes] = []
        self.transport = self

    def get_write_buffer_size(self) -> int:
        return self.queued

    def write(self, frame: bytes) -> None:
        self.written.append(frame)


def test_a_busy_owner_is_spared_new_requests_but_gets_responses_and_dialog_requests(tmp_path: Path) -> None:
    from slee.transport._shard import _MAX_QUEUED, SHED_QUEUED, WorkerMesh

    mesh = WorkerMesh(ShardConfig(0, 2, str(tmp_path)), lambda *a: None)
    source = Peer("udp", "127.0.0.1", 5099, None)
    link = _BusyLink(SHED_QUEUED // 2)
    mesh._out[1] = link  # type: ignore[assignment]
    mesh.send(1, "in", source, b"PUBLISH 1", sheddable=True)  # below the mark: handed on
    link.queued = SHED_QUEUED + 1
    mesh.send(1, "in", source, b"PUBLISH 2", sheddable=True)  # shed, as a full UDP socket would
    mesh.send(1, "in", source, b"SIP/2.0 200 OK", sheddable=False)  # a response still goes
    link.queued = _MAX_QUEUED + 1
    mesh.send(1, "in", source, b"SIP/2.0 200 OK again", sheddable=False)  # past the hard cap: dropped
    assert [frame.endswith(b"PUBLISH 1") or frame.endswith(b"200 OK") for frame in link.written] == [True, True]
    assert mesh.stats["frames_out"] == 2
    assert mesh.stats["frames_dropped"] == 2 and mesh.stats["requests_shed"] == 1


def test_only_new_udp_requests_are_marked_sheddable_on_the_way_to_their_owner(tmp_path: Path) -> None:
    users = users_owned_by(2)

    async def scenario() -> None:
        async with Pair(tmp_path) as pair:
            marks: list[tuple[str, bool]] = []
            for worker in pair.workers:
                mesh = worker.transport._mesh
                original = mesh.send

                def recording(target, op, peer, data, *, sheddable=False, _original=original):
                    marks.append((data.split(b" ", 1)[0].decode(), sheddable))
                    _original(target, op, peer, data, sheddable=sheddable)

                mesh.send = recording
            client = await SipTestClient.connect("udp", "127.0.0.1", pair.port)
            kinds = (("PUBLISH", None), ("SUBSCRIBE", "t1"), ("ACK", None))
            # enough of each that some land on the worker that does not own them
            for i in range(20):
                for method, to_tag in kinds:
                    user = users[i % 2]
                    client.send(build_request(method, f"sip:{user}@example.com", to_uri=f"sip:{user}@example.com",
                                              to_tag=to_tag, via_port=client.local_port, call_id=f"m{i}{method}"))
            for _ in range(200):
                if sum(len(w.messages) for w in pair.workers) >= 60:
                    break
                await asyncio.sleep(0.01)
            assert sum(len(w.messages) for w in pair.workers) == 60
            assert {m for m, _ in marks} == {"PUBLISH", "SUBSCRIBE", "ACK"}
            assert all(shed == (method == "PUBLISH") for method, shed in marks), marks
            await client.close()

    run(scenario())

"""UDP transport on loopback: receive path, error answers, responses, IPv6, STUN."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import pytest

from slee.sip._addressing import Peer, response_destination
from slee.sip._message import Request, Response, make_response
from slee.transport import stun_binding_response
from tests.support.sipclient import SipTestClient, build_request
from tests.transport.harness import Recorder, run

pytestmark = pytest.mark.timeout(30)


def test_udp_request_delivered_with_received_and_rport() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            # sent-by names another host, as behind a NAT: §18.2.1 received + RFC 3581 rport
            client.send(build_request("REGISTER", "sip:example.com", via_host="192.0.2.7",
                                      via_port=5099))
            await server.wait_messages()
            message, source = server.messages[0]
            assert isinstance(message, Request)
            assert message.method == "REGISTER"
            assert source == Peer("udp", "127.0.0.1", client.local_port, None)
            via = message.top_via
            assert via.params["received"] == "127.0.0.1"
            assert via.params["rport"] == str(client.local_port)
            assert server.transport.stats["udp_datagrams_in"] == 1
            await client.close()

    run(scenario())


def test_udp_malformed_request_gets_400_and_is_not_delivered() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            # sent-by is elsewhere (NAT): the answer must still come back to the source
            data = client.request_bytes("OPTIONS", "sip:example.com", via_host="192.0.2.7")
            data = data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70 no colon\r\n")
            client.send(data)
            response = await client.receive_response()
            assert response.status == 400
            assert response.cseq.method == "OPTIONS"  # built from what could be read
            assert response.top_via.params["rport"] == str(client.local_port)
            assert server.messages == []
            assert server.transport.stats["parse_errors"] == 1
            assert server.transport.stats["error_responses_sent"] == 1
            await client.close()

    run(scenario())


def test_udp_malformed_response_is_dropped_silently() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            client.send(b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n"
                        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            assert [m.method for m, _ in server.messages] == ["OPTIONS"]  # type: ignore[union-attr]
            assert server.transport.stats["parse_errors"] == 1
            assert server.transport.stats["error_responses_sent"] == 0
            assert client.received == []
            await client.close()

    run(scenario())


def test_udp_response_routed_back_by_response_destination() -> None:
    async def scenario() -> None:
        server: Recorder

        def answer(message: Request | Response, source: Peer) -> None:
            assert isinstance(message, Request)
            response = make_response(message, 200, to_tag="srv1")
            server.transport.send_message(response, response_destination(response,
                                                                          source=source))

        server = Recorder(answer, tcp=False)
        async with server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            # sent-by points nowhere useful: only received/rport bring the answer home
            client.send(build_request("OPTIONS", "sip:example.com", via_host="192.0.2.7",
                                      via_port=9))
            response = await client.receive_response()
            assert response.status == 200
            assert response.to_tag == "srv1"
            assert response.top_via.params["rport"] == str(client.local_port)
            assert server.transport.stats["udp_datagrams_out"] == 1
            await client.close()

    run(scenario())


def test_udp_responses_are_delivered_too() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            peer = await SipTestClient.listen("udp", "127.0.0.1")
            request = build_request("OPTIONS", f"sip:127.0.0.1:{peer.local_port}",
                                    via_host="127.0.0.1", via_port=server.port)
            server.transport.send(request, Peer("udp", "127.0.0.1", peer.local_port))
            received = await peer.receive()
            peer.reply(received, 486)
            await server.wait_messages()
            message, source = server.messages[0]
            assert isinstance(message, Response)
            assert message.status == 486
            assert source.port == peer.local_port
            await peer.close()

    run(scenario())


def test_udp_handler_exception_does_not_stop_the_transport() -> None:
    async def scenario() -> None:
        calls: list[str] = []

        def explode(message: Request | Response, source: Peer) -> None:
            calls.append(message.call_id)
            raise RuntimeError("service bug")

        async with Recorder(explode, tcp=False) as server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            client.send(client.request_bytes("OPTIONS", "sip:a@example.com", call_id="one"))
            await server.wait_messages(1)
            client.send(client.request_bytes("OPTIONS", "sip:a@example.com", call_id="two"))
            await server.wait_messages(2)
            assert calls == ["one@test", "two@test"]
            assert server.transport.stats["handler_errors"] == 2
            await client.close()

    run(scenario())


def test_udp_ipv6_loopback() -> None:
    async def scenario() -> None:
        def answer(message: Request | Response, source: Peer) -> None:
            assert isinstance(message, Request)
            response = make_response(message, 200)
            server.transport.send_message(response, response_destination(response,
                                                                          source=source))

        server = Recorder(answer, host="::1", tcp=False)
        async with server:
            assert server.transport.listening[0].host == "::1"
            client = await SipTestClient.connect("udp", "::1", server.port)
            client.send(client.request_bytes("OPTIONS", "sip:[::1]"))
            response = await client.receive_response()
            assert response.status == 200
            _, source = server.messages[0]
            assert source.host == "::1"
            await client.close()

    run(scenario())


def test_dual_stack_wildcard_reports_ipv4_sources_plainly() -> None:
    async def scenario() -> None:
        try:
            server = Recorder(host="::", tcp=False)
            await server.transport.start()
        except OSError:
            pytest.skip("no IPv6 on this host")
        try:
            client = await SipTestClient.connect("udp", "127.0.0.1", server.port)
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            _, source = server.messages[0]
            assert source.host == "127.0.0.1"  # not ::ffff:127.0.0.1
            # IPv4 destination from the IPv6 socket: sent as ::ffff:127.0.0.1
            server.transport.send(build_request("OPTIONS", "sip:x", cseq=7), source)
            request = await client.receive_request("OPTIONS")
            assert request.cseq.seq == 7
            assert server.errors == []
            await client.close()
        finally:
            await server.transport.close()

    run(scenario())


def test_udp_keepalive_crlf_is_ignored() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            client = await SipTestClient.connect("udp", server.host, server.port)
            client.send(b"\r\n\r\n")
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            assert len(server.messages) == 1
            assert server.transport.stats["keepalives_in"] == 1
            assert server.transport.stats["parse_errors"] == 0
            await client.close()

    run(scenario())


def _stun_request(txid: bytes) -> bytes:
    return struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, txid)


def _xor_mapped(answer: bytes) -> tuple[str, int]:
    msg_type, length, _cookie, txid = struct.unpack_from("!HHI12s", answer)
    assert msg_type == 0x0101 and length == len(answer) - 20
    attr_type, attr_len, _, family, xport = struct.unpack_from("!HHBBH", answer, 20)
    assert attr_type == 0x0020
    port = xport ^ 0x2112
    raw = answer[28:24 + attr_len]
    key = struct.pack("!I", 0x2112A442) + (txid if family == 2 else b"")
    ip = bytes(a ^ b for a, b in zip(raw, key, strict=True))
    return str(ipaddress.ip_address(ip)), port


def test_stun_binding_request_is_answered_with_the_reflexive_address() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            try:
                sock.sendto(_stun_request(b"abcdefghijkl"), ("127.0.0.1", server.port))  # a datagram never blocks here
                answer = await loop.sock_recv(sock, 2048)
                assert _xor_mapped(answer) == ("127.0.0.1", sock.getsockname()[1])
                assert answer[8:20] == b"abcdefghijkl"
                assert server.messages == []
            finally:
                sock.close()

    run(scenario())


def test_stun_ipv6_mapping_and_non_binding_ignored() -> None:
    answer = stun_binding_response(_stun_request(b"0123456789ab"), "2001:db8::5", 40000)
    assert answer is not None
    assert _xor_mapped(answer) == ("2001:db8::5", 40000)
    indication = struct.pack("!HHI12s", 0x0011, 0, 0x2112A442, b"0123456789ab")
    assert stun_binding_response(indication, "127.0.0.1", 1) is None
    assert stun_binding_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "127.0.0.1", 1) is None


def test_send_failures_reach_on_transport_error() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            server.transport.send(b"x", Peer("tls", "127.0.0.1", 5061))
            server.transport.send(b"x", Peer("tcp", "127.0.0.1", 5060))  # TCP disabled
            server.transport.send(b"x", Peer("udp", "::1", 5060))  # v6 from a v4 socket
            server.transport.send(b"x", Peer("udp", "no-such-host.invalid", 5060))
            await server.wait_errors(4)
            kinds = [peer.transport for peer, _ in server.errors]
            assert sorted(kinds) == ["tcp", "tls", "udp", "udp"]
            assert all(isinstance(exc, OSError) for _, exc in server.errors)

    run(scenario())


def test_udp_send_to_a_hostname_resolves_it() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            peer = await SipTestClient.listen("udp", "127.0.0.1")
            server.transport.send(build_request("OPTIONS", "sip:x"),
                                  Peer("udp", "localhost", peer.local_port))
            request = await peer.receive_request("OPTIONS")
            assert request.method == "OPTIONS"
            await peer.close()

    run(scenario())


def test_datagrams_from_one_source_share_one_peer() -> None:
    """Transactions and dialogs keep their request's source: one Peer per client address
    (and one for everything a proxy relays), bounded so a flood of sources cannot grow it."""
    from slee.transport import _transport
    from slee.transport._config import TransportConfig

    transport = _transport.SipTransport(TransportConfig(), on_message=lambda message, source: None)
    first = transport.udp_peer("192.0.2.1", 5060)
    assert transport.udp_peer("192.0.2.1", 5060) is first
    assert transport.udp_peer("192.0.2.1", 5062) is not first
    for port in range(_transport._UDP_PEERS_MAX + 1):
        transport.udp_peer("198.51.100.7", 10000 + port)
    assert len(transport._udp_peers) <= _transport._UDP_PEERS_MAX
    again = transport.udp_peer("192.0.2.1", 5060)
    assert again == first and (again.transport, again.host, again.port) == ("udp", "192.0.2.1", 5060)


def test_a_burst_of_datagrams_ends_with_one_batch_end() -> None:
    """The receiver hears once that a burst is over, after every datagram of it: the SIP RA
    delivers their events and writes their state together then (Container.deliver_now)."""
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            seen_at_batch_end: list[int] = []
            server.transport.on_batch_end = lambda: seen_at_batch_end.append(len(server.messages))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for n in range(5):  # queued in the kernel before the loop reads any of them
                    sock.sendto(build_request("OPTIONS", "sip:example.com", call_id=f"burst-{n}"),
                                (server.host, server.port))
                await server.wait_messages(5)
            assert seen_at_batch_end == [5]

    run(scenario())


def test_a_failing_batch_end_handler_is_counted_and_the_transport_goes_on() -> None:
    async def scenario() -> None:
        async with Recorder(tcp=False) as server:
            server.transport.on_batch_end = lambda: 1 / 0
            client = await SipTestClient.connect("udp", server.host, server.port)
            client.send(build_request("OPTIONS", "sip:example.com", call_id="a"))
            await server.wait_messages(1)
            client.send(build_request("OPTIONS", "sip:example.com", call_id="b"))
            await server.wait_messages(2)
            assert server.transport.stats["handler_errors"] == 2
            await client.close()

    run(scenario())

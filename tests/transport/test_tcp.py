"""TCP transport on loopback: framing, keep-alives, connection reuse, limits, IPv6."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from slee.sip._addressing import Peer, response_destination
from slee.sip._message import Request, Response, make_response
from tests.support.sipclient import SipTestClient, build_request
from tests.transport.harness import Recorder, run

pytestmark = pytest.mark.timeout(30)


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tcp_message_written_one_byte_at_a_time() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
            data = client.request_bytes("MESSAGE", "sip:bob@example.com", body=body,
                                        headers=[("Content-Type", "text/plain")])
            await client.send_slowly(data)
            await server.wait_messages()
            message, source = server.messages[0]
            assert isinstance(message, Request)
            assert message.method == "MESSAGE"
            assert message.body == body
            assert source.transport == "tcp"
            assert (source.host, source.port) == ("127.0.0.1", client.local_port)
            assert source.connection_id is not None
            assert message.top_via.params["rport"] == str(client.local_port)
            assert len(server.messages) == 1
            await client.close()

    run(scenario())


def test_tcp_pipelined_messages_in_one_write() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            data = b"".join(
                client.request_bytes("MESSAGE", "sip:bob@example.com", cseq=n,
                                     body=f"hello {n}".encode())
                for n in (1, 2, 3)
            )
            client.send(data)
            await server.wait_messages(3)
            assert [m.cseq.seq for m, _ in server.messages] == [1, 2, 3]
            assert [m.body for m, _ in server.messages] == [b"hello 1", b"hello 2", b"hello 3"]
            ids = {source.connection_id for _, source in server.messages}
            assert len(ids) == 1
            assert server.transport.stats["tcp_messages_in"] == 3
            await client.close()

    run(scenario())


def test_tcp_double_crlf_ping_gets_crlf_pong() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(b"\r\n\r\n")
            await client.wait_pongs(1)
            client.send(b"\r\n\r\n")
            await client.wait_pongs(2)
            assert server.messages == []
            assert not client.is_closed()
            # the flow still carries SIP after keep-alives
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            await client.close()

    run(scenario())


def test_tcp_framing_failure_answers_then_closes() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False, max_message_size=1024, max_write_buffer=4096) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            data = client.request_bytes("MESSAGE", "sip:bob@example.com", body=b"x" * 5000)
            client.send(data)
            await client.wait_closed()
            responses = [r.message for r in client.received]
            assert len(responses) == 1
            assert isinstance(responses[0], Response)
            assert responses[0].status == 513  # Message Too Large (RFC 3261 §21.5.14)
            assert responses[0].cseq.method == "MESSAGE"  # built from the partial head
            assert server.messages == []
            assert server.transport.stats["connections_open"] == 0

    run(scenario())


def test_tcp_malformed_request_answered_on_the_same_connection() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            data = client.request_bytes("OPTIONS", "sip:example.com")
            client.send(data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70 no colon\r\n"))
            response = await client.receive_response()
            assert response.status == 400
            # framing was intact, so the connection stays usable
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            assert not client.is_closed()
            await client.close()

    run(scenario())


def test_tcp_response_goes_back_on_the_request_connection() -> None:
    async def scenario() -> None:
        def answer(message: Request | Response, source: Peer) -> None:
            assert isinstance(message, Request)
            response = make_response(message, 200, to_tag="t")
            server.transport.send_message(response,
                                          response_destination(response, source=source))

        server = Recorder(answer, udp=False)
        async with server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(build_request("REGISTER", "sip:example.com", transport="TCP",
                                      via_host="192.0.2.9", via_port=5060))
            response = await client.receive_response(200)
            assert response.top_via.params["received"] == "127.0.0.1"
            assert server.transport.stats["connections_open"] == 1
            await client.close()

    run(scenario())


def test_tcp_request_to_registered_address_reuses_the_client_connection() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port,
                                                 auto_answer={"NOTIFY": 200})
            client.send(client.request_bytes("REGISTER", "sip:example.com"))
            await server.wait_messages()
            _, source = server.messages[0]
            assert server.transport.connection_for("127.0.0.1", client.local_port) \
                == source.connection_id
            notify = build_request("NOTIFY", f"sip:alice@127.0.0.1:{client.local_port}",
                                   transport="TCP", via_port=server.port,
                                   headers=[("Event", "presence"),
                                            ("Subscription-State", "active;expires=60")])
            # no connection_id: found by the address the client registered from
            server.transport.send(notify, Peer("tcp", "127.0.0.1", client.local_port))
            request = await client.receive_request("NOTIFY")
            assert request.event.package == "presence"  # type: ignore[union-attr]
            await server.wait_messages(2)  # the client's automatic 200
            response, response_source = server.messages[1]
            assert isinstance(response, Response) and response.status == 200
            assert response_source.connection_id == source.connection_id
            assert server.transport.stats["connections_outbound"] == 0
            assert server.transport.stats["connections_open"] == 1
            await client.close()

    run(scenario())


def test_tcp_outbound_connection_is_opened_and_reused() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            remote = await SipTestClient.listen("tcp", "127.0.0.1")
            destination = Peer("tcp", "127.0.0.1", remote.local_port)
            for cseq in (1, 2):  # the second is queued behind the connect or reuses it
                server.transport.send(
                    build_request("MESSAGE", f"sip:bob@127.0.0.1:{remote.local_port}",
                                  transport="TCP", via_port=server.port, cseq=cseq),
                    destination)
            first = await remote.receive()
            second = await remote.receive()
            assert [first.message.cseq.seq, second.message.cseq.seq] == [1, 2]
            assert remote.connections == 1
            remote.reply(first, 202)
            await server.wait_messages()
            response, source = server.messages[0]
            assert isinstance(response, Response) and response.status == 202
            assert source.connection_id == server.transport.connection_for(
                "127.0.0.1", remote.local_port)
            server.transport.send(b"\r\n\r\n", destination)
            await remote.wait_pongs(1)  # the listener saw our CRLFCRLF on the same flow
            assert remote.connections == 1
            assert server.transport.stats["connections_outbound"] == 1
            await remote.close()

    run(scenario())


def test_tcp_connect_failure_reported_for_each_queued_send() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            destination = Peer("tcp", "127.0.0.1", _free_tcp_port())
            server.transport.send(b"OPTIONS a\r\n\r\n", destination)
            server.transport.send(b"OPTIONS b\r\n\r\n", destination)
            await server.wait_errors(2)
            assert [peer for peer, _ in server.errors] == [destination, destination]
            assert all(isinstance(exc, ConnectionRefusedError) for _, exc in server.errors)
            assert server.transport.connection_for("127.0.0.1", destination.port) is None
            assert server.transport.stats["connect_failures"] == 1

    run(scenario())


def test_tcp_ipv6_loopback() -> None:
    async def scenario() -> None:
        def answer(message: Request | Response, source: Peer) -> None:
            assert isinstance(message, Request)
            response = make_response(message, 200)
            server.transport.send_message(response,
                                          response_destination(response, source=source))

        server = Recorder(answer, host="::1", udp=False)
        async with server:
            client = await SipTestClient.connect("tcp", "::1", server.port)
            client.send(client.request_bytes("OPTIONS", "sip:[::1]"))
            response = await client.receive_response(200)
            assert response.top_via.params["rport"] == str(client.local_port)
            _, source = server.messages[0]
            assert source.host == "::1"
            assert server.transport.connection_for("::1", client.local_port) is not None
            assert server.transport.connection_for("[::1]", client.local_port) is not None
            await client.close()

    run(scenario())


def test_tcp_max_connections_refuses_extra_connections() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False, max_connections=1) as server:
            first = await SipTestClient.connect("tcp", server.host, server.port)
            first.send(first.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            second = await SipTestClient.connect("tcp", server.host, server.port)
            await second.wait_closed()
            assert server.transport.stats["connections_refused"] == 1
            first.send(first.request_bytes("OPTIONS", "sip:example.com", cseq=2))
            await server.wait_messages(2)
            assert server.transport.stats["connections_open"] == 1
            # outbound connects count against the same limit
            server.transport.send(b"x", Peer("tcp", "127.0.0.1", _free_tcp_port()))
            await server.wait_errors()
            assert "max_connections" in str(server.errors[0][1])
            await first.close()
            await second.close()

    run(scenario())


def test_tcp_idle_connection_is_closed() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False, tcp_idle_timeout=0.2) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            await client.wait_closed()
            assert server.transport.stats["idle_closes"] == 1
            assert server.transport.stats["connections_open"] == 0

    run(scenario())


def test_tcp_stalled_reader_is_cut_off_at_the_write_buffer_cap() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False, max_message_size=1024, max_write_buffer=8192) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(client.request_bytes("OPTIONS", "sip:example.com"))
            await server.wait_messages()
            client._streams[0].transport.pause_reading()  # a peer that stops reading
            _, source = server.messages[0]
            chunk = b"x" * 1000
            sent = 0
            while not server.errors and sent < 200_000_000:
                server.transport.send(chunk, source)
                sent += len(chunk)
            assert server.errors, "the write buffer grew without bound"
            destination, exc = server.errors[0]
            assert destination == source
            assert isinstance(exc, ConnectionError)
            assert server.transport.stats["write_overflows"] == 1
            await asyncio.sleep(0)
            assert server.transport.connection_for("127.0.0.1", client.local_port) is None
            await client.close()

    run(scenario())


def test_tcp_handler_exception_does_not_kill_the_connection() -> None:
    async def scenario() -> None:
        def explode(message: Request | Response, source: Peer) -> None:
            raise ValueError("service bug")

        async with Recorder(explode, udp=False) as server:
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(client.request_bytes("OPTIONS", "sip:example.com", cseq=1))
            client.send(client.request_bytes("OPTIONS", "sip:example.com", cseq=2))
            await server.wait_messages(2)
            assert not client.is_closed()
            assert server.transport.stats["handler_errors"] == 2
            await client.close()

    run(scenario())


def test_close_closes_connections_and_flushes_writes() -> None:
    async def scenario() -> None:
        server = Recorder(udp=False)
        await server.transport.start()
        client = await SipTestClient.connect("tcp", server.host, server.port)
        client.send(client.request_bytes("OPTIONS", "sip:example.com"))
        await server.wait_messages()
        _, source = server.messages[0]
        server.transport.send(build_request("NOTIFY", "sip:a@127.0.0.1", transport="TCP"),
                              source)
        await server.transport.close()
        await client.wait_closed()
        assert (await client.receive_request("NOTIFY")).method == "NOTIFY"
        with pytest.raises(OSError):
            await SipTestClient.connect("tcp", "127.0.0.1", server.port, timeout=2)

    run(scenario())


def test_udp_and_tcp_share_the_port_and_bind_errors_name_the_address() -> None:
    async def scenario() -> None:
        async with Recorder() as server:
            kinds = {(p.transport, p.port) for p in server.transport.listening}
            assert kinds == {("udp", server.port), ("tcp", server.port)}
            clash = Recorder(port=server.port)
            with pytest.raises(OSError, match=f"127.0.0.1:{server.port}"):
                await clash.transport.start()

    run(scenario())


def test_one_transport_talks_to_another_over_tcp() -> None:
    async def scenario() -> None:
        def answer(message: Request | Response, source: Peer) -> None:
            if isinstance(message, Request):
                response = make_response(message, 200)
                b.transport.send_message(response,
                                         response_destination(response, source=source))

        b = Recorder(answer)
        async with Recorder() as a, b:
            a.transport.send(build_request("OPTIONS", "sip:b", transport="TCP",
                                           via_port=a.port),
                             Peer("tcp", "127.0.0.1", b.port))
            await a.wait_messages()
            response, _ = a.messages[0]
            assert isinstance(response, Response) and response.status == 200
            assert b.transport.stats["connections_accepted"] == 1

    run(scenario())


def test_response_after_the_connection_closed_goes_to_the_sent_by_port() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            # the "phone" listens on 127.0.0.1:<port> and names it in its Via sent-by
            phone = await SipTestClient.listen("tcp", "127.0.0.1")
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(build_request("MESSAGE", "sip:bob@example.com", transport="TCP",
                                      via_host="127.0.0.1", via_port=phone.local_port))
            await server.wait_messages()
            request, source = server.messages[0]
            await client.close()
            await _until(lambda: server.transport.stats["connections_open"] == 0)
            response = make_response(request, 200)  # type: ignore[arg-type]
            server.transport.send_message(response, response_destination(response,
                                                                         source=source))
            answer = await phone.receive_response(200)
            assert answer.call_id == request.call_id
            await phone.close()

    run(scenario())


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_tcp_read_of_two_messages_ends_with_one_batch_end() -> None:
    async def scenario() -> None:
        async with Recorder(udp=False) as server:
            seen_at_batch_end: list[int] = []
            server.transport.on_batch_end = lambda: seen_at_batch_end.append(len(server.messages))
            client = await SipTestClient.connect("tcp", server.host, server.port)
            client.send(b"".join(build_request("OPTIONS", "sip:example.com", call_id=f"p{n}",
                                               transport="TCP") for n in range(2)))
            await server.wait_messages(2)
            await asyncio.sleep(0)
            assert seen_at_batch_end[0] == 2
            await client.close()

    run(scenario())

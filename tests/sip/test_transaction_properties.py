"""Property tests: any interleaving of network input, TU calls and time ends cleanly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slee.sip._addressing import Peer
from slee.sip._message import make_response
from slee.sip._parser import parse_message
from slee.sip._transaction import (
    RequestReceived,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
)

PEER = Peer("udp", "192.0.2.20", 5060)


def request(method, branch="z9hG4bKprop", to_tag=None):
    to = "<sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else "")
    return parse_message(
        f"{method} sip:bob@b.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.20:5060;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nTo: {to}\r\nFrom: <sip:a@a.example>;tag=f\r\n"
        f"Call-ID: prop\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n".encode())


STATUSES = st.sampled_from([100, 180, 200, 302, 486, 503])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("response"), STATUSES),  # from the network, to our client txn
        st.tuples(st.just("retransmit"), st.none()),  # request retransmission to our server
        st.tuples(st.just("ack"), st.booleans()),  # ACK, same branch or not
        st.tuples(st.just("respond"), STATUSES),  # our TU answers the server txn
        st.tuples(st.just("wait"), st.floats(0.0, 10.0)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["INVITE", "OPTIONS"]), steps=STEPS)
def test_random_interleavings_terminate_every_transaction(method, steps):
    layer = TransactionLayer()
    now = 0.0
    client = layer.send_request(request(method), PEER, now)
    layer.receive(request(method), PEER, now)
    server = layer.next_event().transaction
    seen = {id(client): client, id(server): server}
    terminated = []

    def drain():
        while (event := layer.next_event()) is not None:
            if isinstance(event, TransactionTerminated):
                terminated.append(event.transaction)
            elif isinstance(event, RequestReceived):  # a late retransmission: new txn
                seen[id(event.transaction)] = event.transaction

    for kind, arg in steps:
        if kind == "response":
            layer.receive(parse_message(make_response(request(method), arg, to_tag="t")
                                        .to_bytes()), PEER, now)
        elif kind == "retransmit":
            layer.receive(request(method), PEER, now)
        elif kind == "ack":
            branch = "z9hG4bKprop" if arg else "z9hG4bKother"
            layer.receive(request("ACK", branch=branch, to_tag="t"), PEER, now)
        elif kind == "respond":
            try:
                layer.send_response(server, make_response(request(method), arg, to_tag="t"),
                                    now)
            except ValueError:
                assert server.state in (TransactionState.COMPLETED, TransactionState.CONFIRMED,
                                        TransactionState.ACCEPTED, TransactionState.TERMINATED)
        else:
            now += arg
            layer.handle_timer(now)
        layer.messages_to_send()
        drain()
        deadline = layer.get_timer()
        assert deadline is None or deadline > now
    # Nothing is left hanging except transactions RFC 3261 leaves to the TU: a client INVITE
    # in Proceeding, and a server transaction still waiting for its final response.
    for txn in seen.values():
        if txn.state is TransactionState.PROCEEDING or (
                txn.role == "server" and txn.state is TransactionState.TRYING):
            layer.terminate(txn)
    layer.handle_timer(now + 1000.0)
    drain()
    assert len(layer) == 0
    assert layer.get_timer() is None
    for txn in seen.values():  # each one ended exactly once
        assert sum(t is txn for t in terminated) == 1

"""The transaction layer (RFC 3261 §17, RFC 6026) driven by a fake clock: just numbers."""

from __future__ import annotations

import pytest

from slee.sip._addressing import Peer
from slee.sip._message import make_response
from slee.sip._parser import parse_message
from slee.sip._transaction import (
    AckReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponseReceived,
    TimerConfig,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
    transition_table,
)

S = TransactionState
SERVER = Peer("udp", "192.0.2.20", 5060)  # where our client transactions send
CLIENT = Peer("udp", "192.0.2.10", 5060)  # where requests to our server come from


def request(method="OPTIONS", *, branch="z9hG4bK776asdhds", transport="UDP", cseq=1,
            sent_by="192.0.2.10:5060", to_tag=None, uri="sip:bob@biloxi.com",
            extra=""):
    via_branch = f";branch={branch}" if branch else ""
    to = "<sip:bob@biloxi.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{via_branch}\r\n"
        f"{extra}"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.com>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return parse_message(text.encode())


def response_to(req, status, to_tag="a6c85cf"):
    """A response as the remote side would send it (round-tripped through bytes)."""
    resp = make_response(req, status, to_tag=to_tag if status > 100 else None)
    return parse_message(resp.to_bytes())


def events(layer):
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def run_timers(layer, until):
    """Fire every timer up to ``until``; returns [(time, [Outgoing...])] per firing."""
    fired = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append((deadline, layer.messages_to_send()))
    return fired


def sent_times(fired):
    return [round(t, 6) for t, out in fired if out]


# -- client non-INVITE (§17.1.2) -----------------------------------------------------------


def test_client_non_invite_udp_retransmission_schedule_until_timer_f():
    layer = TransactionLayer()
    req = request("OPTIONS")
    txn = layer.send_request(req, SERVER, now=0.0)
    assert isinstance(txn, ClientTransaction)
    assert (txn.kind, txn.role, txn.state) == ("non-invite", "client", S.TRYING)
    first = layer.messages_to_send()
    assert [o.destination for o in first] == [SERVER]
    assert parse_message(first[0].data).method == "OPTIONS"

    fired = run_timers(layer, 100.0)
    # Timer E: 500 ms, 1 s, 2 s, then capped at T2 = 4 s ... until Timer F at 64*T1 = 32 s
    assert sent_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(o.data == first[0].data for _t, out in fired for o in out)
    assert fired[-1][0] == 32.0
    assert [type(e) for e in events(layer)] == [TransactionTimedOut, TransactionTerminated]
    assert txn.state is S.TERMINATED
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_client_non_invite_proceeding_retransmits_every_t2():
    layer = TransactionLayer()
    req = request("REGISTER")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.messages_to_send()
    layer.receive(response_to(req, 100), SERVER, now=0.2)
    assert txn.state is S.PROCEEDING
    [event] = events(layer)
    assert isinstance(event, ResponseReceived) and event.response.status == 100
    fired = run_timers(layer, 12.0)
    assert sent_times(fired) == [0.5, 4.5, 8.5]


def test_client_non_invite_final_response_then_timer_k():
    layer = TransactionLayer()
    req = request("OPTIONS")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.messages_to_send()
    ok = response_to(req, 200)
    layer.receive(ok, SERVER, now=0.1)
    assert txn.state is S.COMPLETED
    [passed] = events(layer)
    assert isinstance(passed, ResponseReceived) and passed.response is ok
    # in Completed it only absorbs retransmitted finals: the parsed messages are released
    assert txn.request is None and txn.last_response is None and txn._wire == b""
    # retransmissions of the final response are absorbed in Completed
    layer.receive(response_to(req, 200), SERVER, now=0.2)
    assert events(layer) == []
    fired = run_timers(layer, 100.0)
    assert sent_times(fired) == []  # no more request retransmissions
    assert [t for t, _ in fired] == [pytest.approx(5.1)]  # Timer K = T4
    assert [type(e) for e in events(layer)] == [TransactionTerminated]


# -- client INVITE (§17.1.1, RFC 6026 §8.4) ------------------------------------------------


def test_client_invite_timer_a_doubles_until_timer_b():
    layer = TransactionLayer()
    txn = layer.send_request(request("INVITE"), SERVER, now=10.0)
    assert txn.state is S.CALLING
    layer.messages_to_send()
    fired = run_timers(layer, 100.0)
    assert sent_times(fired) == [10.5, 11.5, 13.5, 17.5, 25.5, 41.5]
    assert fired[-1][0] == 42.0  # Timer B = 64*T1
    assert [type(e) for e in events(layer)] == [TransactionTimedOut, TransactionTerminated]


def test_client_invite_provisional_stops_timers_a_and_b():
    layer = TransactionLayer()
    req = request("INVITE")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.receive(response_to(req, 180), SERVER, now=0.3)
    assert txn.state is S.PROCEEDING
    assert layer.get_timer() is None  # §17.1.1.2: no Timer B in Proceeding
    layer.terminate(txn)  # the TU gives up (e.g. §9.1, 64*T1 after a CANCEL)
    assert [type(e) for e in events(layer)] == [ResponseReceived, TransactionTerminated]
    assert len(layer) == 0


def test_client_invite_acks_a_non_2xx_final_response():
    layer = TransactionLayer()
    req = request("INVITE", extra="Route: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.messages_to_send()
    busy = response_to(req, 486, to_tag="314159")
    layer.receive(busy, SERVER, now=1.0)
    assert txn.state is S.COMPLETED
    [out] = layer.messages_to_send()
    assert out.destination == SERVER  # §17.1.1.3: same address, port and transport
    ack = parse_message(out.data)
    # §17.1.1.3: Request-URI, Call-ID, From, CSeq number of the INVITE; To of the response
    assert ack.method == "ACK"
    assert ack.raw_uri == req.raw_uri
    assert ack.call_id == req.call_id
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.to_tag == "314159"
    assert ack.cseq.seq == req.cseq.seq and ack.cseq.method == "ACK"
    assert len(ack.vias) == 1 and str(ack.top_via) == str(req.top_via)
    assert [str(r.uri) for r in ack.routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert ack.max_forwards == 70
    assert ack.body == b"" and ack.content_length == 0
    [event] = events(layer)
    assert isinstance(event, ResponseReceived) and event.response.status == 486

    # a retransmitted 486 gets the same ACK again and is not passed up
    layer.receive(response_to(req, 486, to_tag="314159"), SERVER, now=2.0)
    assert [o.data for o in layer.messages_to_send()] == [out.data]
    assert events(layer) == []
    fired = run_timers(layer, 100.0)
    assert [t for t, _ in fired] == [33.0]  # Timer D = 32 s
    assert [type(e) for e in events(layer)] == [TransactionTerminated]


def test_client_invite_2xx_goes_to_accepted_and_retransmissions_pass_up():
    layer = TransactionLayer()
    req = request("INVITE")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.messages_to_send()
    layer.receive(response_to(req, 180), SERVER, now=0.1)
    layer.receive(response_to(req, 200), SERVER, now=0.2)
    assert txn.state is S.ACCEPTED
    assert layer.messages_to_send() == []  # the ACK for a 2xx is the TU's (§13.2.2.4)
    layer.receive(response_to(req, 200), SERVER, now=0.7)  # retransmission
    layer.receive(response_to(req, 200, to_tag="fork2"), SERVER, now=0.8)  # another fork
    layer.receive(response_to(req, 486), SERVER, now=0.9)  # ignored in Accepted
    got = [(type(e), e.response.status, e.response.to_tag) for e in events(layer)]
    assert got == [
        (ResponseReceived, 180, "a6c85cf"),
        (ResponseReceived, 200, "a6c85cf"),
        (ResponseReceived, 200, "a6c85cf"),
        (ResponseReceived, 200, "fork2"),
    ]
    run_timers(layer, 100.0)  # Timer M
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    layer.receive(response_to(req, 200), SERVER, now=40.0)
    [stray] = events(layer)
    assert isinstance(stray, StrayResponseReceived) and stray.source == SERVER


def test_unknown_response_is_stray():
    layer = TransactionLayer()
    resp = response_to(request("OPTIONS", branch="z9hG4bKnobody"), 200)
    layer.receive(resp, SERVER, now=0.0)
    [event] = events(layer)
    assert isinstance(event, StrayResponseReceived) and event.response is resp


def test_response_cseq_method_is_part_of_the_match():
    layer = TransactionLayer()
    invite = request("INVITE", branch="z9hG4bKsame")
    layer.send_request(invite, SERVER, now=0.0)
    # §9.1: CANCEL reuses the INVITE's branch; its responses must not hit the INVITE txn
    cancel_txn = layer.send_request(request("CANCEL", branch="z9hG4bKsame"), SERVER, now=0.1)
    layer.receive(response_to(request("CANCEL", branch="z9hG4bKsame"), 200), SERVER, now=0.2)
    [event] = events(layer)
    assert event.transaction is cancel_txn
    assert len(layer) == 2


# -- server non-INVITE (§17.2.2) -----------------------------------------------------------


def test_server_non_invite_absorbs_retransmissions_and_resends_last_response():
    layer = TransactionLayer()
    req = request("MESSAGE")
    layer.receive(req, CLIENT, now=0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived) and event.request is req
    txn = event.transaction
    assert isinstance(txn, ServerTransaction)
    assert (txn.kind, txn.role, txn.state, txn.source) == ("non-invite", "server", S.TRYING, CLIENT)
    assert layer.messages_to_send() == []  # no automatic 100 for non-INVITE

    layer.receive(request("MESSAGE"), CLIENT, now=0.5)  # absorbed in Trying
    assert events(layer) == [] and layer.messages_to_send() == []

    layer.send_response(txn, make_response(req, 202, to_tag="x"), now=0.6)
    assert txn.state is S.COMPLETED
    [sent] = layer.messages_to_send()
    assert sent.destination == CLIENT
    layer.receive(request("MESSAGE"), CLIENT, now=1.5)
    assert layer.messages_to_send() == [sent]  # the final response again
    assert events(layer) == []
    fired = run_timers(layer, 100.0)
    assert [t for t, _ in fired] == [pytest.approx(32.6)]  # Timer J = 64*T1
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    with pytest.raises(ValueError):
        layer.send_response(txn, make_response(req, 200), now=40.0)


def test_completed_server_transaction_keeps_little_and_shares_what_it_keeps():
    """Thousands of these wait out Timer J under load: what each keeps is memory per request."""
    layer = TransactionLayer()
    req = request("REGISTER")
    layer.receive(req, CLIENT, now=0.0)
    [event] = events(layer)
    txn = event.transaction
    layer.send_response(txn, make_response(req, 200, to_tag="x"), now=0.1)
    [sent] = layer.messages_to_send()
    assert txn.request is None and txn.last_response is None
    assert len(txn._wire) < len(sent.data) / 2  # kept deflated until Timer J
    layer.receive(request("REGISTER"), CLIENT, now=1.0)  # a retransmission gets the same bytes
    assert layer.messages_to_send() == [sent]
    assert txn.response_destination is txn.source  # answered where it came from: one Peer
    other = request("REGISTER", branch="z9hG4bKother")
    assert other.method is req.method  # method strings are shared constants
    layer.receive(other, CLIENT, now=0.2)
    [event2] = events(layer)
    assert event2.transaction.key[1] is txn.key[1]  # the Via host string too (interned)


def test_server_non_invite_provisional_is_resent_in_proceeding():
    layer = TransactionLayer()
    req = request("SUBSCRIBE")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    layer.send_response(txn, make_response(req, 100), now=0.1)
    assert txn.state is S.PROCEEDING
    [trying] = layer.messages_to_send()
    layer.receive(request("SUBSCRIBE"), CLIENT, now=0.6)
    assert layer.messages_to_send() == [trying]


# -- server INVITE (§17.2.1, RFC 6026 §7.1) ------------------------------------------------


def test_server_invite_sends_100_and_resends_the_latest_provisional():
    layer = TransactionLayer()
    req = request("INVITE", extra="Timestamp: 54\r\n")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    assert (txn.kind, txn.state) == ("invite", S.PROCEEDING)
    [trying] = layer.messages_to_send()
    trying_msg = parse_message(trying.data)
    assert trying_msg.status == 100 and trying_msg.to_tag is None
    assert trying_msg.headers.get("Timestamp") == "54"  # §8.2.6.1
    layer.receive(request("INVITE", extra="Timestamp: 54\r\n"), CLIENT, now=0.5)
    assert layer.messages_to_send() == [trying]
    layer.send_response(txn, make_response(req, 180, to_tag="t"), now=0.6)
    [ringing] = layer.messages_to_send()
    layer.receive(request("INVITE"), CLIENT, now=1.0)
    assert layer.messages_to_send() == [ringing]
    assert [type(e) for e in events(layer)] == []  # retransmissions never reach the TU


def test_server_invite_no_auto_trying_when_disabled():
    layer = TransactionLayer(auto_trying=False)
    layer.receive(request("INVITE"), CLIENT, now=0.0)
    assert layer.messages_to_send() == []
    layer.receive(request("INVITE"), CLIENT, now=0.5)
    assert layer.messages_to_send() == []  # nothing to resend yet


def test_server_invite_timer_g_retransmits_final_until_ack_then_timer_i():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    layer.messages_to_send()
    layer.send_response(txn, make_response(req, 486, to_tag="t"), now=1.0)
    assert txn.state is S.COMPLETED
    [busy] = layer.messages_to_send()
    fired = run_timers(layer, 9.0)
    assert sent_times(fired) == [1.5, 2.5, 4.5, 8.5]  # Timer G: T1, 2T1, 4T1, then T2
    assert all(o == busy for _t, out in fired for o in out)
    # a retransmitted INVITE also gets the final response
    layer.receive(request("INVITE"), CLIENT, now=9.1)
    assert layer.messages_to_send() == [busy]
    ack = request("ACK", to_tag="t")  # same branch: the ACK for a non-2xx (§17.1.1.3)
    layer.receive(ack, CLIENT, now=10.0)
    assert txn.state is S.CONFIRMED
    assert events(layer) == []  # absorbed, not passed to the TU
    layer.receive(request("ACK", to_tag="t"), CLIENT, now=11.0)  # retransmitted ACK
    assert events(layer) == [] and layer.messages_to_send() == []
    fired = run_timers(layer, 100.0)
    assert sent_times(fired) == []  # Timer G stopped
    assert [t for t, _ in fired] == [15.0]  # Timer I = T4
    assert [type(e) for e in events(layer)] == [TransactionTerminated]


def test_server_invite_timer_h_when_the_ack_never_comes():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    layer.send_response(txn, make_response(req, 603, to_tag="t"), now=0.0)
    layer.messages_to_send()
    fired = run_timers(layer, 100.0)
    assert sent_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1][0] == 32.0
    got = events(layer)
    assert [type(e) for e in got] == [TransactionTimedOut, TransactionTerminated]
    assert got[0].transaction is txn


def test_server_invite_2xx_accepted_state():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    layer.messages_to_send()
    ok = make_response(req, 200, to_tag="t")
    layer.send_response(txn, ok, now=0.1)
    assert txn.state is S.ACCEPTED
    [first] = layer.messages_to_send()
    # RFC 6026 §7.1: no retransmission by the transaction itself ...
    assert run_timers(layer, 10.0) == []
    # ... INVITE retransmissions are absorbed ...
    layer.receive(request("INVITE"), CLIENT, now=10.1)
    assert layer.messages_to_send() == []
    # ... but the TU's 2xx retransmissions go out
    layer.send_response(txn, ok, now=10.2)
    assert layer.messages_to_send() == [first]
    # the ACK for a 2xx (new branch) is for the TU; so is one reusing the branch
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="t")
    layer.receive(ack, CLIENT, now=10.3)
    layer.receive(request("ACK", to_tag="t"), CLIENT, now=10.4)
    got = events(layer)
    assert [type(e) for e in got] == [AckReceived, AckReceived]
    assert got[0].request is ack and got[0].source == CLIENT
    with pytest.raises(ValueError):
        layer.send_response(txn, make_response(req, 486), now=10.5)
    fired = run_timers(layer, 100.0)
    assert [t for t, _ in fired] == [pytest.approx(32.1)]  # Timer L = 64*T1
    assert [type(e) for e in events(layer)] == [TransactionTerminated]
    assert len(layer) == 0


def test_server_response_follows_received_and_rport():
    layer = TransactionLayer()
    req = request("OPTIONS", sent_by="10.1.1.1:4540;rport")
    nat = Peer("udp", "192.0.2.1", 9988)
    layer.receive(req, nat, now=0.0)
    txn = events(layer)[0].transaction
    layer.send_response(txn, make_response(req, 200), now=0.0)
    [out] = layer.messages_to_send()
    assert out.destination == nat
    via = parse_message(out.data).top_via
    assert (via.received, via.rport) == ("192.0.2.1", 9988)


# -- reliable transports (§17.1.1.2, §17.2.1, ...: no retransmissions, zero timers) ---------


def test_reliable_client_non_invite_no_retransmission_and_no_timer_k():
    layer = TransactionLayer()
    tcp = Peer("tcp", "192.0.2.20", 5060, connection_id=4)
    req = request("OPTIONS", transport="TCP")
    txn = layer.send_request(req, tcp, now=0.0)
    layer.messages_to_send()
    assert layer.get_timer() == 32.0  # only Timer F
    layer.receive(response_to(req, 200), tcp, now=1.0)
    assert txn.state is S.TERMINATED
    assert [type(e) for e in events(layer)] == [ResponseReceived, TransactionTerminated]
    assert layer.get_timer() is None and len(layer) == 0


def test_reliable_client_invite_timer_b_only_and_no_timer_d():
    layer = TransactionLayer()
    tcp = Peer("tcp", "192.0.2.20", 5060)
    req = request("INVITE", transport="TCP")
    txn = layer.send_request(req, tcp, now=0.0)
    layer.messages_to_send()
    assert layer.get_timer() == 32.0
    layer.receive(response_to(req, 404), tcp, now=1.0)
    assert len(layer.messages_to_send()) == 1  # the ACK
    assert txn.state is S.TERMINATED  # Timer D = 0


def test_reliable_server_invite_no_timer_g_and_no_timer_i():
    layer = TransactionLayer()
    conn = Peer("tcp", "192.0.2.10", 49152, connection_id=9)
    req = request("INVITE", transport="TCP")
    layer.receive(req, conn, now=0.0)
    txn = events(layer)[0].transaction
    [trying] = layer.messages_to_send()
    assert trying.destination is conn  # back on the connection the request came on
    layer.send_response(txn, make_response(req, 480, to_tag="t"), now=0.1)
    layer.messages_to_send()
    assert layer.get_timer() == pytest.approx(32.1)  # Timer H only, no G
    layer.receive(request("ACK", transport="TCP", to_tag="t"), conn, now=0.2)
    assert txn.state is S.TERMINATED  # Timer I = 0
    assert [type(e) for e in events(layer)] == [TransactionTerminated]


def test_reliable_server_non_invite_terminates_on_final():
    layer = TransactionLayer()
    conn = Peer("tls", "192.0.2.10", 49152, connection_id=2)
    req = request("REGISTER", transport="TLS")
    layer.receive(req, conn, now=0.0)
    txn = events(layer)[0].transaction
    layer.send_response(txn, make_response(req, 200, to_tag="t"), now=0.0)
    assert txn.state is S.TERMINATED  # Timer J = 0
    assert [o.destination for o in layer.messages_to_send()] == [conn]


def test_custom_timer_config():
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    layer.send_request(request("OPTIONS"), SERVER, now=0.0)
    fired = run_timers(layer, 100.0)
    assert sent_times(fired) == [0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3,
                                 4.7, 5.1, 5.5, 5.9, 6.3]
    assert fired[-1][0] == pytest.approx(6.4)


# -- matching (§17.2.3) -------------------------------------------------------------------


def test_rfc2543_matching_without_magic_cookie():
    layer = TransactionLayer()
    old = dict(branch=None, sent_by="host.example.com")
    req = request("INVITE", **old)
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    [trying] = layer.messages_to_send()
    layer.receive(request("INVITE", **old), CLIENT, now=0.5)  # retransmission: matched
    assert events(layer) == [] and layer.messages_to_send() == [trying]
    layer.receive(request("INVITE", cseq=2, **old), CLIENT, now=0.6)  # new transaction
    [other] = events(layer)
    assert isinstance(other, RequestReceived) and other.transaction is not txn
    layer.send_response(txn, make_response(req, 486, to_tag="tt"), now=1.0)
    # the ACK carries the To tag of our response, which the INVITE did not have
    layer.receive(request("ACK", to_tag="wrong", **old), CLIENT, now=1.1)
    assert txn.state is S.COMPLETED
    assert isinstance(events(layer)[0], AckReceived)  # no match: not ours
    layer.receive(request("ACK", to_tag="tt", **old), CLIENT, now=1.2)
    assert txn.state is S.CONFIRMED
    assert events(layer) == []


def test_magic_cookie_matching_uses_sent_by_and_method():
    layer = TransactionLayer()
    layer.receive(request("OPTIONS"), CLIENT, now=0.0)
    layer.receive(request("OPTIONS", sent_by="192.0.2.99:5060"), CLIENT, now=0.0)
    layer.receive(request("INFO"), CLIENT, now=0.0)
    assert [type(e) for e in events(layer)] == [RequestReceived] * 3
    assert len(layer) == 3


def test_cancel_gets_its_own_transaction_and_finds_the_invite():
    layer = TransactionLayer()
    invite = request("INVITE")
    layer.receive(invite, CLIENT, now=0.0)
    invite_txn = events(layer)[0].transaction
    cancel = request("CANCEL")  # §9.1: same branch, Request-URI, Call-ID, CSeq number
    layer.receive(cancel, CLIENT, now=1.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.transaction is not invite_txn and event.transaction.kind == "non-invite"
    assert layer.find_server_transaction_for_cancel(cancel) is invite_txn
    assert layer.find_server_transaction_for_cancel(
        request("CANCEL", branch="z9hG4bKother")) is None
    # the TU answers both (§9.2); the CANCEL's 200 does not touch the INVITE
    layer.send_response(event.transaction, make_response(cancel, 200), now=1.0)
    layer.send_response(invite_txn, make_response(invite, 487, to_tag="t"), now=1.0)
    assert invite_txn.state is S.COMPLETED


def test_rfc2543_cancel_matching():
    layer = TransactionLayer()
    old = dict(branch=None, sent_by="host.example.com")
    layer.receive(request("INVITE", **old), CLIENT, now=0.0)
    invite_txn = events(layer)[0].transaction
    assert layer.find_server_transaction_for_cancel(request("CANCEL", **old)) is invite_txn
    assert layer.find_server_transaction_for_cancel(
        request("CANCEL", cseq=9, **old)) is None


# -- transport errors (§17.1.4, §17.2.4) ---------------------------------------------------


def test_transport_error_fails_only_transactions_to_that_destination():
    layer = TransactionLayer()
    other = Peer("udp", "192.0.2.77", 5060)
    txn = layer.send_request(request("OPTIONS", branch="z9hG4bKa"), SERVER, now=0.0)
    survivor = layer.send_request(request("OPTIONS", branch="z9hG4bKb"), other, now=0.0)
    layer.transport_error(Peer("udp", "192.0.2.20", 5060), now=0.1)
    got = events(layer)
    assert [type(e) for e in got] == [TransportErrorOccurred, TransactionTerminated]
    assert got[0].transaction is txn and txn.state is S.TERMINATED
    assert survivor.state is S.TRYING and len(layer) == 1


def test_transport_error_on_server_transaction():
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive(req, CLIENT, now=0.0)
    txn = events(layer)[0].transaction
    layer.transport_error(CLIENT, now=0.1)
    got = events(layer)
    assert [type(e) for e in got] == [TransportErrorOccurred, TransactionTerminated]
    with pytest.raises(ValueError):
        layer.send_response(txn, make_response(req, 200), now=0.2)


# -- API misuse and odds -------------------------------------------------------------------


def test_send_request_refuses_bad_branches_duplicates_and_ack():
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(request("OPTIONS", branch="oldstyle"), SERVER, now=0.0)
    with pytest.raises(ValueError):
        layer.send_request(request("ACK"), SERVER, now=0.0)
    layer.send_request(request("OPTIONS"), SERVER, now=0.0)
    with pytest.raises(ValueError):
        layer.send_request(request("OPTIONS"), SERVER, now=0.0)


def test_send_stateless_uses_the_rfc_destinations():
    layer = TransactionLayer()
    req = request("ACK", uri="sip:bob@192.0.2.30:5070;transport=tcp")
    layer.send_stateless(req)
    resp = make_response(request("OPTIONS", sent_by="192.0.2.40:5062"), 200)
    layer.send_stateless(resp)
    layer.send_stateless(resp, SERVER)
    assert [o.destination for o in layer.messages_to_send()] == [
        Peer("tcp", "192.0.2.30", 5070), Peer("udp", "192.0.2.40", 5062), SERVER]
    assert layer.messages_to_send() == []
    assert len(layer) == 0


def test_malformed_key_headers_are_dropped():
    layer = TransactionLayer()
    bad = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: garbage\r\nCSeq: x\r\n\r\n")
    layer.receive(bad, CLIENT, now=0.0)
    assert events(layer) == [] and len(layer) == 0


def test_many_transactions_timers_stay_ordered_and_heap_is_compacted():
    layer = TransactionLayer()
    reqs = [request("OPTIONS", branch=f"z9hG4bK{i}") for i in range(3000)]
    for i, req in enumerate(reqs):
        layer.send_request(req, SERVER, now=i * 0.001)
    layer.messages_to_send()
    for req in reqs[:2999]:
        layer.receive(response_to(req, 200), SERVER, now=3.0)
    assert len(layer) == 3000  # Completed, waiting for Timer K
    fired = run_timers(layer, 7.99)
    # the one left in Trying keeps retransmitting; the others ended with Timer K at 8.0
    assert len(layer) == 3000
    assert layer.get_timer() == pytest.approx(8.0)
    run_timers(layer, 8.0)
    assert len(layer) == 1
    # dead entries of the ~6000 cancelled E/F timers were dropped (the rebuild keeps at
    # most ~1024 dead ones around)
    assert len(layer._heap) <= 1100
    assert all(t <= 7.99 for t, _ in fired)


def test_transition_tables_are_exported_for_diagrams():
    rows = transition_table("server", "invite")
    assert ("Completed", "ACK received", "Confirmed", ["stop_timers", "start_timeout"]) in rows
    assert all(len(transition_table(r, k)) > 5
               for r in ("client", "server") for k in ("invite", "non-invite"))


def test_a_cancelled_timer_does_not_keep_its_transaction_alive():
    """A NOTIFY answered at once leaves its Timer F entry (32 s) in the heap: the entry must
    not hold the transaction, or every finished NOTIFY stays in memory for 32 s."""
    layer = TransactionLayer()
    req = request("NOTIFY", branch="z9hG4bKdead")
    txn = layer.send_request(req, SERVER, now=0.0)
    layer.receive(response_to(req, 200), SERVER, now=0.01)  # Completed: E and F cancelled, K armed
    dead = [e for e in layer._heap if e[2] is None]
    assert len(dead) == 2 and all(e[2] is not txn for e in dead)
    run_timers(layer, 5.02)  # Timer K (T4 = 5 s) ends it
    assert len(layer) == 0
    assert all(e[2] is None for e in layer._heap)  # only the dead F entry is left, without it
    assert layer.get_timer() is None  # and the layer asks for no wake-up for it


def test_completion_timers_wait_in_order_without_heap_entries_and_fire_among_the_others():
    """Timer J and Timer K have one delay each, so completed non-INVITE transactions expire
    in the order they completed: they wait in a FIFO (no ~150-byte heap entry each), and
    still fire in deadline order with the heap's timers."""
    layer = TransactionLayer()
    invite = request("INVITE", branch="z9hG4bKinv")
    client_invite = layer.send_request(invite, SERVER, now=0.0)  # Timer B at 32.0
    msg = request("MESSAGE", branch="z9hG4bKmsg")
    layer.receive(msg, CLIENT, now=0.0)
    server = events(layer)[0].transaction
    layer.send_response(server, make_response(msg, 200, to_tag="x"), now=0.1)  # Timer J at 32.1
    options = request("OPTIONS", branch="z9hG4bKopt")
    client = layer.send_request(options, SERVER, now=0.0)
    layer.receive(response_to(options, 200), SERVER, now=27.5)  # Timer K at 32.5
    events(layer)
    live = [e for e in layer._heap if e[2] is not None]
    assert all(e[2] is client_invite for e in live)  # J and K are not in the heap
    order = []
    while (deadline := layer.get_timer()) is not None and deadline <= 40.0:
        layer.handle_timer(deadline)
        layer.messages_to_send()
        order += [(round(deadline, 3), e.transaction) for e in events(layer)
                  if isinstance(e, TransactionTerminated)]
    assert order == [(32.0, client_invite), (32.1, server), (32.5, client)]
    assert len(layer) == 0 and layer.get_timer() is None

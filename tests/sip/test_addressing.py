"""Peers, received/rport stamping (RFC 3261 §18.2.1, RFC 3581 §4) and message targets."""

from __future__ import annotations

import pytest

from slee.sip._addressing import (
    Peer,
    apply_received,
    default_port,
    request_destination,
    response_destination,
)
from slee.sip._message import make_response
from slee.sip._parser import parse_message


def request(via: str, uri: str = "sip:bob@example.com", extra: str = ""):
    text = (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKlower\r\n"
        f"{extra}"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=1928301774\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: a84b4c76e66710\r\n"
        "CSeq: 63104 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return parse_message(text.encode())


def response_with_via(via: str):
    req = request(via)
    return make_response(req, 200)


# -- Peer ---------------------------------------------------------------------------------


def test_peer_reliability_and_address_comparison():
    assert not Peer("udp", "192.0.2.1", 5060).reliable
    assert Peer("tcp", "192.0.2.1", 5060).reliable
    assert Peer("tls", "192.0.2.1", 5061).reliable
    assert Peer("udp", "2001:db8::1", 5060).same_address(Peer("udp", "2001:db8:0::1", 5060))
    assert not Peer("udp", "192.0.2.1", 5060).same_address(Peer("tcp", "192.0.2.1", 5060))
    assert Peer("tcp", "a", 1, connection_id=3).same_address(Peer("tcp", "a", 1))
    assert default_port("tls") == 5061 and default_port("udp") == 5060


# -- apply_received -----------------------------------------------------------------------


def test_received_added_when_sent_by_is_a_hostname():
    req = request("SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7")
    apply_received(req, Peer("udp", "192.0.2.4", 5060))
    via = req.top_via
    assert via.received == "192.0.2.4"
    assert via.branch == "z9hG4bKnashds7"
    assert "rport" not in via.params
    # the second Via is untouched, and the rewritten row is what a response copies
    assert req.vias[1].branch == "z9hG4bKlower"
    wire = make_response(req, 200).to_bytes()
    assert b"received=192.0.2.4" in wire


def test_no_received_when_sent_by_matches_source():
    req = request("SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7")
    before = req.to_bytes()
    apply_received(req, Peer("udp", "192.0.2.4", 5060))
    assert req.top_via.received is None
    assert req.to_bytes() == before


def test_rfc3581_example_rport_filled_and_received_always_added():
    # RFC 3581 §4: client 10.1.1.1:4540 behind a NAT appears as 192.0.2.1:9988.
    req = request("SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff")
    apply_received(req, Peer("udp", "192.0.2.1", 9988))
    via = req.top_via
    assert via.received == "192.0.2.1"
    assert via.rport == 9988
    assert via.branch == "z9hG4bKkjshdyff"
    # and the response goes back to the NAT binding, not to 10.1.1.1:4540
    resp = make_response(req, 200)
    assert response_destination(resp) == Peer("udp", "192.0.2.1", 9988)


def test_rport_requested_from_the_sent_by_address_still_gets_received():
    req = request("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1")
    apply_received(req, Peer("udp", "192.0.2.1", 5060))
    assert req.top_via.received == "192.0.2.1"  # RFC 3581 §4: even if identical
    assert req.top_via.rport == 5060


def test_rport_with_value_is_left_alone():
    req = request("SIP/2.0/UDP 10.0.0.1:5060;rport=1234;branch=z9hG4bK1")
    apply_received(req, Peer("udp", "192.0.2.1", 9999))
    assert req.top_via.rport == 1234
    assert req.top_via.received == "192.0.2.1"


def test_apply_received_is_idempotent():
    req = request("SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff")
    source = Peer("udp", "192.0.2.1", 9988)
    apply_received(req, source)
    once = req.to_bytes()
    apply_received(req, source)
    assert req.to_bytes() == once
    assert once.count(b"received=") == 1


def test_ipv6_sent_by_compared_as_addresses():
    req = request("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6")
    apply_received(req, Peer("udp", "2001:db8:0:0::1", 5060))
    assert req.top_via.received is None


def test_ipv6_received_is_written_and_reparsed():
    req = request("SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bK6")
    apply_received(req, Peer("udp", "2001:db8::9", 40000))
    resp = parse_message(make_response(req, 200).to_bytes())
    assert resp.top_via.received == "2001:db8::9"
    assert resp.top_via.host == "2001:db8::1"
    assert response_destination(resp) == Peer("udp", "2001:db8::9", 40000)


# -- response_destination (RFC 3261 §18.2.2) ----------------------------------------------


def test_udp_response_goes_to_received_and_sent_by_port():
    resp = response_with_via("SIP/2.0/UDP pc33.atlanta.com:5066;received=192.0.2.101;branch=z9hG4bK1")
    assert response_destination(resp) == Peer("udp", "192.0.2.101", 5066)


def test_udp_response_without_received_goes_to_sent_by():
    resp = response_with_via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1")
    assert response_destination(resp) == Peer("udp", "pc33.atlanta.com", 5060)


def test_received_without_port_uses_default_port():
    resp = response_with_via("SIP/2.0/UDP pc33.atlanta.com;received=192.0.2.101;branch=z9hG4bK1")
    assert response_destination(resp) == Peer("udp", "192.0.2.101", 5060)


def test_maddr_wins_for_unreliable_transport():
    resp = response_with_via(
        "SIP/2.0/UDP pc33.atlanta.com:5070;maddr=239.255.255.1;ttl=16;"
        "received=192.0.2.101;branch=z9hG4bK1")
    assert response_destination(resp) == Peer("udp", "239.255.255.1", 5070)


def test_tcp_response_reuses_the_request_connection():
    resp = response_with_via("SIP/2.0/TCP pc33.atlanta.com:5060;received=192.0.2.101;branch=z9hG4bK1")
    source = Peer("tcp", "192.0.2.101", 49152, connection_id=17)
    assert response_destination(resp, source=source) is source


def test_tcp_response_without_connection_opens_one_to_received_and_sent_by_port():
    resp = response_with_via("SIP/2.0/TCP pc33.atlanta.com:5070;received=192.0.2.101;branch=z9hG4bK1")
    assert response_destination(resp, source=Peer("tcp", "192.0.2.101", 49152)) == Peer(
        "tcp", "192.0.2.101", 5070)


def test_tls_default_port_is_5061():
    resp = response_with_via("SIP/2.0/TLS client.example.com;branch=z9hG4bK1")
    assert response_destination(resp) == Peer("tls", "client.example.com", 5061)


# -- request_destination (RFC 3261 §8.1.2, RFC 3263 §4) -----------------------------------


def test_request_uri_host_and_default_port():
    req = request("SIP/2.0/UDP a.example.com;branch=z9hG4bK1")
    assert request_destination(req) == Peer("udp", "example.com", 5060)
    assert request_destination(req, default_transport="tcp") == Peer("tcp", "example.com", 5060)


def test_transport_param_and_explicit_port():
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1", uri="sip:bob@192.0.2.7:5070;transport=TCP")
    assert request_destination(req) == Peer("tcp", "192.0.2.7", 5070)


def test_sips_uses_tls_and_5061():
    req = request("SIP/2.0/TLS a;branch=z9hG4bK1", uri="sips:bob@example.com")
    assert request_destination(req) == Peer("tls", "example.com", 5061)


def test_loose_route_is_the_next_hop():
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1",
                  extra="Route: <sip:p1.example.com:5080;lr>, <sip:p2.example.com;lr>\r\n")
    assert request_destination(req) == Peer("udp", "p1.example.com", 5080)


def test_strict_route_means_the_request_uri():
    # §12.2.1.1: with a strict router the route has already been moved into the Request-URI
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1", uri="sip:p1.example.com",
                  extra="Route: <sip:p2.example.com>\r\n")
    assert request_destination(req) == Peer("udp", "p1.example.com", 5060)


def test_maddr_and_ipv6_targets():
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1", uri="sip:bob@example.com;maddr=192.0.2.9")
    assert request_destination(req) == Peer("udp", "192.0.2.9", 5060)
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1", uri="sip:bob@[2001:db8::5]:5070")
    assert request_destination(req) == Peer("udp", "2001:db8::5", 5070)


def test_non_sip_target_is_refused():
    req = request("SIP/2.0/UDP a;branch=z9hG4bK1", uri="tel:+15551234567")
    with pytest.raises(ValueError):
        request_destination(req)


def test_a_request_that_came_on_a_connection_is_answered_on_it_whatever_its_via_says():
    from slee.sip import parse_message

    response = parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
                             b"From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
    source = Peer("tcp", "127.0.0.1", 40000, connection_id=7)
    assert response_destination(response, source=source) == source


def test_a_datagram_whose_via_names_tcp_is_answered_by_datagram():
    from slee.sip import parse_message

    response = parse_message(b"SIP/2.0 416 Unsupported URI Scheme\r\n"
                             b"Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bK1;received=127.0.0.1;rport=40001\r\n"
                             b"From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
    source = Peer("udp", "127.0.0.1", 40001)
    assert response_destination(response, source=source) == Peer("udp", "127.0.0.1", 40001)

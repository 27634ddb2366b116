"""Header rows and typed header values (RFC 3261 §7.3, §20; RFC 3581; RFC 6665; RFC 3903)."""

from __future__ import annotations

import pytest

from slee.sip import (
    Challenge,
    Contact,
    Credentials,
    Headers,
    NameAddr,
    Request,
    SipParseError,
    SipURI,
    Via,
    parse_message,
    parse_uri,
    split_commas,
)


def request(*rows: str, method: str = "OPTIONS", body: bytes = b"") -> Request:
    head = "\r\n".join((f"{method} sip:bob@example.com SIP/2.0", *rows))
    msg = parse_message(head.encode() + b"\r\n\r\n" + body)
    assert isinstance(msg, Request)
    return msg


BASE = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
    "From: Alice <sip:alice@example.com>;tag=1928301774",
    "To: <sip:bob@example.com>",
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 OPTIONS",
    "Max-Forwards: 70",
)


def test_compact_forms_map_to_long_names() -> None:
    msg = request(
        "v: SIP/2.0/UDP h;branch=z9hG4bK1", "f: <sip:a@x>;tag=1", "t: <sip:b@x>",
        "i: cid", "CSeq: 1 OPTIONS", "m: <sip:a@h>", "k: path", "l: 0", "s: hi",
        "c: text/plain", "e: gzip", "o: presence;id=7", "u: presence, dialog",
        "r: <sip:c@x>", "b: <sip:d@x>", "x: 1800", "y: abc",
    )
    h = msg.headers
    for long, short in [("Via", "v"), ("From", "f"), ("To", "t"), ("Call-ID", "i"),
                        ("Contact", "m"), ("Supported", "k"), ("Content-Length", "l"),
                        ("Subject", "s"), ("Content-Type", "c"), ("Content-Encoding", "e"),
                        ("Event", "o"), ("Allow-Events", "u"), ("Refer-To", "r"),
                        ("Referred-By", "b"), ("Session-Expires", "x"), ("Identity", "y")]:
        assert h.get(long) == h.get(short) == h.get(long.upper()) is not None, long
    assert msg.call_id == "cid" and msg.supported == ["path"]
    assert msg.event is not None and msg.event.package == "presence" and msg.event.id == "7"
    assert msg.allow_events == ["presence", "dialog"]
    assert msg.content_type == "text/plain"
    # the rows keep their compact names for a faithful round trip
    assert b"\r\nv: SIP/2.0/UDP" in msg.to_bytes()


def test_folding_is_one_space() -> None:
    raw = (b"OPTIONS sip:b@x SIP/2.0\r\nSubject: first\r\n  second\r\n\tthird\r\n"
           b"Via: SIP/2.0/UDP h\r\n ;branch=z9hG4bKx\r\nl: 0\r\n\r\n")
    msg = parse_message(raw)
    assert msg.headers.get("Subject") == "first second third"
    assert msg.top_via.branch == "z9hG4bKx"


def test_continuation_before_first_header_is_malformed() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"OPTIONS sip:b@x SIP/2.0\r\n folded\r\nl: 0\r\n\r\n")
    assert info.value.status == 400


def test_quoted_display_names_with_commas_and_escapes() -> None:
    msg = request(*BASE[:1], 'From: "Bell, Alexander \\"Graham\\"" <sip:agb@example.com>;tag=9',
                  'Contact: "Doe, J." <sip:j@h1>;q=0.7, <sip:j@h2>;expires=60, "x,<y>" <sip:j@h3>',
                  *BASE[2:])
    assert msg.from_.display_name == 'Bell, Alexander "Graham"'
    assert msg.from_tag == "9"
    contacts = msg.contacts
    assert [c.display_name for c in contacts] == ["Doe, J.", None, "x,<y>"]
    assert [c.q for c in contacts] == [0.7, None, None]
    assert [c.expires for c in contacts] == [None, 60, None]
    assert str(contacts[0]) == '"Doe, J." <sip:j@h1>;q=0.7'


def test_contact_star_and_bad_q() -> None:
    msg = request(*BASE, "Contact: *", "Expires: 0", method="REGISTER")
    (star,) = msg.contacts
    assert star.is_star and str(star) == "*"
    with pytest.raises(SipParseError):
        _ = star.uri
    bad = request(*BASE, "Contact: <sip:a@h>;q=1.5")
    with pytest.raises(SipParseError):
        _ = bad.contacts[0].q


def test_addr_spec_params_belong_to_the_header() -> None:
    na = request(*BASE[:2], "To: sip:bob@example.com;tag=abc;user=phone", *BASE[3:]).to
    assert na.params == {"tag": "abc", "user": "phone"}
    assert isinstance(na.uri, SipURI) and na.uri.params == {}
    assert str(na) == "<sip:bob@example.com>;tag=abc;user=phone"


@pytest.mark.parametrize("value", [
    '"unterminated <sip:a@b>',
    "Bell, Alexander <sip:a@b>",      # unquoted comma (RFC 4475 baddn)
    "< sip:a@b >",                     # RFC 4475 badaspec
    "<sip:a@b>;;tag=1",
    "<sip:a@b> junk",
    "nobody@example.com",              # no scheme
])
def test_malformed_name_addr(value: str) -> None:
    msg = request(*BASE[:2], f"To: {value}", *BASE[3:])
    with pytest.raises(SipParseError) as info:
        _ = msg.to.uri
    assert info.value.status == 400


def test_via_received_rport_and_ipv6() -> None:
    msg = request(
        "Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKa, "
        "SIP/2.0/TCP [2001:db8::1]:5061;received=[2001:db8::2];rport=4000;branch=z9hG4bKb",
        *BASE[1:])
    first, second = msg.vias
    assert first.rport is True and first.received is None
    assert first.sent_by == ("192.0.2.1", 5060)
    assert (second.transport, second.host, second.port) == ("TCP", "2001:db8::1", 5061)
    assert second.rport == 4000 and second.received == "2001:db8::2"
    # a server fills in received/rport (RFC 3581 §4) and rewrites only the top value
    top = msg.top_via
    top.received, top.rport = "198.51.100.7", 34567
    msg.replace_top_via(top)
    assert msg.headers.get("Via", "").startswith(
        "SIP/2.0/UDP 192.0.2.1:5060;rport=34567;branch=z9hG4bKa;received=198.51.100.7, ")
    assert msg.top_via.rport == 34567 and len(msg.vias) == 2
    assert str(Via("TLS", "::1", 5061, {"branch": "z9hG4bKc"})) == \
        "SIP/2.0/TLS [::1]:5061;branch=z9hG4bKc"


def test_event_and_subscription_state() -> None:
    msg = request(*BASE, "Event: presence;id=abc;x", "Subscription-State: "
                  "terminated;reason=timeout;retry-after=30", method="NOTIFY")
    assert msg.event is not None
    assert (msg.event.package, msg.event.id, msg.event.params["x"]) == ("presence", "abc", None)
    state = msg.subscription_state
    assert state is not None
    assert (state.state, state.reason, state.retry_after, state.expires) == (
        "terminated", "timeout", 30, None)
    active = request(*BASE, "Subscription-State: Active ; expires=599").subscription_state
    assert active is not None and active.state == "active" and active.expires == 599


def test_publish_etags() -> None:
    msg = request(*BASE, "SIP-If-Match: dx200xyz", "SIP-ETag: kwj449x", "Expires: 3600",
                  method="PUBLISH")
    assert msg.sip_if_match == "dx200xyz" and msg.sip_etag == "kwj449x" and msg.expires == 3600


def test_digest_headers_with_commas_in_quoted_values() -> None:
    msg = request(
        *BASE,
        'WWW-Authenticate: Digest realm="example.com, inc", nonce="a,b=c", qop="auth,auth-int",'
        ' algorithm=MD5, stale=FALSE',
        'Authorization: digest username="bob", realm="example.com, inc", nonce="a,b=c", '
        'uri="sip:bob@example.com", response="6629fae49393a05397450978507c4ef1", '
        'qop=auth, nc=00000001, cnonce="0a4f113b", opaque="x\\"y"',
        'Proxy-Authorization: Digest username="carol", realm="p"',
    )
    (challenge,) = msg.www_authenticate
    assert challenge.scheme == "Digest"
    assert challenge.params == {"realm": "example.com, inc", "nonce": "a,b=c",
                                "qop": "auth,auth-int", "algorithm": "MD5", "stale": "FALSE"}
    (creds,) = msg.authorization
    assert isinstance(creds, Credentials) and creds.scheme == "Digest"
    assert creds.params["uri"] == "sip:bob@example.com" and creds.params["opaque"] == 'x"y'
    assert creds.params["nc"] == "00000001" and creds.params["qop"] == "auth"
    assert msg.proxy_authorization[0].params["username"] == "carol"
    # serialisation quotes what must be quoted and nothing else (RFC 3261 §25.1)
    assert str(challenge) == ('Digest realm="example.com, inc", nonce="a,b=c", '
                              'qop="auth,auth-int", algorithm=MD5, stale=FALSE')
    assert 'qop=auth, nc=00000001' in str(creds) and 'opaque="x\\"y"' in str(creds)
    assert isinstance(challenge, Challenge) and not isinstance(challenge, Credentials)


def test_multiple_rows_and_comma_lists() -> None:
    msg = request(*BASE, "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                  "Route: <sip:p3.example.com;lr>", "Allow: INVITE, ACK",
                  "Allow: BYE", "Supported: timer,path", "Require: 100rel",
                  "Record-Route: <sip:rr@a;lr>", "Path: <sip:edge@b;lr;ob>",
                  "Subject: Hello, world")
    assert [r.uri.host for r in msg.routes] == [  # type: ignore[union-attr]
        "p1.example.com", "p2.example.com", "p3.example.com"]
    assert all(r.uri.lr for r in msg.routes)  # type: ignore[union-attr]
    assert msg.allow == ["INVITE", "ACK", "BYE"]
    assert msg.supported == ["timer", "path"] and msg.require == ["100rel"]
    assert msg.record_routes[0].uri.host == "a"  # type: ignore[union-attr]
    assert msg.path[0].uri.params == {"lr": None, "ob": None}  # type: ignore[union-attr]
    # not a list header: commas are content
    assert msg.headers.get_all("Subject") == ["Hello, world"]
    assert msg.headers.get_rows("Route") == [
        "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]


def test_split_commas_respects_quotes_and_angles() -> None:
    assert split_commas('"a,b" <sip:x;p=1,2>, <sip:y>') == ['"a,b" <sip:x;p=1,2>', "<sip:y>"]
    assert split_commas('"q\\",x" <sip:z>,,') == ['"q\\",x" <sip:z>']
    assert split_commas(" a , b ,c") == ["a", "b", "c"]


def test_headers_mutation() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a"), ("To", "<sip:b@x>"), ("v", "SIP/2.0/UDP b")])
    h.prepend("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp")
    assert h.get_all("VIA") == ["SIP/2.0/UDP proxy;branch=z9hG4bKp", "SIP/2.0/UDP a",
                                "SIP/2.0/UDP b"]
    h.set("via", "SIP/2.0/UDP only")
    assert h.get_all("v") == ["SIP/2.0/UDP only"] and next(iter(h.items()))[0] == "Via"
    h.add("X-Custom", "1")
    assert "x-custom" in h and h.count("X-CUSTOM") == 1
    h.remove("x-custom")
    assert "X-Custom" not in h and len(h) == 2
    h.set_values("Route", ["<sip:a;lr>", "<sip:b;lr>"])
    assert h.get_rows("Route") == ["<sip:a;lr>", "<sip:b;lr>"]
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")


def test_typed_cache_follows_header_changes() -> None:
    msg = request(*BASE, "Expires: 60")
    assert msg.expires == 60
    msg.headers.set("Expires", "120")
    assert msg.expires == 120
    msg.headers.remove("Expires")
    assert msg.expires is None


def test_malformed_values_raise_400() -> None:
    for row, attr in [("CSeq: x OPTIONS", "cseq"), ("CSeq: 2147483648 OPTIONS", "cseq"),
                      ("Max-Forwards: -1", "max_forwards"), ("Expires: soon", "expires"),
                      ("Event: ;id=1", "event"), ("Content-Type: text", "content_type")]:
        rows = [r for r in BASE if not r.startswith(row.split(":")[0] + ":")]
        msg = request(*rows, row)
        with pytest.raises(SipParseError) as info:
            getattr(msg, attr)
        assert info.value.status == 400, row


def test_out_of_range_values_are_tolerated_as_rfc4475_allows() -> None:
    msg = request(*[r for r in BASE if not r.startswith("Max")], "Max-Forwards: 300",
                  "Expires: 99999999999999999999")
    assert msg.max_forwards is None and msg.expires == 2**32 - 1


def test_name_addr_construction() -> None:
    na = NameAddr(parse_uri("sip:alice@example.com"), 'Alice "A"', {"tag": "x"})
    assert str(na) == '"Alice \\"A\\"" <sip:alice@example.com>;tag=x'
    na.tag = None
    assert str(na) == '"Alice \\"A\\"" <sip:alice@example.com>'
    contact = Contact("sip:a@h", params={"expires": "30"})
    assert contact.expires == 30 and not contact.is_star

"""Requests/responses: parsing, serialisation, make_response, validation, error answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slee.sip import (
    Headers,
    Request,
    Response,
    SipParseError,
    SipURI,
    error_response,
    make_response,
    parse_message,
    validate_request,
)

SUBSCRIBE = (
    b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10:50512;rport;branch=z9hG4bK9b8c7d6e5f4a\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKolder\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=c0ffee42\r\n'
    b"Call-ID: 7d2e9a1b3c4f5e6d@192.0.2.10\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"Contact: <sip:alice@192.0.2.10:50512;transport=tcp>\r\n"
    b"Event: presence\r\n"
    b"Expires: 600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def test_hot_path_fields() -> None:
    msg = parse_request(SUBSCRIBE)
    assert (msg.method, msg.raw_uri, msg.version) == ("SUBSCRIBE", "sip:bob@example.com",
                                                      "SIP/2.0")
    assert msg.top_via.branch == "z9hG4bK9b8c7d6e5f4a" and msg.top_via.rport is True
    assert (msg.from_tag, msg.to_tag) == ("c0ffee42", None)
    assert msg.call_id == "7d2e9a1b3c4f5e6d@192.0.2.10"
    assert (msg.cseq.seq, msg.cseq.method) == (1, "SUBSCRIBE")
    assert msg.event is not None and msg.event.package == "presence"
    assert msg.expires == 600 and msg.max_forwards == 70
    assert isinstance(msg.uri, SipURI) and msg.uri.user == "bob"


def test_unmodified_message_serialises_as_received() -> None:
    assert parse_message(SUBSCRIBE).to_bytes() == SUBSCRIBE


def test_binary_body_is_kept_exactly() -> None:
    body = bytes(range(256)) + b"\r\n\r\n\x00"
    data = (b"MESSAGE sip:b@x SIP/2.0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    msg = parse_message(data)
    assert msg.body == body
    assert msg.to_bytes() == data


def test_content_length_is_recomputed() -> None:
    msg = parse_request(SUBSCRIBE)
    msg.body = b"hello"
    again = parse_message(msg.to_bytes())
    assert again.body == b"hello" and again.headers.get("Content-Length") == "5"


def test_datagram_rules() -> None:
    head = b"OPTIONS sip:b@x SIP/2.0\r\nCall-ID: x\r\n"
    # no Content-Length: the rest of the datagram is the body (§18.3)
    assert parse_message(head + b"\r\nbody").body == b"body"
    # extra octets after Content-Length are discarded
    assert parse_message(head + b"l: 2\r\n\r\nbody").body == b"bo"
    # ...but on a stream Content-Length is mandatory
    with pytest.raises(SipParseError):
        parse_message(head + b"\r\nbody", datagram=False)
    for bad in (b"l: 9\r\n", b"l: -1\r\n", b"l: x\r\n", b"l: 1\r\nContent-Length: 1\r\n"):
        with pytest.raises(SipParseError) as info:
            parse_message(head + bad + b"\r\nbody")
        assert info.value.status == 400


def test_size_limit_gives_513() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(SUBSCRIBE, max_size=100)
    assert info.value.status == 513


def test_leading_crlf_and_bare_lf_are_tolerated() -> None:
    msg = parse_message(b"\r\n\r\n" + SUBSCRIBE)
    assert msg.cseq.seq == 1
    lf = parse_message(SUBSCRIBE.replace(b"\r\n", b"\n"))
    assert lf.call_id == "7d2e9a1b3c4f5e6d@192.0.2.10" and lf.body == b""


@pytest.mark.parametrize("data", [
    b"",
    b"\r\n",
    b"OPTIONS sip:b@x\r\n\r\n",
    b"OPTIONS  sip:b@x ; lr SIP/2.0\r\n\r\n",
    b"OPT IONS sip:b@x SIP/2.0 x\r\n\r\n",
    b"OPTIONS <sip:b@x> SIP/2.0\r\n\r\n",
    b"OPTIONS sip:b@x HTTP/1.1\r\n\r\n",
    b"OPTIONS sip:b@x SIP/2.0\r\nNo colon here\r\n\r\n",
    b"OPTIONS sip:b@x SIP/2.0\r\nBad Name: x\r\n\r\n",
])
def test_malformed_requests(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400 and not info.value.is_response


@pytest.mark.parametrize("data", [
    b"SIP/2.0 99 Too Small\r\n\r\n",
    b"SIP/2.0 2000 OK\r\n\r\n",
    b"SIP/2.0 OK\r\n\r\n",
    b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n",
])
def test_malformed_responses_are_dropped(data: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.is_response and info.value.status == 0
    assert error_response(data, info.value) is None


def test_response_parsing() -> None:
    msg = parse_message(b"SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n")
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (486, "Busy Here")
    bad = parse_message(b"SIP/2.0 200 OK\r\nCSeq: one INVITE\r\nl: 0\r\n\r\n")
    with pytest.raises(SipParseError) as info:
        _ = bad.cseq
    assert info.value.is_response and info.value.status == 0


# --- make_response (§8.2.6) -----------------------------------------------------------


def test_make_response_copies_the_right_headers() -> None:
    request = parse_request(SUBSCRIBE)
    response = make_response(request, 200, to_tag="srv1")
    assert (response.status, response.reason) == (200, "OK")
    assert [v.branch for v in response.vias] == ["z9hG4bK9b8c7d6e5f4a", "z9hG4bKolder"]
    assert response.from_tag == "c0ffee42" and response.to_tag == "srv1"
    assert response.call_id == request.call_id and response.cseq == request.cseq
    # a dialog-creating 2xx to SUBSCRIBE copies Record-Route (§12.1.1, RFC 6665 §4.1.3)
    assert response.record_routes[0].uri.host == "proxy.example.com"  # type: ignore[union-attr]
    assert "Contact" not in response.headers and "Event" not in response.headers
    assert response.body == b"" and b"Content-Length: 0\r\n\r\n" in response.to_bytes()


def test_make_response_adds_to_tag_only_where_missing() -> None:
    in_dialog = SUBSCRIBE.replace(b"To: <sip:bob@example.com>",
                                  b"To: <sip:bob@example.com>;tag=existing")
    response = make_response(parse_request(in_dialog), 200, to_tag="new")
    assert response.to_tag == "existing"
    assert make_response(parse_request(SUBSCRIBE), 100).to_tag is None
    failed = make_response(parse_request(SUBSCRIBE), 489, "Bad Event", to_tag="t")
    assert failed.reason == "Bad Event" and failed.to_tag == "t"
    assert "Record-Route" not in failed.headers


# --- validate_request ------------------------------------------------------------------


def test_validate_accepts_a_good_request() -> None:
    validate_request(parse_request(SUBSCRIBE))


@pytest.mark.parametrize(("change", "status"), [
    ((b"CSeq: 1 SUBSCRIBE", b"CSeq: 1 NOTIFY"), 400),
    ((b"Call-ID: 7d2e9a1b3c4f5e6d@192.0.2.10\r\n", b""), 400),
    ((b"Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKolder\r\n", b"Via: bogus\r\n"), 400),
    ((b"SUBSCRIBE sip:bob@example.com SIP/2.0", b"SUBSCRIBE sip:bob@example.com SIP/3.0"), 505),
    ((b"SUBSCRIBE sip:bob@example.com", b"SUBSCRIBE im:bob@example.com"), 416),
    ((b"SUBSCRIBE sip:bob@example.com", b"SUBSCRIBE sip:bob@example.com?Subject=x"), 400),
    ((b"Max-Forwards: 70", b"Max-Forwards: 0"), 483),
    ((b"Expires: 600", b"Expires: 600\r\nRequire: foo, bar"), 420),
    ((b"Expires: 600", b"Expires: 600\r\nTo: <sip:carol@example.com>"), 400),
    ((b"Expires: 600", b"Expires: 600\r\nCSeq: 2 SUBSCRIBE"), 400),
])
def test_validate_rejections(change: tuple[bytes, bytes], status: int) -> None:
    request = parse_request(SUBSCRIBE.replace(*change))
    with pytest.raises(SipParseError) as info:
        validate_request(request)
    assert info.value.status == status
    if status == 420:
        assert info.value.unsupported == ["foo", "bar"]
        validate_request(request, supported=frozenset({"foo", "bar"}))
    if status == 483:
        validate_request(request, check_max_forwards=False)


def test_require_is_ignored_for_ack_and_cancel() -> None:
    ack = SUBSCRIBE.replace(b"SUBSCRIBE", b"ACK").replace(b"Expires: 600",
                                                          b"Require: foo")
    validate_request(parse_request(ack))


# --- error_response ------------------------------------------------------------------


def _error_of(data: bytes) -> SipParseError:
    try:
        validate_request(parse_request(data))
    except SipParseError as exc:
        return exc
    raise AssertionError("accepted")


def test_error_response_for_a_malformed_request() -> None:
    data = SUBSCRIBE.replace(b"CSeq: 1 SUBSCRIBE", b"CSeq: 1 INVITE")
    error = _error_of(data)
    response = error_response(data, error)
    assert response is not None
    assert response.status == 400 and "CSeq" in response.reason
    assert response.reason.startswith("Bad Request (")
    assert response.top_via.branch == "z9hG4bK9b8c7d6e5f4a" and len(response.vias) == 2
    assert response.call_id == "7d2e9a1b3c4f5e6d@192.0.2.10"
    assert response.to_tag  # §8.2.6.2: a final response carries a To tag
    assert isinstance(parse_message(response.to_bytes()), Response)


def test_error_response_when_parse_itself_fails() -> None:
    data = SUBSCRIBE.replace(b"Content-Length: 0", b"Content-Length: 50")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    response = error_response(data, info.value, to_tag="fixed")
    assert response is not None and response.status == 400 and response.to_tag == "fixed"


@pytest.mark.parametrize("data", [
    SUBSCRIBE.replace(b"SUBSCRIBE sip", b"ACK sip").replace(b"1 SUBSCRIBE", b"1 ACK")
    .replace(b"Max-Forwards: 70", b"Max-Forwards: x"),
    SUBSCRIBE.replace(b"Call-ID: 7d2e9a1b3c4f5e6d@192.0.2.10\r\n", b""),
    SUBSCRIBE.replace(b"Via: SIP/2.0/TCP", b"Via: junk").replace(b"Via: SIP/2.0/UDP",
                                                                  b"Via: junk"),
    b"",
    b"\x00\xff garbage",
])
def test_no_error_response_when_nothing_may_be_sent(data: bytes) -> None:
    assert error_response(data, SipParseError("broken")) is None


def test_no_error_response_for_status_zero() -> None:
    assert error_response(SUBSCRIBE, SipParseError("drop", 0)) is None


# --- round trip property -------------------------------------------------------------

_token = st.from_regex(r"[A-Za-z][A-Za-z0-9\-.!%*_+`'~]{0,15}", fullmatch=True)
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40
).map(str.strip)


@given(
    method=_token,
    rows=st.lists(st.tuples(_token, _value), max_size=12),
    body=st.binary(max_size=200),
)
def test_message_round_trip(method: str, rows: list[tuple[str, str]], body: bytes) -> None:
    rows = [(n, v) for n, v in rows if n.lower() not in ("content-length", "l")]
    request = Request(method, "sip:x@example.com", Headers(rows), body)
    data = request.to_bytes()
    again = parse_message(data, datagram=False)
    assert isinstance(again, Request)
    assert (again.method, again.raw_uri, again.body) == (method, "sip:x@example.com", body)
    got = [(n, v) for n, v in again.headers.items() if n != "Content-Length"]
    assert got == rows
    assert again.to_bytes() == data


@pytest.mark.parametrize("value, tag", [
    ("<sip:alice@example.com>;tag=abc", "abc"),
    ("sip:alice@example.com;tag=abc;x=1", "abc"),
    ("Alice <sip:alice@example.com;tag=uri-param>", None),  # a URI parameter, not the header's
    ("<sip:alice@example.com>", None),
    ("<sip:tagger@example.com>;TAG=Up", "Up"),  # another spelling: full parser
    ('"a;tag=x" <sip:a@example.com> ; tag = sp', "sp"),  # quotes and LWS: full parser
    ("sip:tagger@example.com", None),  # "tag" in the URI of an addr-spec
])
def test_from_tag_fast_path_agrees_with_the_full_parser(value, tag):
    raw = (f"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
           f"From: {value}\r\nTo: {value}\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n").encode()
    fast, full = parse_message(raw), parse_message(raw)
    assert fast.from_tag == tag and fast.to_tag == tag
    assert full.from_.params.get("tag") == tag  # the full parse says the same


def test_a_header_change_forgets_only_what_was_parsed_from_that_header():
    """Adding received/rport to the Via, or a Contact to a response, must not make From, To
    and CSeq be parsed again (they are read several times per request)."""
    from slee.sip._addressing import Peer, apply_received

    req = parse_request(SUBSCRIBE)
    from_, to, cseq, contacts = req.from_, req.to, req.cseq, req.contacts
    apply_received(req, Peer("tcp", "198.51.100.7", 40000))
    assert req.from_ is from_ and req.to is to and req.cseq is cseq and req.contacts is contacts
    assert req.top_via.params["received"] == "198.51.100.7" and req.top_via.params["rport"] == "40000"
    reparsed = parse_request(req.to_bytes())
    assert str(reparsed.top_via) == str(req.top_via)
    assert [str(v) for v in req.vias] == [str(v) for v in reparsed.vias]  # the list was dropped and rebuilt
    req.headers.add("Contact", "<sip:other@192.0.2.11>")
    assert req.from_ is from_ and len(req.contacts) == 2  # contacts parsed again, From kept
    req.headers.set("From", "<sip:carol@example.com>;tag=x")
    assert req.from_.uri.user == "carol" and req.to is to
    req.headers.remove("Expires")
    assert req.expires is None

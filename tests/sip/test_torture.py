"""Every message of the RFC 4475 / RFC 5118 torture corpus, as the manifest describes it.

Parser-level: ``parse_message`` (datagram rules, as the RFC assumes UDP), then
``validate_request`` as a UAS; RFC 5118 messages use the ``rfc5118-wire`` CRLF copies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from slee.sip import (
    AbsoluteURI,
    FramingFailed,
    MessageFramed,
    Request,
    Response,
    SipMessage,
    SipParseError,
    SipURI,
    StreamFramer,
    error_response,
    parse_message,
    unquote_string,
    validate_request,
)

CORPUS = Path(__file__).parent.parent / "data" / "sip-torture"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
ENTRIES = MANIFEST["messages"]
BY_NAME = {entry["name"]: entry for entry in ENTRIES}


def wire(entry: dict) -> bytes:
    return (CORPUS / (entry.get("wire_file") or entry["file"])).read_bytes()


def outcome_of(data: bytes) -> tuple[SipMessage | None, SipParseError | None]:
    """Parse and validate as a UAS would (Max-Forwards 0 is a proxy's business)."""
    try:
        msg = parse_message(data)
        if isinstance(msg, Request):
            validate_request(msg, check_max_forwards=False)
        else:
            # touch what a UA matches responses on
            _ = (msg.top_via, msg.cseq, msg.call_id, msg.from_tag, msg.to_tag)
    except SipParseError as exc:
        return None, exc
    return msg, None


def assert_round_trip(msg: SipMessage) -> None:
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert (again.method, again.raw_uri) == (msg.method, msg.raw_uri)
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)

    def rows(m: SipMessage) -> list[tuple[str, str]]:
        return [(k, v) for k, _, v in m.headers._rows if k != "content-length"]

    assert rows(again) == rows(msg)
    assert again.body == msg.body
    assert again.content_length == len(msg.body)


def test_manifest_is_complete() -> None:
    assert MANIFEST["count"] == len(ENTRIES) == 62
    assert len(BY_NAME) == 62


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["name"])
def test_file_checksum(entry: dict) -> None:
    data = (CORPUS / entry["file"]).read_bytes()
    assert len(data) == entry["bytes"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    if "wire_file" in entry:
        wire_data = (CORPUS / entry["wire_file"]).read_bytes()
        assert len(wire_data) == entry["wire_bytes"]
        assert hashlib.sha256(wire_data).hexdigest() == entry["wire_sha256"]


# Concrete facts from each entry's `expected` text.
def _wsinv(m: SipMessage) -> None:
    assert m.max_forwards == 68 and m.cseq.seq == 9 and m.cseq.method == "INVITE"
    assert m.to_tag == "1918181833n" and m.from_tag == "98asjd8"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert [v.branch for v in m.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [v.transport for v in m.vias] == ["UDP", "TCP", "UDP"]
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""' and contact.q == 0.33
    assert contact.params["newparam"] == "newvalue" and "secondparam" in contact.params
    assert m.routes[0].uri.lr
    assert len(m.body) == 150


def _intmeth(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.tag == "_token~1'+`*%!-."
    # header parameter names are case-insensitive (lowercased); the UTF-8 quoted value
    # is kept as received
    assert unquote_string(m.from_.params["fromparam''~+*_!.-%"] or "") == "работающий"
    uri = m.uri
    assert isinstance(uri, SipURI)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"


def _esc01(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.uri.user == "sips:user@example.com"  # type: ignore[union-attr]
    assert m.to.uri.user == "user"  # type: ignore[union-attr]
    assert m.from_.uri.user == "I have spaces"  # type: ignore[union-attr]
    contact_uri = m.contacts[0].uri
    assert isinstance(contact_uri, SipURI)
    assert contact_uri.user == "caller" and contact_uri.lr
    assert contact_uri.params["name"] == "value%41"  # unescaped once, never recursively


def _escnull(m: SipMessage) -> None:
    users = [c.uri.user for c in m.contacts]  # type: ignore[union-attr]
    assert users == ["\x00", "\x00\x00"]
    assert not m.contacts[0].uri.equivalent(m.contacts[1].uri)
    assert m.to.uri.user == "null-\x00-null"  # type: ignore[union-attr]


def _esc02(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.method == "RE%47IST%45R" != "REGISTER"
    assert m.from_.display_name == "%Z%45" and m.to.display_name == "%Z%45"
    assert [c.uri.host for c in m.contacts] == [  # type: ignore[union-attr]
        "host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def _lwsdisp(m: SipMessage) -> None:
    assert m.from_.display_name == "caller" and m.from_.tag == "323"


def _longreq(m: SipMessage) -> None:
    assert m.to.display_name is not None and "extremeextreme" in m.to.display_name
    assert m.to.uri.port == 6000  # type: ignore[union-attr]
    assert len(m.from_tag or "") > 100
    assert len(m.vias) == 34 and len(m.contacts) == 1


def _dblreq(m: SipMessage) -> None:
    assert isinstance(m, Request) and m.method == "REGISTER" and m.body == b""


def _semiuri(m: SipMessage) -> None:
    assert isinstance(m, Request)
    uri = m.uri
    assert isinstance(uri, SipURI)
    assert uri.user == "user;par=u@example.net" and uri.host == "example.com"
    assert uri.params == {}
    assert m.accept == ["application/sdp", "application/pkcs7-mime", "multipart/mixed",
                        "multipart/signed", "message/sip", "message/sipfrag"]


def _transports(m: SipMessage) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def _mpart01(m: SipMessage) -> None:
    assert len(m.body) == 553 and b"\x00" in m.body
    assert m.content_type == "multipart/mixed"
    assert m.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"


def _unreason(m: SipMessage) -> None:
    assert isinstance(m, Response) and m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 ") and "\u043d\u043e" in m.reason


def _noreason(m: SipMessage) -> None:
    assert isinstance(m, Response) and m.status == 100 and m.reason == ""


def _bcast(m: SipMessage) -> None:
    assert isinstance(m, Response) and m.vias[1].host == "255.255.255.255"


def _zeromf(m: SipMessage) -> None:
    assert isinstance(m, Request) and m.max_forwards == 0
    with pytest.raises(SipParseError) as info:
        validate_request(m)  # as a proxy would
    assert info.value.status == 483


def _unksm2(m: SipMessage) -> None:
    # a registrar answers 400 because the AOR is not a SIP URI; the parser accepts it
    assert isinstance(m.to.uri, AbsoluteURI) and m.to.uri.scheme == "isbn"
    assert isinstance(m.contacts[0].uri, AbsoluteURI)


def _sdp01(m: SipMessage) -> None:
    # a UAS answers 406 because Accept lacks application/sdp
    assert m.accept == ["text/nobodyknowsthis"] and m.content_type == "application/sdp"


def _invut(m: SipMessage) -> None:
    assert m.content_type == "application/unknownformat" and len(m.body) == 40


def _regaut01(m: SipMessage) -> None:
    (creds,) = m.authorization
    assert creds.scheme == "NoOneKnowsThisScheme" and creds.params == {"opaque-data": "here"}


def _cparam01(m: SipMessage) -> None:
    (c,) = m.contacts
    assert c.params == {"unknownparam": None} and c.uri.params == {}  # type: ignore[union-attr]


def _cparam02(m: SipMessage) -> None:
    (c,) = m.contacts
    assert c.params == {} and c.uri.params == {"unknownparam": None}  # type: ignore[union-attr]


def _regescrt(m: SipMessage) -> None:
    uri = m.contacts[0].uri
    assert isinstance(uri, SipURI) and uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def _inv2543(m: SipMessage) -> None:
    assert m.top_via.branch is None and m.from_tag is None and m.max_forwards is None
    assert m.body.startswith(b"v=0") and m.body.endswith(b"RTP/AVP 0\r\n")


def _ipv6_good(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.uri.host == "2001:db8::10" and m.uri.port is None  # type: ignore[union-attr]
    assert m.top_via.host == "2001:db8::9:1"
    assert m.contacts[0].uri.host == "2001:db8::1"  # type: ignore[union-attr]


def _port_ambiguous(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.uri.host == "2001:db8::10:5070" and m.uri.port is None  # type: ignore[union-attr]


def _port_unambiguous(m: SipMessage) -> None:
    assert isinstance(m, Request)
    assert m.uri.host == "2001:db8::10" and m.uri.port == 5070  # type: ignore[union-attr]
    assert m.uri.host_port() == "[2001:db8::10]:5070"  # type: ignore[union-attr]


def _received_with(m: SipMessage) -> None:
    assert m.top_via.received == "2001:db8::9:255" and m.top_via.branch == "z9hG4bKas3-111"


def _received_without(m: SipMessage) -> None:
    assert m.top_via.received == "2001:db8::9:255" and m.top_via.branch == "z9hG4bKas3"


def _mult_ip(m: SipMessage) -> None:
    assert [(v.host, v.port) for v in m.vias] == [
        ("2001:db8::9:1", 6050), ("192.0.2.1", None), ("2001:db8::9:255", None)]
    assert m.vias[2].received == "192.0.2.200"


def _mapped(m: SipMessage) -> None:
    assert m.top_via.host == "::ffff:192.0.2.10" and m.top_via.port == 19823
    assert m.contacts[0].display_name == "T. desk phone"


def _three_colons(m: SipMessage) -> None:
    assert m.uri.host == "2001:db8:::192.0.2.1"  # type: ignore[union-attr]


FACTS: dict[str, Callable[[SipMessage], None]] = {
    "wsinv": _wsinv, "intmeth": _intmeth, "esc01": _esc01, "escnull": _escnull,
    "esc02": _esc02, "lwsdisp": _lwsdisp, "longreq": _longreq, "dblreq": _dblreq,
    "semiuri": _semiuri, "transports": _transports, "mpart01": _mpart01,
    "unreason": _unreason, "noreason": _noreason, "bcast": _bcast, "zeromf": _zeromf,
    "unksm2": _unksm2, "sdp01": _sdp01, "invut": _invut, "regaut01": _regaut01,
    "cparam01": _cparam01, "cparam02": _cparam02, "regescrt": _regescrt,
    "inv2543": _inv2543, "ipv6-good": _ipv6_good, "port-ambiguous": _port_ambiguous,
    "port-unambiguous": _port_unambiguous, "via-received-param-with-delim": _received_with,
    "via-received-param-no-delim": _received_without, "mult-ip-in-header": _mult_ip,
    "ipv4-mapped-ipv6": _mapped, "ipv6-bug-abnf-3-colons": _three_colons,
}

# valid messages whose rejection is an application decision (registrar/UAS), not the
# parser's: they must parse and validate, the facts above show what the app decides on.
APPLICATION_LEVEL = {"unksm2", "sdp01"}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["name"])
def test_torture_message(entry: dict) -> None:
    name, outcome, expected = entry["name"], entry["outcome"], entry["expected_status"]
    data = wire(entry)
    msg, error = outcome_of(data)

    if name == "test":
        # not an RFC test case: it must simply not crash anything
        if error is not None:
            error_response(data, error)
        return

    if entry["kind"] == "response":
        # never answered, whatever happened
        err = error or SipParseError("probe")
        assert error_response(data, err) is None
        if error is not None:
            assert error.is_response and error.status == 0
        if entry["valid"]:
            assert error is None, error
            assert isinstance(msg, Response)
        else:
            assert outcome == "discard"
    elif outcome == "accept" or name in APPLICATION_LEVEL:
        assert error is None, error
        assert isinstance(msg, Request) and msg.method == entry["method"]
    elif outcome == "reject":
        assert error is not None, f"{name} was accepted"
        assert error.status in expected, error
    elif outcome == "either":
        assert error is None or error.status in expected, error
    else:  # pragma: no cover - manifest vocabulary
        raise AssertionError(outcome)

    if error is not None and not error.is_response:
        response = error_response(data, error)
        if response is not None:
            assert response.status == error.status
            again = parse_message(response.to_bytes())
            assert isinstance(again, Response) and again.status == error.status
            try:
                to = again.to
            except SipParseError:
                to = None  # a broken To is echoed as received (quotbal, baddn, ...)
            if to is not None:
                assert to.tag is not None
    if msg is not None:
        assert_round_trip(msg)
        if name in FACTS:
            FACTS[name](msg)


def test_every_expected_fact_is_checked() -> None:
    assert set(FACTS) <= set(BY_NAME)


@pytest.mark.parametrize("name", ["badinv01", "scalar02", "quotbal", "mismatch01", "insuf",
                                  "bext01", "badvers", "unkscm", "multi01"])
def test_error_responses_for_rejected_requests(name: str) -> None:
    data = wire(BY_NAME[name])
    _, error = outcome_of(data)
    assert error is not None
    response = error_response(data, error)
    if name == "insuf":
        assert response is None  # no Call-ID, From or To: nothing to answer with
        return
    assert response is not None and response.status == error.status
    assert response.call_id and response.headers.get("CSeq") == msg_cseq(data)
    assert response.top_via.host
    if name == "bext01":
        assert response.status == 420
        assert response.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
        assert error.unsupported == ["nothingSupportsThis", "nothingSupportsThisEither"]
    if name == "badvers":
        assert response.status == 505


def msg_cseq(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"cseq:"):
            return line[5:].strip().decode()
    raise AssertionError("no CSeq")


def test_error_response_salvages_broken_via() -> None:
    data = wire(BY_NAME["badinv01"])
    _, error = outcome_of(data)
    assert error is not None
    response = error_response(data, error)
    assert response is not None
    assert str(response.top_via) == "SIP/2.0/UDP 192.0.2.15"


def test_stateless_to_tag_is_stable_across_retransmissions() -> None:
    data = wire(BY_NAME["mismatch01"])
    _, error = outcome_of(data)
    assert error is not None
    first, second = error_response(data, error), error_response(data, error)
    assert first is not None and second is not None
    assert first.to_tag == second.to_tag is not None


def test_proxy_require_checked_only_for_proxies() -> None:
    msg = parse_message(wire(BY_NAME["bext01"]))
    assert isinstance(msg, Request)
    with pytest.raises(SipParseError) as info:
        validate_request(msg, supported=frozenset({"nothingSupportsThis",
                                                   "nothingSupportsThisEither"}),
                         proxy_supported=frozenset())
    assert info.value.status == 420
    assert info.value.unsupported == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    validate_request(msg, supported=frozenset({"nothingSupportsThis",
                                               "nothingSupportsThisEither"}))


# --- the same bytes on a stream transport (README step 4) ---------------------------


@pytest.mark.parametrize("name", ["ncl", "mcl01", "inv2543"])
def test_udp_entries_are_framing_failures_on_streams(name: str) -> None:
    events = StreamFramer().feed(wire(BY_NAME[name]))
    assert len(events) == 1 and isinstance(events[0], FramingFailed)
    assert events[0].status == 400


def test_clerr_on_a_stream_waits_for_the_missing_octets() -> None:
    framer = StreamFramer()
    assert framer.feed(wire(BY_NAME["clerr"])) == []
    assert not framer.failed


def test_dblreq_on_a_stream_is_two_messages() -> None:
    framer = StreamFramer()
    events = framer.feed(wire(BY_NAME["dblreq"]))
    framed = [e for e in events if isinstance(e, MessageFramed)]
    # on a stream the "noise" is the next message (its CRLF prefix a keep-alive)
    assert [parse_message(f.data, datagram=False).method for f in framed] == [  # type: ignore[union-attr]
        "REGISTER", "INVITE"]
    # ...and the INVITE's body is shorter than its Content-Length, so what follows it
    # ("C" CRLF CRLF) cannot be framed: the connection must be closed.
    assert isinstance(events[-1], FramingFailed) and framer.failed


@pytest.mark.parametrize("name", ["baddn", "ipv6-bug-abnf-3-colons"])
def test_unterminated_header_section(name: str) -> None:
    entry = BY_NAME[name]
    raw = (CORPUS / entry["file"]).read_bytes()
    # as a datagram the end of the packet ends the header section...
    try:
        parse_message(raw)
    except SipParseError as exc:
        assert exc.status == 400
    # ...on a stream it cannot be framed yet
    assert StreamFramer().feed(raw) == []
    with pytest.raises(SipParseError):
        parse_message(raw, datagram=False)

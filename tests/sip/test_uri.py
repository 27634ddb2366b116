"""URIs: RFC 3261 §19.1 (escapes, parameters, headers, comparison), RFC 5118 (IPv6)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slee.sip import AbsoluteURI, SipParseError, SipURI, TelURI, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_uri("sips:Alice:secret@Example.COM:5061;transport=TLS;lr;maddr=10.0.0.1"
                    "?Subject=hi%20there&Priority=urgent")
    assert isinstance(uri, SipURI)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "Alice", "secret", "example.com", 5061)
    assert uri.params == {"transport": "TLS", "lr": None, "maddr": "10.0.0.1"}
    assert uri.transport == "tls" and uri.lr and uri.secure
    assert uri.headers == {"Subject": "hi there", "Priority": "urgent"}
    assert uri.host_port() == "example.com:5061"


def test_ipv6_reference_and_host_port() -> None:
    uri = parse_uri("sip:alice@[2001:DB8::1]:5070;transport=tcp")
    assert isinstance(uri, SipURI)
    assert uri.host == "2001:db8::1" and uri.port == 5070
    assert uri.host_port() == "[2001:db8::1]:5070"
    assert str(uri) == "sip:alice@[2001:db8::1]:5070;transport=tcp"


@pytest.mark.parametrize("text", [
    "sip:2001:db8::10",             # RFC 5118 §4.2: IPv6 without brackets
    "sip:alice@[2001:db8::1",       # unterminated reference
    "sip:alice@host:99999",         # port out of range
    "sip:alice@host:port",
    "sip:",
    "sip:alice@",
    "sip:alice@host;;lr",           # empty parameter
    "sip:alice@exa mple.com",
    "<sip:alice@example.com>",
    "no-scheme",
])
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_escapes_are_undone_once() -> None:
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert isinstance(uri, SipURI)
    assert uri.user == "caller" and uri.lr and uri.params["name"] == "value%41"
    assert parse_uri(str(uri)).equivalent(uri)


def test_user_with_reserved_characters_is_re_escaped() -> None:
    uri = SipURI(user="a b@c:d", host="example.com")
    assert str(uri) == "sip:a%20b%40c%3Ad@example.com"
    again = parse_uri(str(uri))
    assert isinstance(again, SipURI) and again.user == "a b@c:d"


def test_tel_and_absolute_uris() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, TelURI) and tel.is_global
    assert tel.params == {"phone-context": "example.com"}
    assert tel.equivalent(parse_uri("tel:+12015550123;phone-context=EXAMPLE.com"))
    other = parse_uri("urn:service:sos")
    assert isinstance(other, AbsoluteURI) and other.scheme == "urn"
    assert str(other) == "urn:service:sos"


def test_equivalence_rules_of_rfc3261_19_1_4() -> None:
    def eq(a: str, b: str) -> bool:
        return parse_uri(a).equivalent(parse_uri(b))

    # the RFC's examples of equivalent URIs
    assert eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp")
    assert eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5")
    assert eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5")
    assert eq("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
              "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com")
    assert eq("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
              "sip:alice@atlanta.com?priority=urgent&subject=project%20x")
    # ... and of URIs that are not
    assert not eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP")
    assert not eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060")
    assert not eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp")
    assert not eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp")
    assert not eq("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting")
    assert not eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4")
    assert not eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off")
    assert not eq("sip:alice@example.com", "sips:alice@example.com")


# --- property: parse(str(uri)) is equivalent to uri ------------------------------------

_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join).filter(
    lambda h: not h.replace(".", "").isdigit())
_ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_ipv6 = st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n).compressed)
_pname = st.from_regex(r"[a-z0-9][a-z0-9\-_.!~*'()]{0,8}", fullmatch=True)
_text = st.text(min_size=1, max_size=12)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipURI:
    user = draw(st.none() | _text)
    return SipURI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=draw(st.none() | st.text(max_size=8)) if user is not None else None,
        host=draw(_hostname | _ipv4 | _ipv6),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(st.dictionaries(_pname, st.none() | _text, max_size=4)),
        headers=draw(st.dictionaries(_text, st.text(max_size=10), max_size=3)),
    )


@given(sip_uris())
def test_uri_round_trip(uri: SipURI) -> None:
    text = str(uri)
    assert not any(c.isspace() for c in text)
    again = parse_uri(text)
    assert again.equivalent(uri)
    assert again == uri  # every component survives, not just the compared ones
    assert str(again) == text

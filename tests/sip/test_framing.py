"""TCP framing (RFC 3261 §18.3) and keep-alives (RFC 5626 §3.5.1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slee.sip import (
    FramingFailed,
    KeepAliveReceived,
    MessageFramed,
    StreamFramer,
    parse_message,
)


def message(n: int, body: bytes = b"") -> bytes:
    return (
        f"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK{n}\r\n"
        f"Call-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def framed(events: list) -> list[bytes]:
    return [e.data for e in events if isinstance(e, MessageFramed)]


def test_pipelined_messages_in_one_read() -> None:
    data = message(1) + message(2, b"hello") + message(3)
    events = StreamFramer().feed(data)
    assert framed(events) == [message(1), message(2, b"hello"), message(3)]
    assert all(isinstance(e, MessageFramed) for e in events)


def test_partial_reads() -> None:
    framer = StreamFramer()
    data = message(7, b"body\r\n\r\nwith blank lines")
    assert framer.feed(data[:10]) == []
    assert framer.feed(data[10:-3]) == []
    assert framer.buffered == len(data) - 3
    assert framed(framer.feed(data[-3:])) == [data]
    assert framer.buffered == 0


def test_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KeepAliveReceived(pong=True)]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [KeepAliveReceived(pong=True)] * 2
    # a lone CRLF (a pong, or noise before a message, §7.5) needs no answer
    events = framer.feed(b"\r\n" + message(1))
    assert events == [KeepAliveReceived(pong=False), MessageFramed(message(1))]
    # a ping split across reads is still one ping to answer
    framer = StreamFramer()
    first = framer.feed(b"\r\n")
    second = framer.feed(b"\r\n")
    assert [e.pong for e in first + second].count(True) == 1
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [KeepAliveReceived(pong=True)]


def test_missing_content_length_fails() -> None:
    framer = StreamFramer()
    events = framer.feed(b"OPTIONS sip:b@x SIP/2.0\r\nCall-ID: x\r\n\r\n")
    assert events == [FramingFailed(400, "Bad Request (missing Content-Length)")]
    assert framer.failed and framer.feed(message(1)) == []


def test_bad_content_lengths_fail() -> None:
    for row in (b"Content-Length: -5", b"l: five", b"Content-Length: 1\r\nl: 1",
                b"Content-Length: 0x10"):
        events = StreamFramer().feed(b"OPTIONS sip:b@x SIP/2.0\r\n" + row + b"\r\n\r\n")
        assert len(events) == 1 and isinstance(events[0], FramingFailed)
        assert events[0].status == 400


def test_folded_and_compact_content_length() -> None:
    data = b"OPTIONS sip:b@x SIP/2.0\r\nl :\r\n 3\r\n\r\nabc"
    assert framed(StreamFramer().feed(data)) == [data]


def test_message_size_limit() -> None:
    framer = StreamFramer(max_message_size=200)
    events = framer.feed(message(1, b"x" * 500))
    assert events == [FramingFailed(513, "Message Too Large")]
    # also while the header section is still incomplete
    framer = StreamFramer(max_message_size=200)
    events = framer.feed(b"OPTIONS sip:b@x SIP/2.0\r\n" + b"X-A: b\r\n" * 30)
    assert events == [FramingFailed(513, "Message Too Large")]


def test_header_line_limits() -> None:
    framer = StreamFramer(max_header_lines=5)
    events = framer.feed(b"OPTIONS sip:b@x SIP/2.0\r\n" + b"X-A: b\r\n" * 6)
    assert len(events) == 1 and isinstance(events[0], FramingFailed)
    assert events[0].status == 400
    framer = StreamFramer(max_line_length=100)
    assert framer.feed(b"OPTIONS sip:b@x SIP/2.0\r\nX-Long: ") == []
    events = framer.feed(b"y" * 100)
    assert len(events) == 1 and isinstance(events[0], FramingFailed)
    # exactly at the limits is fine
    ok = b"OPTIONS sip:b@x SIP/2.0\r\nX: " + b"z" * 60 + b"\r\nl: 0\r\n\r\n"
    assert framed(StreamFramer(max_line_length=len(ok.split(b"\r\n")[1]) + 1,
                               max_header_lines=3).feed(ok)) == [ok]


def test_slow_sender_one_octet_at_a_time() -> None:
    framer = StreamFramer()
    data = message(1, b"abc") + b"\r\n\r\n" + message(2)
    events = []
    for i in range(len(data)):
        events += framer.feed(data[i:i + 1])
    assert framed(events) == [message(1, b"abc"), message(2)]
    assert [e.pong for e in events if isinstance(e, KeepAliveReceived)].count(True) == 1


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], int, bytes, list[int]]:
    bodies = draw(st.lists(st.binary(max_size=60), min_size=1, max_size=6))
    messages = [message(i, body) for i, body in enumerate(bodies)]
    pings = draw(st.lists(st.booleans(), min_size=len(messages), max_size=len(messages)))
    stream = b"".join((b"\r\n\r\n" if ping else b"") + m for ping, m in zip(
        pings, messages, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return messages, sum(pings), stream, cuts


@given(streams())
def test_any_split_gives_the_same_messages(case: tuple[list[bytes], int, bytes, list[int]],
                                           ) -> None:
    messages, ping_count, stream, cuts = case
    framer = StreamFramer()
    events: list = []
    start = 0
    for cut in [*cuts, len(stream)]:
        events += framer.feed(stream[start:cut])
        start = cut
    assert framed(events) == messages
    assert not any(isinstance(e, FramingFailed) for e in events)
    pongs = [e.pong for e in events if isinstance(e, KeepAliveReceived)]
    assert pongs.count(True) == ping_count
    assert framer.buffered == 0
    for data in framed(events):
        assert parse_message(data, datagram=False).call_id.startswith("c")

"""Parser throughput on realistic presence traffic (a script, not a test).

Prints messages/second for (1) the hot path a server touches for every message -- start
line, top Via branch, From/To tags, Call-ID, CSeq, Event, Expires -- and (2) a full parse
of every header plus serialisation. Run: ``python bench/bench_parse.py [seconds]``.
"""

from __future__ import annotations

import sys
import time

from slee.sip import Request, parse_message

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">\r\n'
    b'  <tuple id="t8a3f"><status><basic>open</basic></status>\r\n'
    b"    <contact priority=\"0.8\">sip:alice@192.0.2.10:5060</contact>\r\n"
    b"    <note>Available</note></tuple>\r\n"
    b"</presence>\r\n"
)

COMMON = (
    "Max-Forwards: 70\r\n"
    "User-Agent: baresip v3.10.1 (x86_64/Linux)\r\n"
)

MESSAGES = {
    "REGISTER": (
        "REGISTER sip:example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK6f1a0c2e8d\r\n"
        + COMMON +
        "To: <sip:alice@example.com>\r\n"
        "From: \"Alice\" <sip:alice@example.com>;tag=8f2c1d0a\r\n"
        "Call-ID: 4c1e5a7b9d2f@192.0.2.10\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;"
        "+sip.instance=\"<urn:uuid:6f1a0c2e-8d3b-4c5a-9e7f-0a1b2c3d4e5f>\";reg-id=1\r\n"
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
        "Supported: path, outbound, gruu\r\n"
        "Authorization: Digest username=\"alice\", realm=\"example.com\", "
        "nonce=\"a1b2c3d4e5f6\", uri=\"sip:example.com\", response=\"0123456789abcdef0123456789"
        "abcdef\", algorithm=MD5, cnonce=\"9f8e7d6c\", qop=auth, nc=00000001\r\n"
        "Expires: 3600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode(),
    "SUBSCRIBE": (
        "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.10:50512;rport;branch=z9hG4bK9b8c7d6e5f4a\r\n"
        "Route: <sip:proxy.example.com;transport=tcp;lr>\r\n"
        + COMMON +
        "To: <sip:bob@example.com>\r\n"
        "From: \"Alice\" <sip:alice@example.com>;tag=c0ffee42\r\n"
        "Call-ID: 7d2e9a1b3c4f5e6d@192.0.2.10\r\n"
        "CSeq: 1 SUBSCRIBE\r\n"
        "Contact: <sip:alice@192.0.2.10:50512;transport=tcp>;+sip.instance=\"<urn:uuid:6f1a0c2e"
        "-8d3b-4c5a-9e7f-0a1b2c3d4e5f>\"\r\n"
        "Event: presence\r\n"
        "Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n"
        "Allow-Events: presence, message-summary, refer\r\n"
        "Supported: eventlist\r\n"
        "Expires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode(),
    "PUBLISH": (
        "PUBLISH sip:alice@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK1a2b3c4d5e\r\n"
        + COMMON +
        "To: <sip:alice@example.com>\r\n"
        "From: <sip:alice@example.com>;tag=77aa88bb\r\n"
        "Call-ID: 9a8b7c6d5e4f@192.0.2.10\r\n"
        "CSeq: 5 PUBLISH\r\n"
        "Event: presence\r\n"
        "SIP-If-Match: dx200xyz\r\n"
        "Expires: 3600\r\n"
        "Content-Type: application/pidf+xml\r\n"
        f"Content-Length: {len(PIDF)}\r\n\r\n"
    ).encode() + PIDF,
    "NOTIFY": (
        "NOTIFY sip:alice@192.0.2.10:50512;transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKnotify001\r\n"
        "Max-Forwards: 70\r\n"
        "To: \"Alice\" <sip:alice@example.com>;tag=c0ffee42\r\n"
        "From: <sip:bob@example.com>;tag=presence-srv-1\r\n"
        "Call-ID: 7d2e9a1b3c4f5e6d@192.0.2.10\r\n"
        "CSeq: 2 NOTIFY\r\n"
        "Contact: <sip:presence@198.51.100.1:5060;transport=tcp>\r\n"
        "Event: presence\r\n"
        "Subscription-State: active;expires=599\r\n"
        "Content-Type: application/pidf+xml\r\n"
        f"Content-Length: {len(PIDF)}\r\n\r\n"
    ).encode() + PIDF,
}


def hot_path(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    _ = (msg.method, msg.raw_uri, msg.top_via.branch, msg.from_tag, msg.to_tag,
         msg.call_id, msg.cseq, msg.event, msg.expires)


def full(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    _ = (msg.uri, msg.vias, msg.from_.uri, msg.to.uri, msg.call_id, msg.cseq,
         msg.max_forwards, [c.uri for c in msg.contacts], msg.expires, msg.event,
         msg.content_type, msg.subscription_state, msg.sip_if_match, msg.allow_events,
         msg.supported, msg.require, [r.uri for r in msg.routes], msg.accept,
         msg.authorization)
    msg.to_bytes()


def rate(func, data: bytes, seconds: float, rounds: int = 5) -> float:
    """Best of ``rounds`` timed loops (like timeit: the minimum is the least disturbed by
    other processes on the machine)."""
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(100):
                func(data)
            count += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(f"{'message':<10} {'bytes':>6} {'hot-path msgs/s':>16} {'full+serialise msgs/s':>22}")
    for name, data in MESSAGES.items():
        hot = rate(hot_path, data, seconds)
        whole = rate(full, data, seconds)
        print(f"{name:<10} {len(data):>6} {hot:>16,.0f} {whole:>22,.0f}")


if __name__ == "__main__":
    main()

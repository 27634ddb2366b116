"""RFC 4475 / RFC 5118 torture messages sent to a running registrar+proxy over UDP and TCP.

As tests/data/sip-torture/README.md ("Server-level tests") says: every file goes byte-exact
as one UDP datagram or on a fresh TCP connection (RFC 5118 from ``rfc5118-wire/``), it is
checked by its manifest ``outcome``, and after every file a fresh OPTIONS must get 200 within
2 s. Each transport has its own server, so the same REGISTER sent twice (UDP then TCP) is not
an out-of-order CSeq.

Over UDP the server answers the top Via (RFC 3261 §18.2.2: the received address and the
Via's port, 5060 by default), not the test's socket; only messages whose answer comes back to
us can be checked there, see ``test_udp_answers``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slee.sip import parse_message
from tests.e2e.server import ServerInfo, running_server

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sip-torture"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())["messages"]
ENTRIES = {e["name"]: e for e in MANIFEST}
_seq = itertools.count(1)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def wire_bytes(entry: dict) -> bytes:
    return (CORPUS / (entry.get("wire_file") or entry["file"])).read_bytes()


def statuses(data: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"(?m)^SIP/2\.0 (\d{3}) ", data)]


# -- servers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def udp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    # force_rport: answer the datagram's source address and port (RFC 3581), so the test's
    # socket sees the answers even though the corpus messages' Vias name other ports
    with running_server("registrar", tmp_path_factory.mktemp("torture-udp"),
                        extra_args=("--set", "force_rport=true")) as s:
        yield s


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    with running_server("registrar", tmp_path_factory.mktemp("torture-tcp")) as s:
        yield s


def _udp_request(server: ServerInfo, text_lines: list[str], timeout: float = 2.0) -> list[bytes]:
    """Send one request from a fresh UDP socket (Via with our port and rport) and collect
    what comes back until a final response or ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        raw = "\r\n".join(line.replace("{port}", str(port)) for line in text_lines).encode()
        s.sendto(raw, server.sip_address)
        deadline = time.monotonic() + timeout
        got: list[bytes] = []
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = s.recvfrom(65535)
            except TimeoutError:
                break
            got.append(data)
            if statuses(data) and statuses(data)[0] >= 200:
                break
        return got


def assert_alive(server: ServerInfo) -> None:
    """A fresh OPTIONS to the server itself gets 200 within 2 s."""
    n = next(_seq)
    got = _udp_request(server, [
        f"OPTIONS sip:{server.sip_host}:{server.sip_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bK-alive-{n};rport",
        "Max-Forwards: 70", f"From: <sip:probe@example.com>;tag=p{n}", f"To: <sip:{server.sip_host}>",
        f"Call-ID: alive-{n}", f"CSeq: {n} OPTIONS", "Content-Length: 0", "", ""])
    finals = [c for g in got for c in statuses(g) if c >= 200]
    assert finals == [200], f"the server stopped answering OPTIONS: {got!r}"


def query_bindings(server: ServerInfo, aor: str) -> list[str]:
    """The Contact URIs the registrar lists for ``aor`` (REGISTER without Contact)."""
    n = next(_seq)
    got = _udp_request(server, [
        "REGISTER sip:example.com SIP/2.0", f"Via: SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bK-q-{n};rport",
        "Max-Forwards: 70", f"From: <{aor}>;tag=q{n}", f"To: <{aor}>", f"Call-ID: query-{n}",
        "CSeq: 1 REGISTER", "Content-Length: 0", "", ""])
    finals = [parse_message(g) for g in got if statuses(g) and statuses(g)[0] >= 200]
    assert finals and finals[0].status == 200, got
    return [c.uri_text for c in finals[0].contacts]


# -- the corpus itself ---------------------------------------------------------------------------
def test_corpus_files_are_byte_exact():
    for entry in MANIFEST:
        data = (CORPUS / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["name"]


# -- TCP: every answer comes back on the connection ----------------------------------------------
def tcp_exchange(server: ServerInfo, data: bytes, *, idle: float = 0.5, limit: float = 2.5) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; read until ``idle`` seconds of silence after the
    first final response, or ``limit``. Returns (bytes received, closed by the server)."""
    with socket.create_connection(server.sip_address, timeout=limit) as s:
        s.sendall(data)
        received = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            final_seen = any(c >= 200 for c in statuses(received))
            s.settimeout(min(idle if final_seen else limit, max(0.01, deadline - time.monotonic())))
            try:
                chunk = s.recv(65535)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
        return received, False


TCP_FRAMING = {"dblreq", "clerr", "ncl", "mcl01", "inv2543"}  # transport UDP in the manifest
# The server is a registrar and a proxy, not a UAS: an INVITE to an unknown user is answered
# by routing (404, or 408 when a registered contact is unreachable), before any UAS check of Accept / SDP (RFC 4475 §3.4.2 is a UAS rule).
PROXY_ROLE = {"sdp01": {404, 408, 480}}  # unknown user, or a registered contact unreachable


def _call_id_cseq(data: bytes) -> tuple[bytes, bytes] | None:
    call_id = re.search(rb"(?mi)^(?:call-id|i)[ \t]*:[ \t]*(\S+)", data)
    cseq = re.search(rb"(?mi)^cseq[ \t]*:[ \t]*(\d+)", data)
    return (call_id.group(1), cseq.group(1)) if call_id and cseq else None


def _replays_an_earlier_register(name: str) -> bool:
    """True when an earlier corpus REGISTER has the same Call-ID and CSeq: a registrar then
    answers 500 (RFC 3261 §10.3 step 7) — e.g. the RFC 5118 port-* files repeat ipv6-good's."""
    names = list(ENTRIES)
    mine = _call_id_cseq(wire_bytes(ENTRIES[name]))
    return mine is not None and any(_call_id_cseq(wire_bytes(ENTRIES[n])) == mine
                                    for n in names[:names.index(name)] if ENTRIES[n]["method"] == "REGISTER")


def test_tcp_answer_comes_back_on_the_connection(tcp_server: ServerInfo):
    """RFC 3261 §18.2.2 / §18.2.1: a request that arrived on a TCP connection is answered on it,
    whatever transport its Via names (the corpus messages all say UDP)."""
    received, _closed = tcp_exchange(tcp_server, wire_bytes(ENTRIES["badvers"]))
    assert statuses(received)[-1:] == [505], received


@pytest.mark.parametrize("name", list(ENTRIES))
def test_tcp(tcp_server: ServerInfo, name: str):
    entry = ENTRIES[name]
    received, closed = tcp_exchange(tcp_server, wire_bytes(entry))
    codes = statuses(received)
    finals = [c for c in codes if c >= 200]
    if name == "test":  # not an RFC case (README): only the liveness check below
        pass
    elif entry["kind"] == "response":  # never answered: it matches no transaction
        assert codes == [], received
    elif name == "baddn":  # no empty line ends the headers: the server waits (or rejects)
        assert finals in ([], [400]), received
    elif name in TCP_FRAMING:
        # A framing problem on a stream: wait for the missing bytes, or answer and close on
        # the bytes that follow; trailing bytes are the next message, never skipped as noise.
        if name == "dblreq":  # REGISTER, then an INVITE whose body is 5 octets longer than CL
            assert finals[:1] == [200] or closed, received
        elif name == "clerr":
            assert finals == [] and not closed, received  # 9999 octets announced: keep waiting
        else:
            assert not [c for c in finals if c != 400], received
            assert finals or closed, received
    elif name in PROXY_ROLE:
        assert finals[:1] and finals[0] in PROXY_ROLE[name], received
    elif entry["outcome"] == "reject":
        assert finals[:1] and finals[0] in entry["expected_status"], (finals, received)
    elif entry["outcome"] == "either":
        assert finals[:1] and (finals[0] in entry["expected_status"] or finals[0] != 400), received
    elif entry["outcome"] == "accept":
        assert finals and 400 not in finals, received
        if entry["method"] == "REGISTER":
            allowed = [200, 500] if _replays_an_earlier_register(name) else [200]
            assert finals[0] in allowed, received
    assert_alive(tcp_server)
    _registrar_follow_up(tcp_server, name)


# -- UDP -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ENTRIES))
def test_udp_keeps_serving(udp_server: ServerInfo, name: str):
    """Every file as one datagram; the server keeps answering, and registrations happen."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(wire_bytes(ENTRIES[name]), udp_server.sip_address)
    time.sleep(0.05)
    assert_alive(udp_server)
    if name == "cparam02" and "cparam01" in _udp_sent:
        # Same branch, sent-by and method as cparam01 sent moments ago: over UDP that is a
        # retransmission of cparam01's transaction (RFC 3261 §17.2.3), answered from it and
        # not processed again, so the binding keeps cparam01's contact.
        assert query_bindings(udp_server, "sip:watson@example.com") == ["sip:+19725552222@gw1.example.net"]
    else:
        _registrar_follow_up(udp_server, name)
    _udp_sent.add(name)


_udp_sent: set[str] = set()


def _registrar_follow_up(server: ServerInfo, name: str) -> None:
    """README step 5: fetch the bindings the torture REGISTERs made."""
    if name == "cparam01":
        contacts = query_bindings(server, "sip:watson@example.com")
        assert contacts == ["sip:+19725552222@gw1.example.net"], contacts  # ;unknownparam is a contact-param
    elif name == "cparam02":
        contacts = query_bindings(server, "sip:watson@example.com")
        assert contacts == ["sip:+19725552222@gw1.example.net;unknownparam"], contacts  # a URI parameter
    elif name == "regescrt":
        contacts = query_bindings(server, "sip:user@example.com")
        assert "sip:user@example.com?Route=%3Csip:sip.example.com%3E" in contacts, contacts
    elif name == "escnull":
        contacts = query_bindings(server, "sip:null-%00-null@example.com")
        assert sorted(contacts) == ["sip:%00%00@host5.example.com", "sip:%00@host5.example.com"], contacts
    elif name == "dblreq":
        assert query_bindings(server, "sip:j.user@example.com") == ["sip:j.user@host.example.com"]


@pytest.fixture(scope="module")
def udp_answer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A server that has not seen the corpus yet (a second copy of the same bytes would be a
    retransmission, answered where the first one's answer went)."""
    with running_server("registrar", tmp_path_factory.mktemp("torture-udp-answers"),
                        extra_args=("--set", "force_rport=true")) as s:
        yield s


@pytest.mark.parametrize("name", ["badvers", "unkscm", "bext01", "insuf", "cparam01"])
def test_udp_answers(udp_answer_server: ServerInfo, name: str):
    """Datagram answers come back to the sender (the UDP server runs with force_rport)."""
    entry = ENTRIES[name]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(1.5)
        s.sendto(wire_bytes(entry), udp_answer_server.sip_address)
        data, _ = s.recvfrom(65535)
    expected = entry["expected_status"] or [200]
    assert statuses(data)[0] in expected

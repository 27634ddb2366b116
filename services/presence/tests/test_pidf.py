"""Pure tests of PIDF parsing and composition (no SBBs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..pidf import PidfError, Publication, closed_document, compose, entity_aor, parse_pidf, summary

CAPTURES = Path(__file__).resolve().parents[3] / "tests" / "clients" / "captures"
BOB = "sip:bob@example.test"


def _body(capture: str) -> bytes:
    raw = (CAPTURES / capture).read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[1]


def test_closed_document_is_valid_pidf_with_one_closed_tuple():
    doc = closed_document(BOB)
    assert summary(doc)["basic"] == "closed"
    assert b'entity="sip:bob@example.test"' in doc


def test_pjsua2_busy_publication_keeps_rpid_prefix_self_closing_and_both_notes():
    body = _body("pjsua2-publish-open-busy-call-with-carol.txt")
    doc = compose(BOB, [Publication("e", body, 1.0)], registered=True)
    assert b"<rpid:busy/>" in doc
    assert b"<rpid:activities>" in doc
    assert b"<note>Call with Carol</note>" in doc
    assert b"<dm:note>Call with Carol</dm:note>" in doc
    assert summary(doc) == {"basic": "open", "activities": ["busy"], "notes": ["Call with Carol"]}


def test_baresip_person_before_tuple_still_puts_the_tuple_first():
    body = _body("baresip-publish-open.txt")
    doc = compose("sip:alice@example.test", [Publication("e", body, 1.0)], registered=True)
    root = parse_pidf(doc)
    assert root[0].tag.endswith("}tuple")
    assert summary(doc)["basic"] == "open"


def test_person_note_is_copied_into_the_first_tuple():
    body = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
            b'entity="sip:bob@example.test"><tuple id="t"><status><basic>open</basic></status></tuple>'
            b'<dm:person id="p"><dm:note>Lunch</dm:note></dm:person></presence>')
    doc = compose(BOB, [Publication("e", body, 1.0)], registered=True)
    assert b"<note>Lunch</note>" in doc and b"<dm:note>Lunch</dm:note>" in doc


def test_foreign_prefix_for_rpid_is_rewritten_to_rpid_and_extensions_pass_through():
    body = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" '
            b'xmlns:d="urn:ietf:params:xml:ns:pidf:data-model" xmlns:x="urn:example:ext" '
            b'entity="pres:bob@example.test"><tuple id="t"><status><basic>open</basic></status>'
            b'<x:mood level="3">fine</x:mood></tuple><d:person id="p"><r:activities><r:away/></r:activities>'
            b'</d:person><x:custom/></presence>')
    doc = compose(BOB, [Publication("e", body, 1.0)], registered=True)
    assert b"<rpid:away/>" in doc and b"<dm:person" in doc
    assert b'<x:mood level="3">fine</x:mood>' in doc and b"<x:custom/>" in doc


def test_newest_publication_person_wins_and_duplicate_tuple_ids_are_renamed():
    old = (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
           b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:bob@example.test">'
           b'<tuple id="t"><status><basic>open</basic></status></tuple>'
           b'<dm:person id="p"><rpid:activities><rpid:away/></rpid:activities></dm:person></presence>')
    new = old.replace(b"rpid:away", b"rpid:busy")
    doc = compose(BOB, [Publication("n", new, 2.0), Publication("o", old, 1.0)], registered=True)
    assert summary(doc)["activities"] == ["busy"]
    assert b'id="t"' in doc and b'id="t-1"' in doc


def test_no_publication_follows_registration():
    assert summary(compose(BOB, [], registered=True))["basic"] == "open"
    assert summary(compose(BOB, [], registered=False))["basic"] == "closed"


def test_force_closed_drops_rich_status():
    body = _body("pjsua2-publish-open-busy.txt")
    doc = compose(BOB, [Publication("e", body, 1.0)], registered=False, force_closed=True)
    assert summary(doc) == {"basic": "closed", "activities": [], "notes": []}


@pytest.mark.parametrize("body, reason", [
    (b"", "Malformed"),
    (b"<a/>", "not PIDF"),
    (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', "entity"),
    (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple><status/></tuple></presence>',
     "without id"),
    (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t"><status>'
     b"<basic>maybe</basic></status></tuple></presence>", "open or closed"),
    (b'<!DOCTYPE x SYSTEM "http://example.com/x.dtd"><presence/>', "DTD"),
    (b"<p>" + b"x" * 70000 + b"</p>", "larger"),
])
def test_bad_bodies_are_refused_with_a_reason(body: bytes, reason: str):
    with pytest.raises(PidfError) as info:
        parse_pidf(body)
    assert reason in info.value.reason


def test_entity_aor_normalises_pres_and_parameters():
    assert entity_aor("pres:Bob@Example.TEST") == "sip:Bob@example.test"
    assert entity_aor("sip:bob@example.test:5060;transport=udp") == "sip:bob@example.test"

"""PIDF (RFC 3863) parsing and composition, sans-IO.

Parsing is hardened: no DTD, no entity expansion, no network, bounded size. A body that
declares a DOCTYPE is refused before lxml sees it, so billion-laughs and external-entity
bodies cost nothing.

Composition (docs/presence.md, "Composition policy") turns a presentity's live publications
and its registration state into one document whose FIRST tuple carries the effective status
(baresip reads only the first ``<basic>``, pjsua2 only the first tuple). Elements from other
namespaces (RPID, data model, clients' own extensions) are carried through; the well-known
namespaces are written with the literal prefixes ``dm:`` and ``rpid:`` that baresip needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
CIPID_NS = "urn:ietf:params:xml:ns:pidf:cipid"
CAPS_NS = "urn:ietf:params:xml:ns:pidf:caps"
XML_NS = "http://www.w3.org/XML/1998/namespace"

BASE_NSMAP = {None: PIDF_NS, "dm": DM_NS, "rpid": RPID_NS}
MAX_BODY = 65536

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False,
    remove_comments=True, remove_pis=True, collect_ids=False,
)


class PidfError(ValueError):
    """The body is not acceptable PIDF; ``reason`` goes into the 400's reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Publication:
    """One live publication as composition needs it (newest first when passed in)."""

    etag: str
    body: bytes
    published_at: float


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def parse_xml(body: bytes, *, max_size: int = MAX_BODY) -> etree._Element:
    """Parse untrusted XML safely; raises ``PidfError`` with a short reason."""
    if len(body) > max_size:
        raise PidfError(f"Body larger than {max_size} bytes")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise PidfError("DTDs and entity declarations are not allowed")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise PidfError(f"Malformed XML: {str(exc).splitlines()[0][:80]}") from None
    if root is None:
        raise PidfError("Empty XML document")
    return root


def parse_pidf(body: bytes, *, max_size: int = MAX_BODY) -> etree._Element:
    """A validated ``<presence>`` element (RFC 3863 §4): entity, tuple ids, basic values.

    The element is shared (do not change it): a PUBLISH parses its body to check it, and the
    composition that follows asks for the same body again, so the last one is remembered.
    """
    global _last_parsed
    if len(body) > max_size:
        raise PidfError(f"Body larger than {max_size} bytes")
    last = _last_parsed
    if last is not None and last[0] == body:
        return last[1]
    root = _parse_pidf(body, max_size=max_size)
    _last_parsed = (body, root)
    return root


_last_parsed: tuple[bytes, etree._Element] | None = None


def _parse_pidf(body: bytes, *, max_size: int) -> etree._Element:
    root = parse_xml(body, max_size=max_size)
    if root.tag != _q(PIDF_NS, "presence"):
        raise PidfError("Root element is not PIDF <presence>")
    if not root.get("entity"):
        raise PidfError("PIDF <presence> has no entity attribute")
    seen: set[str] = set()
    for tup in root.iterchildren(_q(PIDF_NS, "tuple")):
        tid = tup.get("id")
        if not tid:
            raise PidfError("PIDF <tuple> without id")
        if tid in seen:
            raise PidfError(f"PIDF tuple id {tid!r} repeated")
        seen.add(tid)
        status = tup.find(_q(PIDF_NS, "status"))
        if status is None:
            raise PidfError(f"PIDF tuple {tid!r} has no <status>")
        basic = status.find(_q(PIDF_NS, "basic"))
        if basic is not None and (basic.text or "").strip() not in ("open", "closed"):
            raise PidfError(f"PIDF tuple {tid!r}: <basic> must be open or closed")
    return root


def entity_aor(entity: str) -> str:
    """``pres:alice@example.com`` and ``sip:alice@example.com;x`` both name ``sip:alice@example.com``."""
    value = entity.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    scheme, _, rest = value.partition(":")
    scheme = scheme.lower()
    if scheme in ("pres", "sips", "im"):
        scheme = "sip"
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    user, at, host = rest.rpartition("@")
    host = host.lower()
    if host.startswith("["):
        host = host.split("]", 1)[0] + "]"
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return f"{scheme}:{user}{at}{host}"


def basic_of(tup: etree._Element) -> str | None:
    basic = tup.find(f"{_q(PIDF_NS, 'status')}/{_q(PIDF_NS, 'basic')}")
    return (basic.text or "").strip() if basic is not None else None


# -- composition --------------------------------------------------------------------------
def _collect_nsmap(elements: Iterable[etree._Element]) -> dict[str | None, str]:
    """Prefixes used by carried-through elements, where they do not clash with ours."""
    out: dict[str | None, str] = dict(BASE_NSMAP)
    uris = set(out.values())
    for el in elements:
        for node in el.iter():
            if not isinstance(node.tag, str):
                continue
            for prefix, uri in (node.nsmap or {}).items():
                if prefix is None or uri in uris or prefix in out or prefix == "xml":
                    continue
                out[prefix] = uri
                uris.add(uri)
    return out


def _copy_into(parent: etree._Element, el: etree._Element) -> etree._Element:
    """Rebuild ``el`` under ``parent`` so it takes the document's prefixes (``rpid:``...)."""
    new = etree.SubElement(parent, el.tag, dict(el.attrib))
    new.text = el.text
    for child in el:
        if isinstance(child.tag, str):
            _copy_into(new, child).tail = child.tail
    return new


def _text_of(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    text = "".join(el.itertext()).strip()
    return text or None


def closed_document(entity: str) -> bytes:
    """A valid document saying only ``closed``: never send an empty body (baresip: "Unknown")."""
    return compose(entity, [], registered=False)


def compose(entity: str, publications: Sequence[Publication], *, registered: bool,
            force_closed: bool = False, note: str | None = None) -> bytes:
    """The presentity's one PIDF document (docs/presence.md, "Composition policy").

    ``publications`` newest first. With no publication, registration decides: registered ->
    open, else closed. ``force_closed`` (the user deregistered and the policy closes its
    publications) makes every tuple closed and drops rich status, which would be stale.
    """
    parsed: list[etree._Element] = []
    for pub in publications:
        try:
            parsed.append(parse_pidf(pub.body))
        except PidfError:
            continue  # validated when published; a body that no longer parses is skipped
    root = etree.Element(_q(PIDF_NS, "presence"), nsmap=_collect_nsmap(parsed), entity=entity)

    tuples: list[tuple[etree._Element, str | None]] = []
    persons: list[etree._Element] = []
    devices: list[etree._Element] = []
    notes: list[etree._Element] = []
    others: list[etree._Element] = []
    for doc in parsed:
        for child in doc:
            if not isinstance(child.tag, str):
                continue
            if child.tag == _q(PIDF_NS, "tuple"):
                tuples.append((child, basic_of(child)))
            elif child.tag == _q(DM_NS, "person"):
                persons.append(child)
            elif child.tag == _q(DM_NS, "device"):
                devices.append(child)
            elif child.tag == _q(PIDF_NS, "note"):
                notes.append(child)
            else:
                others.append(child)

    if force_closed or not tuples:
        basic = "closed" if force_closed or not registered else "open"
        tup = etree.SubElement(root, _q(PIDF_NS, "tuple"), id=_first_id(tuples) or ("reg" if basic == "open" else "offline"))
        status = etree.SubElement(tup, _q(PIDF_NS, "status"))
        etree.SubElement(status, _q(PIDF_NS, "basic")).text = basic
        if not force_closed and basic == "open" and persons:
            _copy_into(root, persons[0])
        if note and not force_closed:
            etree.SubElement(tup, _q(PIDF_NS, "note")).text = note
        return _serialise(root)

    # The effective status goes first: open if any device is open (newest open tuple first).
    ordered = sorted(range(len(tuples)), key=lambda i: (tuples[i][1] != "open", i))
    used_ids: set[str] = set()
    person = persons[0] if persons else None  # newest publication's person wins (RFC 4479 one person)
    person_note = _text_of(person.find(_q(DM_NS, "note"))) if person is not None else None
    first = True
    for i in ordered:
        src = tuples[i][0]
        new = _copy_into(root, src)
        tid = src.get("id") or "t"
        while tid in used_ids:
            tid += "-1"
        used_ids.add(tid)
        new.set("id", tid)
        if first:
            first = False
            tuple_note = new.find(_q(PIDF_NS, "note"))
            if tuple_note is None and person_note:  # pjsua2 shows the tuple note: carry both forms
                el = etree.Element(_q(PIDF_NS, "note"))
                el.text = person_note
                ts = new.find(_q(PIDF_NS, "timestamp"))
                if ts is not None:
                    ts.addprevious(el)
                else:
                    new.append(el)
    for el in notes:
        _copy_into(root, el)
    for el in others:
        _copy_into(root, el)
    if person is not None:
        new_person = _copy_into(root, person)
        if person_note is None:
            tnote = _text_of(tuples[ordered[0]][0].find(_q(PIDF_NS, "note")))
            if tnote:
                etree.SubElement(new_person, _q(DM_NS, "note")).text = tnote
    seen_dev: set[str] = set()
    for dev in devices:
        did = dev.get("id") or ""
        if did in seen_dev:
            continue
        seen_dev.add(did)
        _copy_into(root, dev)
    return _serialise(root)


def _first_id(tuples: list[tuple[etree._Element, str | None]]) -> str | None:
    return tuples[0][0].get("id") if tuples else None


def _serialise(root: etree._Element) -> bytes:
    etree.indent(root, space=" ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def summary(document: bytes) -> dict[str, object]:
    """What an operator wants from a document: first basic, activities, notes."""
    try:
        root = parse_pidf(document)
    except PidfError as exc:
        return {"error": exc.reason}
    first = root.find(_q(PIDF_NS, "tuple"))
    activities = [etree.QName(el).localname for el in root.iter(_q(RPID_NS, "activities"))
                  for el in el if isinstance(el.tag, str)]
    notes = sorted({t for el in root.iter(_q(PIDF_NS, "note"), _q(DM_NS, "note")) if (t := _text_of(el))})
    return {"basic": basic_of(first) if first is not None else None, "activities": activities, "notes": notes}

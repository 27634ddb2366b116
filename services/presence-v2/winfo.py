"""Watcher information documents (RFC 3858), sans-IO.

A ``presence.winfo`` subscriber gets a ``full`` document first and ``partial`` ones after,
each with a version one higher than the last (RFC 3858 §4.2). The notifier may always send a
full document instead of a partial one; this service does so when changes were coalesced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

WINFO_NS = "urn:ietf:params:xml:ns:watcherinfo"

# RFC 3857 §3.3: the watcher's subscription status and the event that led to it
STATUS_OF_STATE = {"active": "active", "pending": "pending", "blocked": "terminated", "terminated": "terminated"}


@dataclass(frozen=True, slots=True)
class Watcher:
    """One watcher subscription as winfo reports it."""

    id: str  # stable per subscription (the dialog id hashed)
    uri: str
    state: str  # active | pending | blocked | terminated
    event: str  # subscribe | approved | rejected | timeout | giveup | noresource | deactivated
    display_name: str | None = None
    expiration: int | None = None
    duration: int | None = None


def watcherinfo(resource: str, watchers: Iterable[Watcher], *, version: int, full: bool,
                package: str = "presence") -> bytes:
    root = etree.Element(f"{{{WINFO_NS}}}watcherinfo", nsmap={None: WINFO_NS},
                         version=str(version), state="full" if full else "partial")
    wl = etree.SubElement(root, f"{{{WINFO_NS}}}watcher-list", resource=resource, package=package)
    for w in watchers:
        attrs = {"id": w.id, "status": STATUS_OF_STATE.get(w.state, "terminated"), "event": w.event}
        if w.display_name:
            attrs["display-name"] = w.display_name
        if w.expiration is not None:
            attrs["expiration"] = str(w.expiration)
        if w.duration is not None:
            attrs["duration-subscribed"] = str(w.duration)
        etree.SubElement(wl, f"{{{WINFO_NS}}}watcher", attrs).text = w.uri
    etree.indent(root, space=" ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def ended_event(reason: str | None, state: str) -> str:
    """The RFC 3857 §3.3 ``event`` of a watcher whose subscription has just ended.

    ``reason`` is the Subscription-State reason the watcher got (None: it unsubscribed).
    """
    if reason == "rejected":
        return "rejected"
    if state == "pending":
        return "giveup"  # never authorized before it went away
    if reason == "deactivated":
        return "deactivated"  # its NOTIFY failed (481, timeout): the notifier dropped it
    return "timeout"  # expired, or ended by the watcher itself

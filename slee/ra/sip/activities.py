"""SIP activities: server transactions, client transactions and dialogs (RFC 3261 §12, §17).

These objects are what SBBs hold. They never touch sockets: every send goes through the
provider, which defers it to the end of the SBB's SLEE transaction (after the state it
acknowledges is durable) and hands it to the RA's transaction layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from slee.sip import NameAddr, Request, Response
from slee.sip._addressing import Peer

if TYPE_CHECKING:
    from slee.ra.sip.provider import SipProvider


class _RandomHex:
    """Cryptographically random hex tokens (RFC 3261 §19.3: tags MUST be) from os.urandom,
    read 4 KiB at a time: one system call per few hundred tags instead of one each."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def __call__(self, nbytes: int) -> str:
        pos = self._pos
        if pos + nbytes > len(self._buf):
            self._buf, pos = os.urandom(4096), 0
        self._pos = pos + nbytes
        return self._buf[pos:pos + nbytes].hex()


random_hex = _RandomHex()


def new_tag() -> str:
    return random_hex(6)


class ServerTransactionActivity:
    """A request we received; answer it with ``respond`` (exactly one final response)."""

    __slots__ = ("_provider", "answered", "dialog", "final_status", "guard", "request", "source", "to_tag", "txn")

    def __init__(self, provider: SipProvider, txn: Any, request: Request, source: Peer,
                 dialog: Dialog | None = None) -> None:
        self._provider = provider
        self.txn = txn  # the sans-IO ServerTransaction (None in unit tests)
        self.request = request
        self.source = source
        self.dialog = dialog
        self.to_tag: str | None = dialog.local_tag if dialog is not None else None
        self.answered = False  # a final response was sent (or is queued to be)
        self.final_status: int | None = None
        self.guard: Any = None  # the RA's "no service answered" timer, cancelled by the answer

    @property
    def method(self) -> str:
        return self.request.method

    def create_response(self, status: int, reason: str | None = None, *,
                        headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                        content_type: str | None = None) -> Response:
        """A response to this request (§8.2.6) with this transaction's To-tag."""
        if status > 100 and self.request.to_tag is None and self.to_tag is None:
            self.to_tag = new_tag()
        tag = None if status == 100 else self.to_tag
        return self._provider.create_response(self.request, status, reason, to_tag=tag, headers=headers,
                                              body=body, content_type=content_type)

    def respond(self, status: int, reason: str | None = None, *, headers: Iterable[tuple[str, str]] = (),
                body: bytes = b"", content_type: str | None = None) -> Response:
        """Build and send a response; returns it (e.g. for tests and tracing)."""
        response = self.create_response(status, reason, headers=headers, body=body, content_type=content_type)
        self.send_response(response)
        return response

    def send_response(self, response: Response) -> None:
        if self.answered:
            raise RuntimeError(f"{self.request.method} was already answered with {self.final_status}")
        if self.request.method == "ACK":
            raise RuntimeError("an ACK is never answered")
        self._provider._emit_response(self, response)

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.request.method} {self.request.call_id} answered={self.answered}>"


class ClientTransactionActivity:
    """A request we sent; its responses arrive as events (on the dialog, if it has one)."""

    __slots__ = ("_provider", "context", "destination", "dialog", "final_status", "request", "txn")

    def __init__(self, provider: SipProvider, request: Request, destination: Peer,
                 dialog: Dialog | None = None, context: Any = None) -> None:
        self._provider = provider
        self.request = request
        self.destination = destination
        self.dialog = dialog
        self.txn: Any = None  # set when actually sent
        self.final_status: int | None = None
        self.context = context  # free for the SBB: e.g. which branch / which subscription

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def branch(self) -> str | None:
        return self.request.top_via.branch

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.request.method} {self.branch}>"


class Dialog:
    """A SIP dialog (RFC 3261 §12) this element takes part in as a UA (e.g. a subscription).

    Persistent dialogs (``provider.create_dialog(..., persistent=True)``) survive a restart
    with their CSeq counters, route set and remote target, so NOTIFYs keep counting up.
    """

    __slots__ = (
        "_provider",
        "call_id",
        "flow",
        "local_seq",
        "local_tag",
        "local_uri",
        "persistent",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "secure",
        "terminated",
    )

    def __init__(self, provider: SipProvider, *, call_id: str, local_tag: str, remote_tag: str, local_uri: str,
                 remote_uri: str, remote_target: str, route_set: Sequence[str], local_seq: int = 0,
                 remote_seq: int | None = None, flow: Peer | None = None, secure: bool = False,
                 persistent: bool = False) -> None:
        self._provider = provider
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri  # name-addr without tag, e.g. "<sip:alice@example.com>"
        self.remote_uri = remote_uri
        self.remote_target = remote_target  # URI from the peer's Contact
        # name-addr strings, in the order requests carry them; most dialogs have none, and
        # the shared empty tuple costs nothing per dialog where a list was 56 bytes
        self.route_set: Sequence[str] = tuple(route_set) if route_set else ()
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.flow = flow  # where the dialog-creating request came from (connection reuse)
        self.secure = secure
        self.persistent = persistent
        self.terminated = False

    @property
    def id(self) -> str:
        return f"{self.call_id};{self.local_tag};{self.remote_tag}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def create_request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                       headers: Iterable[tuple[str, str]] = ()) -> Request:
        """A request within the dialog (§12.2.1.1): next CSeq, route set, remote target."""
        if self.terminated:
            raise RuntimeError(f"dialog {self.id} is terminated")
        self.local_seq += 1
        self._provider._dialog_changed(self)
        return self._provider._build_dialog_request(self, method, body=body, content_type=content_type,
                                                    headers=headers)

    def send_request(self, request: Request, *, context: Any = None) -> ClientTransactionActivity:
        """Send a request built by ``create_request``; responses come on this dialog's activity."""
        return self._provider._send_in_dialog(self, request, context)

    def update_remote_target(self, contact: str) -> None:
        """Target refresh (§12.2.2): the peer's new Contact URI."""
        if contact != self.remote_target:
            self.remote_target = contact
            self._provider._dialog_changed(self)

    def terminate(self) -> None:
        """End the dialog: its activity ends (ActivityEndEvent) and it is forgotten."""
        if not self.terminated:
            self.terminated = True
            self._provider._terminate_dialog(self)

    def to_state(self) -> dict[str, Any]:
        flow = self.flow
        return {
            "call_id": self.call_id, "local_tag": self.local_tag, "remote_tag": self.remote_tag,
            "local_uri": self.local_uri, "remote_uri": self.remote_uri, "remote_target": self.remote_target,
            "route_set": list(self.route_set), "local_seq": self.local_seq, "remote_seq": self.remote_seq,
            "flow": [flow.transport, flow.host, flow.port] if flow else None, "secure": self.secure,
        }

    @classmethod
    def from_state(cls, provider: SipProvider, state: dict[str, Any]) -> Dialog:
        flow = state.get("flow")
        return cls(provider, call_id=state["call_id"], local_tag=state["local_tag"],
                   remote_tag=state["remote_tag"], local_uri=state["local_uri"], remote_uri=state["remote_uri"],
                   remote_target=state["remote_target"], route_set=list(state["route_set"]),
                   local_seq=state["local_seq"], remote_seq=state["remote_seq"],
                   flow=Peer(flow[0], flow[1], flow[2]) if flow else None, secure=state.get("secure", False),
                   persistent=True)

    def __repr__(self) -> str:
        return f"<Dialog {self.id} seq={self.local_seq}>"


def uas_dialog(provider: SipProvider, request: Request, source: Peer, local_tag: str, *,
               persistent: bool) -> Dialog:
    """The dialog a UAS creates by answering ``request`` with a 2xx (§12.1.1)."""
    contacts = request.contacts
    if not contacts or contacts[0].is_star:
        raise ValueError("a dialog-creating request needs a Contact (§12.1.1)")
    from_, to = request.from_, request.to
    remote_tag = from_.tag or ""
    return Dialog(
        provider,
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_uri=_without_tag(to),
        remote_uri=_without_tag(from_),
        remote_target=str(contacts[0].uri),
        route_set=[str(rr) for rr in request.record_routes],
        local_seq=0,
        remote_seq=request.cseq.seq,
        flow=source,
        secure=request.raw_uri.lower().startswith("sips:"),
        persistent=persistent,
    )


def _without_tag(addr: NameAddr) -> str:
    params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in addr.params.items() if k != "tag")
    name = f'"{addr.display_name}" ' if addr.display_name else ""
    return f"{name}<{addr.uri}>{params}"

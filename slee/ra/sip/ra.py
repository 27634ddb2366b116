"""The SIP resource adaptor: sockets and transactions below, SLEE activities and events above.

Per received request: the transport parsed it (malformed input was answered there and never
gets here); the RA validates it (400/416/420/505/513 with the RFC's reason), the transaction
layer absorbs retransmissions, and a new request becomes an event — on its dialog's activity
if it belongs to a dialog this element holds, else on a new server-transaction activity. When
no service took a request, the RA answers as a plain UAS would: OPTIONS 200 with
Allow/Accept/Allow-Events, 489 for an unknown event package, 481 for an unknown dialog, 405
with Allow for known methods nobody serves, 501 for unknown methods, 500 if a service failed.

Overload control: past ``max_backlog`` queued events, new out-of-dialog requests get
``503 Service Unavailable`` with ``Retry-After`` while in-dialog requests, ACK, CANCEL and
responses are still processed; an alarm is raised and cleared as the backlog crosses the
bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from slee._ids import ResourceAdaptorId, ResourceAdaptorTypeId
from slee.events import Address
from slee.ra.sip.activities import ClientTransactionActivity, Dialog, ServerTransactionActivity
from slee.ra.sip.events import (
    KNOWN_METHODS,
    TRANSACTION_TIMEOUT,
    RequestEvent,
    ResponseEvent,
    TimeoutEvent,
    all_event_types,
    request_event_type,
    response_event_type,
)
from slee.ra.sip.provider import MAGIC_COOKIE, SipProvider, aor_of
from slee.ra.spi import ConfigProperty, EventOutcome, ResourceAdaptor, ResourceAdaptorType, hookimpl
from slee.sip import (
    Request,
    Response,
    SipParseError,
    SipURI,
    make_response,
    parse_uri,
    validate_request,
)
from slee.sip._addressing import Peer, apply_received, request_destination, response_destination
from slee.sip._transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from slee.transport._shard import BRANCH_PREFIX

log = logging.getLogger("slee.ra.sip")

SIP_RA_TYPE = ResourceAdaptorType(
    ResourceAdaptorTypeId("JAIN SIP", "net.java", "1.2"),
    all_event_types(),
    (ServerTransactionActivity, ClientTransactionActivity, Dialog),
    SipProvider,
    "SIP over UDP and TCP: requests, responses, transactions and dialogs",
)

SUPPORTED_EXTENSIONS = frozenset({"path", "outbound", "gruu-disabled"})  # Require we accept
OVERLOAD_ALARM = "sip.overload"


class SipResourceAdaptor(ResourceAdaptor):
    """One RA entity = one SIP listening point (UDP and/or TCP on one host and port)."""

    ra_id = ResourceAdaptorId("SipRA", "slee", "1.0")
    ra_type = SIP_RA_TYPE
    config_properties = {
        "host": ConfigProperty(str, "0.0.0.0", "address to listen on ('::' for IPv6)"),
        "port": ConfigProperty(int, 5060, "UDP and TCP port (0 = any free port)"),
        "transports": ConfigProperty(list, ["udp", "tcp"], "transports to listen on"),
        "advertised_host": ConfigProperty(str, None, "host to put in Via/Contact/Record-Route"),
        "domains": ConfigProperty(list, [], "served domains; empty = any domain"),
        "event_packages": ConfigProperty(list, ["presence", "presence.winfo"],
                                         "Allow-Events advertised in OPTIONS and 489 answers"),
        "max_backlog": ConfigProperty(int, 5000, "queued events above which new requests get 503"),
        "retry_after": ConfigProperty(int, 5, "Retry-After seconds in 503 overload answers"),
        "server_header": ConfigProperty(str, "slee/0.1", "Server / User-Agent header ('' = none)"),
        "max_message_size": ConfigProperty(int, 65535, "largest message accepted"),
        "udp_buffer": ConfigProperty(int, 256 << 10, "UDP socket buffer bytes: a short queue sheds overload "
                                                      "instead of delaying requests past the clients' timers"),
        "t1": ConfigProperty(float, 0.5, "RFC 3261 T1 (RTT estimate), seconds"),
        "force_rport": ConfigProperty(bool, False, "answer every request to its source address and port "
                                                    "(RFC 3581 rport even when the client did not ask: NAT)"),
        "unanswered_timeout": ConfigProperty(float, 32.0, "answer 500 to requests no service answered by then"),
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        cfg = context.config
        self.provider = SipProvider(self)
        self.layer = TransactionLayer(TimerConfig(t1=cfg.get("t1") or 0.5), auto_trying=True)
        self.transport: Any = None
        self.host = cfg.get("advertised_host") or "127.0.0.1"
        self.port = cfg.get("port") or 5060
        self.transports = tuple(cfg.get("transports") or ("udp", "tcp"))
        self.server_header = cfg.get("server_header") or None
        self._force_rport = bool(cfg.get("force_rport"))
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._st_by_txn: dict[Any, ServerTransactionActivity] = {}
        self._ct_by_txn: dict[Any, ClientTransactionActivity] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._overloaded = False
        self._stopping = False
        self._local_names: set[str] = set()
        worker = context.worker
        # Several workers share the port (slee.transport._shard): the transport hands messages
        # over, and branches name the worker that minted them.
        self._shard = (dataclasses.replace(worker, run_dir=str(Path(worker.run_dir) / f"sip-{context.entity_name}"))
                       if worker is not None and worker.count > 1 else None)
        self.branch_prefix = f"{BRANCH_PREFIX}{worker.index}-" if self._shard is not None else MAGIC_COOKIE
        self.counters = {"requests_in": 0, "responses_in": 0, "rejected_invalid": 0, "rejected_overload": 0,
                         "answered_by_ra": 0, "unanswered_timeouts": 0}

    # -- configuration and lifecycle -------------------------------------------------------
    def ra_verify_configuration(self, config: dict[str, Any]) -> None:
        bad = [t for t in config["transports"] if t not in ("udp", "tcp")]
        if bad or not config["transports"]:
            raise ValueError(f"transports must be a non-empty subset of udp,tcp (got {config['transports']})")
        if not 0 <= config["port"] <= 65535:
            raise ValueError(f"port {config['port']} is not a port number")
        if config["max_backlog"] < 1:
            raise ValueError("max_backlog must be at least 1")

    def get_provider(self) -> SipProvider:
        return self.provider

    async def ra_active(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await self._bind(self.context.config)

    async def ra_config_update(self, config: dict[str, Any]) -> None:
        """Live reconfiguration: rebind the sockets if the listening point changed; the
        transaction layer and the dialogs (subscriptions) are kept."""
        old = self.context.config
        self.context.config = config
        self.server_header = config.get("server_header") or None
        self._force_rport = bool(config.get("force_rport"))
        self.transports = tuple(config.get("transports") or ("udp", "tcp"))
        keys = ("host", "port", "transports", "advertised_host", "max_message_size", "udp_buffer")
        if any(old.get(k) != config.get(k) for k in keys):
            if self.transport is not None:
                await self.transport.close()
                self.transport = None
            await self._bind(config)

    def listen_addresses(self) -> list[str]:
        return self.listening()

    async def _bind(self, cfg: dict[str, Any]) -> None:
        from slee.transport import SipTransport, TransportConfig

        tconf = TransportConfig(host=cfg["host"], port=cfg["port"], udp="udp" in self.transports,
                                tcp="tcp" in self.transports, max_message_size=cfg["max_message_size"],
                                advertised_host=cfg.get("advertised_host"), udp_buffer=cfg["udp_buffer"],
                                shard=self._shard)
        self.transport = SipTransport(tconf, self._on_message)
        self.transport.on_transport_error = self._on_transport_error
        self.transport.on_batch_end = self.context.endpoint.deliver_now
        await self.transport.start()
        self.port = self.transport.port
        self.host = self.transport.advertised_host
        self._local_names = {self.host.lower(), "localhost", "127.0.0.1", "::1"}
        if cfg["host"] not in ("0.0.0.0", "::"):
            self._local_names.add(cfg["host"].lower())
        self.context.tracer.info("SIP listening on %s", ", ".join(self.listening()))

    def listening(self) -> list[str]:
        if self.transport is None:
            return []
        return [f"{p.transport}:{'[' + p.host + ']' if ':' in p.host else p.host}:{p.port}" for p in self.transport.listening]

    def ra_stopping(self) -> None:
        self._stopping = True

    async def ra_inactive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            await self.transport.close()
            self.transport = None

    def stats(self) -> dict[str, Any]:
        out = dict(self.counters)
        out["transactions"] = len(self.layer)
        out["dialogs"] = len(self.dialogs)
        out["listening"] = self.listening()
        if self.transport is not None:
            out["transport"] = self.transport.stats
        return out

    # -- persistence of dialogs ----------------------------------------------------------------
    def handle_key(self, handle: Hashable) -> str:
        return handle.id if isinstance(handle, Dialog) else str(handle)

    def activity_state(self, handle: Hashable, activity: Any) -> Any:
        return activity.to_state() if isinstance(activity, Dialog) else None

    def restore_activity(self, key: str, state: Any) -> tuple[Hashable, Any] | None:
        if not state:
            return None
        dialog = Dialog.from_state(self.provider, state)
        self.dialogs[dialog.key] = dialog
        return dialog, dialog

    def activity_ended(self, handle: Hashable) -> None:
        if isinstance(handle, Dialog):
            self.dialogs.pop(handle.key, None)
        elif isinstance(handle, ClientTransactionActivity):
            if handle.txn is not None:
                self._ct_by_txn.pop(handle.txn, None)
        elif isinstance(handle, ServerTransactionActivity) and handle.txn is not None:
            self._st_by_txn.pop(handle.txn, None)

    # -- engine interface used by the provider -----------------------------------------------
    def is_local(self, uri: Any) -> bool:
        if isinstance(uri, str):
            try:
                uri = parse_uri(uri)
            except SipParseError:
                return False
        if not isinstance(uri, SipURI):
            return False
        port = uri.port or (5061 if uri.scheme == "sips" else 5060)
        return uri.host.lower() in self._local_names and port == self.port

    def transmit_response(self, st: ServerTransactionActivity, response: Response) -> None:
        if st.txn is None:
            return
        try:
            self.layer.send_response(st.txn, response, self._now())
        except ValueError as exc:
            self.context.tracer.warning("response %d to %s not sent: %s", response.status, st.request.method, exc)
        self._pump()
        if response.status >= 200:
            # The final answer is out: the transaction layer alone absorbs retransmissions
            # from here (Timers J/H), so the SLEE activity, the SBB entities attached only to
            # it and the parsed request go now, not 32 s later.
            if st.guard is not None:
                st.guard.cancel()
                st.guard = None
            self._st_by_txn.pop(st.txn, None)
            endpoint = self.context.endpoint
            if endpoint.activity_exists(st):  # in-dialog requests are not activities
                endpoint.end_activity(st)

    def transmit_request(self, ct: ClientTransactionActivity) -> None:
        if self.transport is None:
            self._fire_timeout(ct, transport_error=True, detail="SIP RA is not active")
            return
        try:
            ct.txn = self.layer.send_request(ct.request, ct.destination, self._now())
        except ValueError as exc:
            self.context.tracer.warning("request %s not sent: %s", ct.request.method, exc)
            self._fire_timeout(ct, transport_error=True, detail=str(exc))
            return
        self._ct_by_txn[ct.txn] = ct
        self._pump()

    def transmit_stateless(self, message: Request | Response, destination: Peer | None) -> None:
        if self.transport is None:
            return
        if destination is None:
            destination = response_destination(message) if isinstance(message, Response) else request_destination(message)
        self.transport.send(message.to_bytes(), destination)

    def start_client_activity(self, ct: ClientTransactionActivity) -> None:
        self.context.endpoint.start_activity(ct, ct)

    def abandon_client_activity(self, ct: ClientTransactionActivity) -> None:
        if self.context.endpoint.activity_exists(ct):
            self.context.endpoint.end_activity(ct)

    def dialog_created(self, dialog: Dialog) -> None:
        self.dialogs[dialog.key] = dialog
        self.context.endpoint.start_activity(dialog, dialog, persistent=dialog.persistent)
        from slee.transaction import current_transaction

        txn = current_transaction.get()
        if txn is not None:
            def undo() -> None:
                self.dialogs.pop(dialog.key, None)
                if self.context.endpoint.activity_exists(dialog):
                    self.context.endpoint.end_activity(dialog)

            txn.record_undo(undo)

    def dialog_changed(self, dialog: Dialog) -> None:
        if dialog.persistent and self.context.endpoint.activity_exists(dialog):
            self.context.container.activity_changed(self.context.entity_name, dialog)

    def dialog_terminated(self, dialog: Dialog) -> None:
        self.dialogs.pop(dialog.key, None)
        if self.context.endpoint.activity_exists(dialog):
            self.context.endpoint.end_activity(dialog)

    def dialog_destination(self, dialog: Dialog, request: Request) -> Peer:
        """Where an in-dialog request goes: the route set, else the remote target — but over
        the flow the peer used when that is a live TCP connection or the target is not
        reachable directly (NAT: the Contact host differs from where requests came from)."""
        if request.headers.get("Route"):
            return request_destination(request)
        target = request_destination(request)
        flow = dialog.flow
        if flow is None:
            return target
        if flow.reliable:
            conn = self.transport.connection_for(flow.host, flow.port) if self.transport else None
            if conn is not None:
                return Peer(flow.transport, flow.host, flow.port, conn)
            if target.transport == flow.transport:
                return target
            return Peer(flow.transport, flow.host, flow.port)
        if target.host != flow.host:
            return Peer(flow.transport, flow.host, flow.port)
        return target

    # -- intake ---------------------------------------------------------------------------------
    def _now(self) -> float:
        loop = self._loop or asyncio.get_event_loop()
        return loop.time()

    def _on_transport_error(self, destination: Peer, exc: Exception) -> None:
        self.layer.transport_error(destination, self._now())
        self._pump()

    def _on_message(self, message: Request | Response, source: Peer) -> None:
        if isinstance(message, Response):
            self.counters["responses_in"] += 1
            self.layer.receive(message, source, self._now())
            self._pump()
            return
        self.counters["requests_in"] += 1
        request = message
        if self._force_rport and source.transport == "udp":
            try:
                apply_received(request, source, force_rport=True)
            except SipParseError:
                pass  # a broken Via: validation below answers it
        try:
            validate_request(request, supported=SUPPORTED_EXTENSIONS)
        except SipParseError as err:
            if err.status != 483:  # Max-Forwards 0 matters only when proxying: the proxy checks it
                self._reject_invalid(request, source, err)
                return
        self.layer.receive(request, source, self._now())
        self._pump()

    def _reject_invalid(self, request: Request, source: Peer, err: SipParseError) -> None:
        self.counters["rejected_invalid"] += 1
        if request.method == "ACK" or not err.status:
            return
        try:
            response = make_response(request, err.status, err.reason)
        except SipParseError:
            return
        if err.status == 420:
            unsupported = getattr(err, "unsupported", None) or []
            if unsupported:
                response.headers.add("Unsupported", ", ".join(unsupported))
        if err.status == 505 or err.status == 416 or err.status == 400:
            pass
        self._add_server(response)
        try:
            destination = response_destination(response, source=source)
        except SipParseError:
            return
        self.transport.send(response.to_bytes(), destination)

    def _add_server(self, response: Response) -> None:
        if self.server_header and "server" not in response.headers:
            response.headers.add("Server", self.server_header)

    def _pump(self) -> None:
        layer = self.layer
        while True:
            event = layer.next_event()
            if event is None:
                break
            try:
                if isinstance(event, RequestReceived):
                    self._new_request(event.transaction, event.request)
                elif isinstance(event, ResponseReceived):
                    self._response(event.transaction, event.response)
                elif isinstance(event, AckReceived):
                    self._ack(event.request, event.source)
                elif isinstance(event, TransactionTerminated):
                    self._terminated(event.transaction)
                elif isinstance(event, TransactionTimedOut | TransportErrorOccurred):
                    ct = self._ct_by_txn.get(event.transaction)
                    if ct is not None:
                        self._fire_timeout(ct, transport_error=isinstance(event, TransportErrorOccurred))
                elif isinstance(event, StrayResponseReceived):
                    self._stray_response(event.response)
            except Exception:
                log.exception("SIP RA failed on %r", event)
        if self.transport is not None:
            for out in layer.messages_to_send():
                self.transport.send(out.data, out.destination)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self._now())
        self._pump()

    def _new_request(self, txn: Any, request: Request) -> None:
        source = txn.source
        method = request.method
        endpoint = self.context.endpoint
        if method == "CANCEL":
            self._cancel(txn, request)
            return
        to_tag = request.to_tag
        if to_tag is not None:
            dialog = self.dialogs.get((request.call_id, to_tag, request.from_tag or ""))
            if dialog is not None:
                self._in_dialog(txn, request, dialog)
                return
            if self._addressed_to_us(request):
                self._answer(ServerTransactionActivity(self.provider, txn, request, source), 481,
                             "Call/Transaction Does Not Exist")
                return
        st = ServerTransactionActivity(self.provider, txn, request, source)
        if self._stopping or self._check_overload():
            self.counters["rejected_overload"] += 1
            self._answer(st, 503, "Service Unavailable",
                         headers=[("Retry-After", str(self.context.config["retry_after"]))])
            return
        domains = self.context.config["domains"]
        if domains and method != "OPTIONS" and not self._served(request, domains):
            self._answer(st, 404, "Not Found (domain not served here)")
            return
        self._st_by_txn[txn] = st
        endpoint.start_activity(st, st)
        event_type = request_event_type(method)
        address = self._address(request)
        try:
            endpoint.fire_event(st, event_type, RequestEvent(request, st, None, source), address,
                                callback=lambda outcome: self._processed(st, outcome, in_dialog=False))
        except Exception as exc:
            log.warning("could not fire %s: %s", method, exc)
            self._answer(st, 500, "Server Internal Error")
            endpoint.end_activity(st)
            return
        if self._loop is not None and not st.answered:
            st.guard = self._loop.call_later(self.context.config["unanswered_timeout"], self._unanswered, st)

    def _in_dialog(self, txn: Any, request: Request, dialog: Dialog) -> None:
        st = ServerTransactionActivity(self.provider, txn, request, txn.source, dialog)
        seq = request.cseq.seq
        if dialog.remote_seq is not None and seq < dialog.remote_seq:  # §12.2.2
            self._answer(st, 500, "Server Internal Error (CSeq out of order)")
            return
        dialog.remote_seq = seq
        if request.method in ("SUBSCRIBE", "INVITE", "UPDATE", "NOTIFY", "REFER"):
            contacts = request.contacts
            if contacts and not contacts[0].is_star:
                dialog.remote_target = str(contacts[0].uri)  # target refresh (§12.2.2)
        if dialog.persistent:
            self.context.container.activity_changed(self.context.entity_name, dialog)
        self._st_by_txn[txn] = st
        try:
            self.context.endpoint.fire_event(
                dialog, request_event_type(request.method, in_dialog=True),
                RequestEvent(request, st, dialog, txn.source), self._address(request),
                callback=lambda outcome: self._processed(st, outcome, in_dialog=True))
        except Exception as exc:
            log.warning("could not fire in-dialog %s: %s", request.method, exc)
            self._answer(st, 481, "Call/Transaction Does Not Exist")

    def _ack(self, request: Request, source: Peer) -> None:
        to_tag = request.to_tag
        dialog = self.dialogs.get((request.call_id, to_tag or "", request.from_tag or ""))
        if dialog is not None:
            st = ServerTransactionActivity(self.provider, None, request, source, dialog)
            self.context.endpoint.fire_event(dialog, request_event_type("ACK", in_dialog=True),
                                             RequestEvent(request, st, dialog, source), None)
            return
        if not self._addressed_to_us(request) and not self._check_overload():
            # an ACK for a 2xx passing through (proxy): stateless delivery as an initial event
            st = ServerTransactionActivity(self.provider, None, request, source)
            st.answered = True
            endpoint = self.context.endpoint
            endpoint.start_activity(st, st)
            endpoint.fire_event(st, request_event_type("ACK"), RequestEvent(request, st, None, source),
                                self._address(request), callback=lambda _o: endpoint.end_activity(st))

    def _cancel(self, txn: Any, request: Request) -> None:
        cancel_st = ServerTransactionActivity(self.provider, txn, request, txn.source)
        target = self.layer.find_server_transaction_for_cancel(request)
        if target is None:
            self._answer(cancel_st, 481, "Call/Transaction Does Not Exist")
            return
        invite_st = self._st_by_txn.get(target)
        if invite_st is None:  # already answered finally: the CANCEL has no effect (§9.2)
            self._answer(cancel_st, 200, "OK")
            return
        self._answer(cancel_st, 200, "OK")  # §9.2: answer the CANCEL itself at once
        if invite_st.answered:
            return
        endpoint = self.context.endpoint

        def after(outcome: EventOutcome) -> None:
            if not invite_st.answered:
                self._answer(invite_st, 487, "Request Terminated")

        if endpoint.activity_exists(invite_st):
            endpoint.fire_event(invite_st, request_event_type("CANCEL"),
                                RequestEvent(request, cancel_st, None, txn.source), None, callback=after)
        else:
            after(EventOutcome(0, 0, 0))

    def _response(self, txn: Any, response: Response) -> None:
        ct = self._ct_by_txn.get(txn)
        if ct is None:
            return
        final = response.status >= 200
        if final:
            ct.final_status = response.status
        event = ResponseEvent(response, ct, ct.dialog)
        endpoint = self.context.endpoint
        handle = ct.dialog if ct.dialog is not None else ct
        if endpoint.activity_exists(handle):
            try:
                endpoint.fire_event(handle, response_event_type(response.status), event, None)
            except Exception as exc:
                log.debug("response %d not delivered: %s", response.status, exc)
        if final and ct.request.method != "INVITE":
            # Retransmitted finals are absorbed by the transaction layer from here (Timer K):
            # the mapping, and the client transaction's activity after this event, can go.
            self._ct_by_txn.pop(txn, None)
            if ct.dialog is None and endpoint.activity_exists(ct):
                endpoint.end_activity(ct)

    def _fire_timeout(self, ct: ClientTransactionActivity, *, transport_error: bool, detail: Any = None) -> None:
        endpoint = self.context.endpoint
        handle = ct.dialog if ct.dialog is not None else ct
        if ct.final_status is None and endpoint.activity_exists(handle):
            ct.final_status = 408
            try:
                endpoint.fire_event(handle, TRANSACTION_TIMEOUT, TimeoutEvent(ct, ct.dialog, transport_error, detail))
            except Exception as exc:
                log.debug("timeout not delivered: %s", exc)
        if ct.dialog is None and endpoint.activity_exists(ct) and ct.txn is None:
            endpoint.end_activity(ct)

    def _terminated(self, txn: Any) -> None:
        endpoint = self.context.endpoint
        ct = self._ct_by_txn.pop(txn, None)
        if ct is not None:
            if ct.dialog is None and endpoint.activity_exists(ct):
                endpoint.end_activity(ct)
            return
        st = self._st_by_txn.pop(txn, None)
        if st is not None and st.dialog is None and endpoint.activity_exists(st) and st.answered:
            endpoint.end_activity(st)

    def _stray_response(self, response: Response) -> None:
        """A 2xx retransmission for an INVITE we proxied (§16.7): forward it statelessly."""
        vias = response.headers.get_all("Via")
        if len(vias) < 2:
            return
        try:
            top = response.top_via
        except SipParseError:
            return
        if top.host.lower() not in self._local_names or (top.port or 5060) != self.port:
            return
        out = Response(response.status, response.reason, response.headers.copy(), response.body)
        out.headers.remove("Via")
        for via in vias[1:]:
            out.headers.add("Via", via)
        self.transport.send(out.to_bytes(), response_destination(out))

    # -- answering what no service took -------------------------------------------------------
    def _processed(self, st: ServerTransactionActivity, outcome: EventOutcome, *, in_dialog: bool) -> None:
        if st.answered:
            return
        if outcome.delivered and not outcome.failed:
            return  # a service is working on it (e.g. a proxy waiting for a branch)
        if outcome.failed:
            self._answer(st, 500, "Server Internal Error")
            return
        method = st.request.method
        if method == "OPTIONS":
            self._answer(st, 200, "OK", headers=[
                ("Allow", ", ".join(self._allowed())),
                ("Accept", "application/sdp, application/pidf+xml, application/watcherinfo+xml, text/plain"),
                ("Allow-Events", ", ".join(self.context.config["event_packages"])),
                ("Accept-Encoding", "identity"), ("Accept-Language", "en"),
                ("Supported", "path, outbound"),
            ])
        elif method in ("SUBSCRIBE", "PUBLISH"):
            self._answer(st, 489, "Bad Event",
                         headers=[("Allow-Events", ", ".join(self.context.config["event_packages"]))])
        elif in_dialog or method in ("BYE", "NOTIFY", "PRACK", "UPDATE", "INFO"):
            self._answer(st, 481, "Call/Transaction Does Not Exist")
        elif method in KNOWN_METHODS:
            self._answer(st, 405, "Method Not Allowed", headers=[("Allow", ", ".join(self._allowed()))])
        else:
            self._answer(st, 501, "Not Implemented", headers=[("Allow", ", ".join(self._allowed()))])

    def _unanswered(self, st: ServerTransactionActivity) -> None:
        if not st.answered and st.request.method != "INVITE":
            self.counters["unanswered_timeouts"] += 1
            self._answer(st, 500, "Server Internal Error (no answer from the service)")

    def _allowed(self) -> list[str]:
        container = self.context.container
        methods = {"OPTIONS", "ACK", "CANCEL"}
        for method in KNOWN_METHODS:
            if request_event_type(method) in container._initial:
                methods.add(method)
        return [m for m in KNOWN_METHODS if m in methods]

    def _answer(self, st: ServerTransactionActivity, status: int, reason: str, *,
                headers: list[tuple[str, str]] | None = None) -> None:
        if st.answered or st.txn is None:
            return
        self.counters["answered_by_ra"] += 1
        response = st.create_response(status, reason, headers=headers or ())
        st.answered = True
        st.final_status = status
        self.transmit_response(st, response)
        endpoint = self.context.endpoint
        if st.dialog is None and endpoint.activity_exists(st) and status >= 200:
            pass  # the activity ends when the transaction terminates

    # -- helpers --------------------------------------------------------------------------------
    def _address(self, request: Request) -> Address | None:
        try:
            return Address("sip", aor_of(request.to.uri))
        except SipParseError:
            return None

    def _addressed_to_us(self, request: Request) -> bool:
        if request.headers.get("Route"):
            return False
        return self.is_local(request.raw_uri)

    def _served(self, request: Request, domains: list[str]) -> bool:
        try:
            uri = request.uri
        except SipParseError:
            return False
        if not isinstance(uri, SipURI):
            return True
        host = uri.host.lower()
        return host in (d.lower() for d in domains) or self.is_local(uri)

    def _check_overload(self) -> bool:
        backlog = self.context.endpoint.backlog()
        bound = self.context.config["max_backlog"]
        alarms = self.context.alarms
        if not self._overloaded and backlog > bound:
            self._overloaded = True
            alarms.raise_alarm(OVERLOAD_ALARM, self.context.entity_name, "MAJOR",
                               f"event backlog {backlog} above {bound}: new requests get 503")
        elif self._overloaded and backlog <= bound // 2:
            self._overloaded = False
            alarms.clear_alarm(OVERLOAD_ALARM, self.context.entity_name)
        return self._overloaded


@hookimpl
def slee_resource_adaptors() -> list[type[ResourceAdaptor]]:
    """pluggy hook: this module is registered under the ``slee`` entry-point group."""
    return [SipResourceAdaptor]

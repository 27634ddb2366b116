"""The SIP transaction layer (RFC 3261 §17, with the RFC 6026 "Accepted" states).

Sans-IO in the aioquic shape: it is driven by exactly three inputs -- :meth:`receive`
(a parsed message and where it came from), :meth:`handle_timer` and the API calls
(:meth:`send_request`, :meth:`send_response`, ...) -- and answers with
:meth:`messages_to_send`, :meth:`get_timer` and :meth:`next_event`. Time is always a
parameter. The four state machines are tables (``(state, input) -> (next state, actions)``)
with the RFC section beside each transition; a pair missing from a table means the input is
absorbed in that state.

Timers live in one heap with lazy deletion, so :meth:`get_timer` is O(1) amortised however
many transactions are live; the timeouts of completed non-INVITE transactions on UDP (Timer
J, Timer K), all of one delay each, wait in a FIFO per delay instead (see ``_fifos``).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from sys import intern

from slee.sip._addressing import Peer, apply_received, request_destination, response_destination
from slee.sip._errors import SipParseError
from slee.sip._message import Request, Response, make_response

__all__ = [
    "AckReceived",
    "ClientTransaction",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "StrayResponseReceived",
    "TimerConfig",
    "Transaction",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportErrorOccurred",
    "transition_table",
]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

# Methods tried when looking for the transaction a CANCEL cancels (§9.2 says "any method but
# CANCEL or ACK"; in practice only INVITE is ever pending long enough to be cancelled).
_CANCELLABLE_METHODS = (
    "INVITE", "OPTIONS", "BYE", "REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE",
    "INFO", "UPDATE", "PRACK", "REFER",
)


# A completed non-INVITE server transaction on UDP keeps its final response for Timer J
# (64*T1, 32 s) only to answer a retransmitted request. At thousands of requests a second
# that is the bulk of the server's memory per request, so the bytes are kept deflated
# against a preset dictionary of the text every response shares (~330 -> ~110 bytes, ~5 us);
# a retransmission, which is rare, inflates them again.
_WIRE_DICT = (
    b"Content-Type: application/pidf+xml\r\nAllow-Events: presence, presence.winfo\r\nSupported: path\r\n"
    b"Require: \r\nMin-Expires: \r\nWWW-Authenticate: Digest realm=\"\", nonce=\"\", algorithm=MD5, qop=\"auth\"\r\n"
    b"Date: Sun, 06 Dec 2026 00:00:00 GMT\r\nCSeq: 1 PUBLISH\r\nCSeq: 1 SUBSCRIBE\r\nSIP-ETag: \r\nExpires: 3600\r\n"
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK;rport=5060;received=127.0.0.1\r\n"
    b"From: <sip:@>;tag=\r\nTo: <sip:@>;tag=\r\nCall-ID: @\r\nCSeq: 1 REGISTER\r\nContact: <sip:@:5060>;expires=3600\r\n"
    b"Server: slee/0.1\r\nContent-Length: 0\r\n\r\n"
)
_WIRE_WBITS = -11  # raw deflate, 2 KiB window: the dictionary and a response fit


class _Deflated(bytes):
    """Response bytes kept deflated (see _WIRE_DICT); ``inflate()`` gives them back."""

    __slots__ = ()

    @classmethod
    def of(cls, data: bytes) -> bytes:
        deflate = zlib.compressobj(1, zlib.DEFLATED, _WIRE_WBITS, 1, zlib.Z_DEFAULT_STRATEGY, _WIRE_DICT)
        packed = deflate.compress(data) + deflate.flush()
        return cls(packed) if len(packed) < len(data) else data

    def inflate(self) -> bytes:
        inflate = zlib.decompressobj(_WIRE_WBITS, _WIRE_DICT)
        return inflate.decompress(self) + inflate.flush()


def _fifo_head(fifo: deque[Transaction]) -> Transaction | None:
    """The first transaction of a completion FIFO whose timer is still armed; the ones
    cancelled since (a transport error ended them) are dropped on the way."""
    while fifo:
        head = fifo[0]
        if head._timeout_entry is _IN_FIFO:
            return head
        fifo.popleft()
    return None


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4 timer values, in seconds."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum time a message may stay in the network
    timer_b_factor: int = 64  # Timers B, F, H, J, L, M = 64*T1
    timer_d: float = 32.0  # > 32 s for unreliable transports

    @property
    def timeout(self) -> float:
        return self.timer_b_factor * self.t1


class TransactionState(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


S = TransactionState


class _In(enum.Enum):
    """What can happen to a transaction (the columns of the tables)."""

    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_FINAL = "300-699 received"
    RECV_REQUEST = "request retransmission"
    RECV_ACK = "ACK received"
    SEND_1XX = "1xx from TU"
    SEND_2XX = "2xx from TU"
    SEND_FINAL = "300-699 from TU"
    RETRANSMIT_TIMER = "retransmit timer (A, E, G)"
    TIMEOUT_TIMER = "timeout timer (B, D, F, H, I, J, K, L, M)"
    TRANSPORT_ERROR = "transport error"


# ---------------------------------------------------------------------------------------
# Events and outgoing data


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes for the transport and where they go."""

    data: bytes
    destination: Peer


class Transaction:
    """State shared by client and server transactions (fields are read-only for the TU)."""

    __slots__ = (
        "_interval", "_retransmit_entry", "_timeout_entry", "_wire", "key", "kind",
        "last_response", "request", "state",
    )
    role: str  # 'client' | 'server' (class attribute)

    def __init__(self, key: tuple, request: Request, state: TransactionState) -> None:
        self.key = key
        self.request = request
        self.state = state
        self.kind = "invite" if request.method == "INVITE" else "non-invite"
        self.last_response: Response | None = None
        self._wire = b""  # what a retransmission resends: the request, or the last response
        self._interval = 0.0  # current retransmit interval
        # The heap entry of each timer slot, [deadline, seq, transaction, slot], or None.
        # Cancelling clears the entry's transaction: a dead entry waiting for its deadline
        # in the heap does not keep the transaction alive (a NOTIFY's Timer F, 32 s).
        self._retransmit_entry: list | None = None
        self._timeout_entry: list | None = None

    @property
    def reliable(self) -> bool:
        raise NotImplementedError

    @property
    def _table(self) -> _Table:
        raise NotImplementedError

    def __repr__(self) -> str:
        method = self.request.method if self.request is not None else "(released)"
        return f"<{type(self).__name__} {self.role} {method} {self.state.value} {self.key[0]!r}>"


class ClientTransaction(Transaction):
    """A request we sent, and its responses (§17.1)."""

    __slots__ = ("_ack", "destination")
    role = "client"

    def __init__(self, key: tuple, request: Request, destination: Peer) -> None:
        invite = request.method == "INVITE"
        super().__init__(key, request, S.CALLING if invite else S.TRYING)
        self.destination = destination
        self._ack: bytes | None = None

    @property
    def reliable(self) -> bool:
        return self.destination.reliable

    @property
    def _table(self) -> _Table:
        return _CLIENT_INVITE if self.kind == "invite" else _CLIENT_NON_INVITE


class ServerTransaction(Transaction):
    """A request we received, and the responses the TU sends to it (§17.2)."""

    __slots__ = ("response_destination", "source")
    role = "server"

    def __init__(self, key: tuple, request: Request, source: Peer) -> None:
        invite = request.method == "INVITE"
        super().__init__(key, request, S.PROCEEDING if invite else S.TRYING)
        self.source = source
        self.response_destination: Peer | None = None

    @property
    def reliable(self) -> bool:
        return self.source.reliable

    @property
    def _table(self) -> _Table:
        return _SERVER_INVITE if self.kind == "invite" else _SERVER_NON_INVITE


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction; the TU must answer it."""

    transaction: ServerTransaction
    request: Request


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that belongs to no transaction: the ACK for a 2xx (§17.1.1.1, RFC 6026 §7.1)."""

    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponseReceived:
    """A response matching no client transaction (§18.1.2), e.g. a late 2xx retransmission."""

    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B/F (no final response) or Timer H (no ACK for our non-2xx final)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransportErrorOccurred:
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    transaction: Transaction


TransactionEvent = (
    RequestReceived | AckReceived | ResponseReceived | StrayResponseReceived
    | TransactionTimedOut | TransportErrorOccurred | TransactionTerminated
)

_Table = dict[tuple[TransactionState, _In], tuple[TransactionState, tuple[Callable, ...]]]

_RETRANSMIT = 0  # timer slots
_TIMEOUT = 1
_IN_FIFO: list = []  # marks a timeout kept in a completion FIFO (TransactionLayer._fifos), not in the heap


# ---------------------------------------------------------------------------------------
# The layer


class TransactionLayer:
    """All client and server transactions of one SIP element."""

    def __init__(self, config: TimerConfig | None = None, *, auto_trying: bool = True) -> None:
        """``auto_trying``: answer a new INVITE with 100 Trying at once (§17.2.1: MUST,
        unless the TU is known to respond within 200 ms, which an event container cannot
        promise)."""
        self.config = config if config is not None else TimerConfig()
        self.auto_trying = auto_trying
        self._client: dict[tuple, ClientTransaction] = {}
        self._server: dict[tuple, ServerTransaction] = {}
        self._heap: list[list] = []  # [deadline, seq, transaction or None (cancelled), slot]
        self._stale_entries = 0
        # Completed non-INVITE transactions on UDP wait out a delay that is the same for all
        # of them (Timer J 64*T1 for servers, Timer K T4 for clients), so they expire in the
        # order they completed: a FIFO per delay, each transaction's deadline in its
        # ``_interval`` (unused once completed), instead of a heap entry of ~150 bytes for
        # each of the thousands that wait at any time.
        self._fifos: dict[float, deque[Transaction]] = {}
        self._seq = itertools.count(1)
        self._events: deque[TransactionEvent] = deque()
        self._outgoing: list[Outgoing] = []

    # -- outputs ------------------------------------------------------------------------

    def messages_to_send(self) -> list[Outgoing]:
        """Everything queued for the transport since the last call (drains the queue)."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or None."""
        heap = self._heap
        earliest = None
        while heap:
            if heap[0][2] is not None:
                earliest = heap[0][0]
                break
            heapq.heappop(heap)
            self._stale_entries -= 1
        for fifo in self._fifos.values():
            head = _fifo_head(fifo)
            if head is not None and (earliest is None or head._interval < earliest):
                earliest = head._interval
        return earliest

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    # -- inputs -------------------------------------------------------------------------

    def receive(self, message: Request | Response, source: Peer, now: float) -> None:
        """A message from the network. Malformed key headers make it dropped silently."""
        try:
            if isinstance(message, Response):
                self._receive_response(message, source, now)
            else:
                self._receive_request(message, source, now)
        except SipParseError:
            return  # §18: the transport should have answered 400; nothing matches it here

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        heap = self._heap
        fifos = self._fifos.values()
        while True:
            while heap and heap[0][2] is None:
                heapq.heappop(heap)
                self._stale_entries -= 1
            due = heap[0][0] if heap and heap[0][0] <= now else None
            source: deque[Transaction] | None = None
            for fifo in fifos:
                head = _fifo_head(fifo)
                if head is not None and head._interval <= now and (due is None or head._interval < due):
                    due, source = head._interval, fifo
            if due is None:
                return
            if source is not None:
                txn = source.popleft()
                txn._timeout_entry = None
                self._step(txn, _In.TIMEOUT_TIMER, now)
                continue
            _deadline, _seq, txn, slot = heapq.heappop(heap)
            if slot == _RETRANSMIT:
                txn._retransmit_entry = None
                self._step(txn, _In.RETRANSMIT_TIMER, now)
            else:
                txn._timeout_entry = None
                self._step(txn, _In.TIMEOUT_TIMER, now)

    def send_request(self, request: Request, destination: Peer, now: float) -> ClientTransaction:
        """Start a client transaction (§17.1). The top Via must carry an RFC 3261 branch."""
        if request.method == "ACK":
            raise ValueError("ACK is not a transaction: use send_stateless() (§17.1.1.3)")
        branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise ValueError("the top Via needs a branch starting with z9hG4bK (§8.1.1.7)")
        key = (branch, request.cseq.method)
        if key in self._client:
            raise ValueError(f"a client transaction with branch {branch!r} already exists")
        txn = ClientTransaction(key, request, destination)
        self._client[key] = txn
        txn._wire = request.to_bytes()
        self._outgoing.append(Outgoing(txn._wire, destination))
        # §17.1.1.2 / §17.1.2.2: Timer A or E (unreliable only), Timer B or F (always).
        if not destination.reliable:
            txn._interval = self.config.t1
            self._arm(txn, _RETRANSMIT, self.config.t1, now)
        self._arm(txn, _TIMEOUT, self.config.timeout, now)
        return txn

    def send_response(self, transaction: ServerTransaction, response: Response,
                      now: float) -> None:
        """Send a response through its server transaction (§17.2)."""
        status = response.status
        event = _In.SEND_1XX if status < 200 else _In.SEND_2XX if status < 300 else _In.SEND_FINAL
        if not self._step(transaction, event, now, response):
            raise ValueError(
                f"cannot send {status} in state {transaction.state.value} of {transaction!r}")

    def send_stateless(self, message: Request | Response, destination: Peer | None = None) -> None:
        """Send outside any transaction: the ACK for a 2xx (§13.2.2.4), stateless proxying.

        Without ``destination`` a response goes where §18.2.2 says and a request to its
        Route/Request-URI target (§8.1.2).
        """
        if destination is None:
            if isinstance(message, Response):
                destination = response_destination(message)
            else:
                destination = request_destination(message)
        self._outgoing.append(Outgoing(message.to_bytes(), destination))

    def transport_error(self, destination: Peer, now: float) -> None:
        """The transport could not deliver to ``destination``: fail the transactions using it
        (§17.1.4, §17.2.4). A scan; transport errors are rare next to messages."""
        for txn in [*self._client.values(), *self._server.values()]:
            peer = txn.destination if isinstance(txn, ClientTransaction) else (
                txn.response_destination or txn.source)
            if not peer.same_address(destination):
                continue
            if (destination.connection_id is not None and peer.connection_id is not None
                    and destination.connection_id != peer.connection_id):
                continue
            self._step(txn, _In.TRANSPORT_ERROR, now)

    def terminate(self, transaction: Transaction) -> None:
        """The TU gives a transaction up, e.g. an INVITE with no final response 64*T1 after
        its CANCEL (§9.1) -- RFC 3261 has no timer for a client INVITE in Proceeding."""
        if transaction.state is not S.TERMINATED:
            transaction.state = S.TERMINATED
            self._terminate(transaction)

    def find_server_transaction_for_cancel(self, cancel: Request) -> ServerTransaction | None:
        """The transaction a CANCEL cancels: §17.2.3 matching with the method taken as
        "anything but CANCEL or ACK" (§9.2)."""
        base = self._server_key(cancel)
        index = 3 if len(base) == 4 else 6  # where the method sits in the key
        for method in _CANCELLABLE_METHODS:
            key = (*base[:index], method, *base[index + 1:])
            txn = self._server.get(key)
            if txn is not None and txn.state is not S.TERMINATED:
                return txn
        return None

    def find_server_transaction(self, request: Request) -> ServerTransaction | None:
        return self._server.get(self._server_key(request))

    # -- request and response intake ----------------------------------------------------

    def _receive_request(self, request: Request, source: Peer, now: float) -> None:
        apply_received(request, source)  # idempotent if the transport already did it
        if request.method == "ACK":
            txn = self._match_ack(request)
            if txn is None:
                self._events.append(AckReceived(request, source))
            else:
                self._step(txn, _In.RECV_ACK, now, request, source)
            return
        key = self._server_key(request)
        txn = self._server.get(key)
        if txn is not None:
            self._step(txn, _In.RECV_REQUEST, now, request, source)
            return
        txn = ServerTransaction(key, request, source)
        self._server[key] = txn
        self._events.append(RequestReceived(txn, request))
        if txn.kind == "invite" and self.auto_trying:
            trying = make_response(request, 100, "Trying")  # copies Timestamp (§8.2.6.1)
            self._step(txn, _In.SEND_1XX, now, trying)

    def _receive_response(self, response: Response, source: Peer, now: float) -> None:
        # §17.1.3: the top Via branch and the CSeq method pick the client transaction.
        key = (response.top_via.branch, response.cseq.method)
        txn = self._client.get(key)
        if txn is None:
            self._events.append(StrayResponseReceived(response, source))
            return
        status = response.status
        if status < 100:
            return
        event = _In.RECV_1XX if status < 200 else _In.RECV_2XX if status < 300 else _In.RECV_FINAL
        self._step(txn, event, now, response, source)

    def _server_key(self, request: Request) -> tuple:
        """§17.2.3 matching key. ACK is keyed as the INVITE it acknowledges."""
        via = request.top_via
        method = request.method
        if method == "ACK":
            method = "INVITE"
        branch = via.branch
        if branch and branch.startswith(MAGIC_COOKIE):
            # interned host: the keys of thousands of completed transactions share one string
            return (branch, intern(via.host), via.port, method)
        # RFC 2543 fallback: Request-URI, To tag, From tag, Call-ID, CSeq, top Via.
        # The Via is compared without the received/rport we may have stamped on it (§18.2.1).
        via_id = (via.transport, via.host, via.port,
                  *(p for p in via.params.items() if p[0] not in ("received", "rport")))
        return (request.raw_uri, request.to_tag, request.from_tag, request.call_id,
                request.cseq.seq, via_id, method)

    def _match_ack(self, ack: Request) -> ServerTransaction | None:
        key = self._server_key(ack)
        if len(key) == 4:
            return self._server.get(key)
        # RFC 2543 (§17.2.3): the ACK's To tag is the one of our response, not of the INVITE
        # (which had none when it was dialog-initiating).
        txn = self._server.get(key)
        if txn is not None:
            return txn
        untagged = (key[0], None, *key[2:])
        txn = self._server.get(untagged)
        if txn is not None and txn.last_response is not None and (
                txn.last_response.to_tag == ack.to_tag):
            return txn
        return None

    # -- the state machine engine -------------------------------------------------------

    def _step(self, txn: Transaction, event: _In, now: float,
              message: Request | Response | None = None, source: Peer | None = None) -> bool:
        """Apply one input; False when the table has no transition (the input is absorbed)."""
        transition = txn._table.get((txn.state, event))
        if transition is None:
            return False
        txn.state, actions = transition
        for action in actions:
            action(self, txn, now, message, source)
        if txn.state is S.TERMINATED:
            self._terminate(txn)
        return True

    def _terminate(self, txn: Transaction) -> None:
        self._cancel(txn, _RETRANSMIT)
        self._cancel(txn, _TIMEOUT)
        table = self._client if isinstance(txn, ClientTransaction) else self._server
        if table.get(txn.key) is txn:
            del table[txn.key]
        self._events.append(TransactionTerminated(txn))

    # -- timers -------------------------------------------------------------------------

    def _arm(self, txn: Transaction, slot: int, delay: float, now: float) -> None:
        self._cancel(txn, slot)
        entry = [now + delay, next(self._seq), txn, slot]
        if slot == _RETRANSMIT:
            txn._retransmit_entry = entry
        else:
            txn._timeout_entry = entry
        heapq.heappush(self._heap, entry)

    def _arm_completed(self, txn: Transaction, delay: float, now: float) -> None:
        """The timeout of a completed non-INVITE transaction on UDP, in its delay's FIFO
        (a transaction completes once, so it is in one FIFO at most once)."""
        self._cancel(txn, _TIMEOUT)
        fifo = self._fifos.get(delay)
        if fifo is None:
            fifo = self._fifos[delay] = deque()
        txn._interval = now + delay
        txn._timeout_entry = _IN_FIFO
        fifo.append(txn)

    def _cancel(self, txn: Transaction, slot: int) -> None:
        if slot == _RETRANSMIT:
            entry = txn._retransmit_entry
            txn._retransmit_entry = None
        else:
            entry = txn._timeout_entry
            txn._timeout_entry = None
            if entry is _IN_FIFO:
                return  # left in its FIFO, skipped when it comes up (see _fifo_head)
        if entry is not None:
            entry[2] = None
            self._stale_entries += 1
        # Lazy deletion leaves dead entries behind (transactions usually end long before
        # their 32 s timeout): rebuild when they outnumber the live ones.
        if self._stale_entries > 1024 and self._stale_entries * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._stale_entries = 0

    def _timeout_for(self, txn: Transaction) -> float:
        """The duration of the timeout timer of the state ``txn`` just entered."""
        config = self.config
        state = txn.state
        if state is S.COMPLETED:
            if txn.role == "client":
                if txn.kind == "invite":
                    return 0.0 if txn.reliable else config.timer_d  # Timer D, §17.1.1.2
                return 0.0 if txn.reliable else config.t4  # Timer K, §17.1.2.2
            if txn.kind == "invite":
                return config.timeout  # Timer H, §17.2.1
            return 0.0 if txn.reliable else config.timeout  # Timer J, §17.2.2
        if state is S.CONFIRMED:
            return 0.0 if txn.reliable else config.t4  # Timer I, §17.2.1
        # ACCEPTED: Timer L (server) / Timer M (client), RFC 6026 §7.1 / §8.4.
        return config.timeout

    # -- actions (the verbs of the tables) ----------------------------------------------

    def _pass_up(self, txn: Transaction, now: float, message, source) -> None:
        txn.last_response = message
        self._events.append(ResponseReceived(txn, message))  # type: ignore[arg-type]

    def _stop_timers(self, txn: Transaction, now: float, message, source) -> None:
        self._cancel(txn, _RETRANSMIT)
        self._cancel(txn, _TIMEOUT)

    def _start_timeout(self, txn: Transaction, now: float, message, source) -> None:
        delay = self._timeout_for(txn)
        if delay <= 0.0:
            self._cancel(txn, _RETRANSMIT)
            txn.state = S.TERMINATED  # reliable transport: the timer is zero (§17)
        elif txn.state is S.COMPLETED and txn.kind == "non-invite":
            self._arm_completed(txn, delay, now)  # Timer J or K: no retransmissions left
        else:
            self._arm(txn, _TIMEOUT, delay, now)

    def _retransmit_request(self, txn: Transaction, now: float, message, source) -> None:
        assert isinstance(txn, ClientTransaction)
        self._outgoing.append(Outgoing(txn._wire, txn.destination))
        if txn.kind == "invite":
            txn._interval *= 2  # Timer A doubles with no cap (§17.1.1.2)
        elif txn.state is S.PROCEEDING:
            txn._interval = self.config.t2  # Timer E in Proceeding: T2 (§17.1.2.2)
        else:
            txn._interval = min(2 * txn._interval, self.config.t2)  # Timer E in Trying
        self._arm(txn, _RETRANSMIT, txn._interval, now)

    def _send_ack(self, txn: Transaction, now: float, message, source) -> None:
        assert isinstance(txn, ClientTransaction)
        txn._ack = _build_ack(txn.request, message)  # type: ignore[arg-type]
        self._outgoing.append(Outgoing(txn._ack, txn.destination))

    def _resend_ack(self, txn: Transaction, now: float, message, source) -> None:
        assert isinstance(txn, ClientTransaction) and txn._ack is not None
        self._outgoing.append(Outgoing(txn._ack, txn.destination))

    def _send_response(self, txn: Transaction, now: float, message, source) -> None:
        assert isinstance(txn, ServerTransaction)
        txn.last_response = message
        txn._wire = message.to_bytes()
        if txn.response_destination is None:
            destination = response_destination(message, source=txn.source)
            # Usually the source itself (rport): share it, a completed transaction keeps it 32 s.
            txn.response_destination = txn.source if destination == txn.source else destination
        self._outgoing.append(Outgoing(txn._wire, txn.response_destination))

    def _release(self, txn: Transaction, now: float, message, source) -> None:
        """A completed non-INVITE transaction only resends its final response (server, until
        Timer J) or absorbs retransmitted finals (client, until Timer K): drop the parsed
        request and response, most of its memory while it waits on UDP."""
        txn.request = None  # type: ignore[assignment]
        txn.last_response = None
        if isinstance(txn, ClientTransaction):
            txn._wire = b""  # a completed non-INVITE client transaction resends nothing
        elif txn._wire and not txn.reliable:  # reliable: Timer J is 0, it ends now
            txn._wire = _Deflated.of(txn._wire)

    def _resend_response(self, txn: Transaction, now: float, message, source) -> None:
        assert isinstance(txn, ServerTransaction)
        wire = txn._wire
        if wire and txn.response_destination is not None:
            if isinstance(wire, _Deflated):
                wire = wire.inflate()
            self._outgoing.append(Outgoing(wire, txn.response_destination))

    def _start_timer_g(self, txn: Transaction, now: float, message, source) -> None:
        if not txn.reliable:  # §17.2.1: Timer G for unreliable transports only
            txn._interval = self.config.t1
            self._arm(txn, _RETRANSMIT, txn._interval, now)

    def _timer_g(self, txn: Transaction, now: float, message, source) -> None:
        self._resend_response(txn, now, message, source)
        txn._interval = min(2 * txn._interval, self.config.t2)  # §17.2.1
        self._arm(txn, _RETRANSMIT, txn._interval, now)

    def _pass_ack_up(self, txn: Transaction, now: float, message, source) -> None:
        self._events.append(AckReceived(message, source))  # type: ignore[arg-type]

    def _timed_out(self, txn: Transaction, now: float, message, source) -> None:
        self._events.append(TransactionTimedOut(txn))

    def _transport_failed(self, txn: Transaction, now: float, message, source) -> None:
        self._events.append(TransportErrorOccurred(txn))


def _build_ack(invite: Request, response: Response) -> bytes:
    """The ACK for a non-2xx final response (§17.1.1.3): the INVITE's Request-URI, Call-ID,
    From, CSeq number and single top Via, the response's To (with its tag), the INVITE's
    Route set; no body."""
    headers = invite.headers
    lines = [f"ACK {invite.raw_uri} SIP/2.0", f"Via: {headers.get_all('Via')[0]}"]
    lines.extend(f"Route: {route}" for route in headers.get_rows("Route"))
    lines.append(f"Max-Forwards: {headers.get('Max-Forwards') or '70'}")
    lines.append(f"From: {headers.get('From')}")
    lines.append(f"To: {response.headers.get('To')}")
    lines.append(f"Call-ID: {headers.get('Call-ID')}")
    lines.append(f"CSeq: {invite.cseq.seq} ACK")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


# ---------------------------------------------------------------------------------------
# The state tables: (state, input) -> (next state, actions). Missing pairs are absorbed.

L = TransactionLayer

_CLIENT_INVITE: _Table = {
    # §17.1.1.2: Timer A retransmits in Calling; Timer B gives up.
    (S.CALLING, _In.RETRANSMIT_TIMER): (S.CALLING, (L._retransmit_request,)),
    (S.CALLING, _In.TIMEOUT_TIMER): (S.TERMINATED, (L._timed_out,)),
    # §17.1.1.2: a provisional response moves to Proceeding and stops A and B.
    (S.CALLING, _In.RECV_1XX): (S.PROCEEDING, (L._stop_timers, L._pass_up)),
    (S.PROCEEDING, _In.RECV_1XX): (S.PROCEEDING, (L._pass_up,)),
    # RFC 6026 §8.4: a 2xx moves to Accepted (Timer M), the TU sends its own ACK.
    (S.CALLING, _In.RECV_2XX): (S.ACCEPTED, (L._stop_timers, L._pass_up, L._start_timeout)),
    (S.PROCEEDING, _In.RECV_2XX): (S.ACCEPTED, (L._pass_up, L._start_timeout)),
    # §17.1.1.2: 300-699 -> Completed, ACK sent by the transaction, Timer D.
    (S.CALLING, _In.RECV_FINAL): (
        S.COMPLETED, (L._stop_timers, L._send_ack, L._pass_up, L._start_timeout)),
    (S.PROCEEDING, _In.RECV_FINAL): (
        S.COMPLETED, (L._send_ack, L._pass_up, L._start_timeout)),
    # §17.1.1.2: a retransmitted final response in Completed is answered with the ACK again.
    (S.COMPLETED, _In.RECV_FINAL): (S.COMPLETED, (L._resend_ack,)),
    (S.COMPLETED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),  # Timer D
    # RFC 6026 §8.4: every 2xx (retransmissions, other forks) in Accepted goes to the TU.
    (S.ACCEPTED, _In.RECV_2XX): (S.ACCEPTED, (L._pass_up,)),
    (S.ACCEPTED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),  # Timer M
    # §17.1.4: transport errors end the transaction and are reported to the TU.
    (S.CALLING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
    (S.PROCEEDING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
    (S.COMPLETED, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
}

_CLIENT_NON_INVITE: _Table = {
    # §17.1.2.2: Timer E retransmits (T1 doubling to T2 in Trying, T2 in Proceeding);
    # Timer F gives up in Trying and Proceeding.
    (S.TRYING, _In.RETRANSMIT_TIMER): (S.TRYING, (L._retransmit_request,)),
    (S.PROCEEDING, _In.RETRANSMIT_TIMER): (S.PROCEEDING, (L._retransmit_request,)),
    (S.TRYING, _In.TIMEOUT_TIMER): (S.TERMINATED, (L._timed_out,)),
    (S.PROCEEDING, _In.TIMEOUT_TIMER): (S.TERMINATED, (L._timed_out,)),
    # §17.1.2.2: provisional -> Proceeding; any final -> Completed with Timer K.
    (S.TRYING, _In.RECV_1XX): (S.PROCEEDING, (L._pass_up,)),
    (S.PROCEEDING, _In.RECV_1XX): (S.PROCEEDING, (L._pass_up,)),
    # In Completed it only absorbs retransmitted finals: the messages are released.
    (S.TRYING, _In.RECV_2XX): (S.COMPLETED, (L._stop_timers, L._pass_up, L._start_timeout, L._release)),
    (S.TRYING, _In.RECV_FINAL): (S.COMPLETED, (L._stop_timers, L._pass_up, L._start_timeout, L._release)),
    (S.PROCEEDING, _In.RECV_2XX): (
        S.COMPLETED, (L._stop_timers, L._pass_up, L._start_timeout, L._release)),
    (S.PROCEEDING, _In.RECV_FINAL): (
        S.COMPLETED, (L._stop_timers, L._pass_up, L._start_timeout, L._release)),
    # §17.1.2.2: responses retransmitted in Completed are absorbed (no entry); Timer K ends.
    (S.COMPLETED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),
    (S.TRYING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
    (S.PROCEEDING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
}

_SERVER_INVITE: _Table = {
    # §17.2.1: in Proceeding the TU's provisionals go out; a retransmitted INVITE gets the
    # latest provisional again.
    (S.PROCEEDING, _In.SEND_1XX): (S.PROCEEDING, (L._send_response,)),
    (S.PROCEEDING, _In.RECV_REQUEST): (S.PROCEEDING, (L._resend_response,)),
    # RFC 6026 §7.1: a 2xx moves to Accepted with Timer L; the TU retransmits the 2xx.
    (S.PROCEEDING, _In.SEND_2XX): (S.ACCEPTED, (L._send_response, L._start_timeout)),
    # §17.2.1: 300-699 -> Completed; Timer G retransmits (unreliable), Timer H waits for ACK.
    (S.PROCEEDING, _In.SEND_FINAL): (
        S.COMPLETED, (L._send_response, L._start_timer_g, L._start_timeout)),
    (S.COMPLETED, _In.RECV_REQUEST): (S.COMPLETED, (L._resend_response,)),
    (S.COMPLETED, _In.RETRANSMIT_TIMER): (S.COMPLETED, (L._timer_g,)),
    (S.COMPLETED, _In.TIMEOUT_TIMER): (S.TERMINATED, (L._timed_out,)),  # Timer H
    # §17.2.1: the ACK -> Confirmed, Timer I absorbs further ACKs (no entry in Confirmed).
    (S.COMPLETED, _In.RECV_ACK): (S.CONFIRMED, (L._stop_timers, L._start_timeout)),
    (S.CONFIRMED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),  # Timer I
    # RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed (no entry), 2xx
    # retransmissions from the TU go out, ACKs go to the TU, Timer L ends it.
    (S.ACCEPTED, _In.SEND_2XX): (S.ACCEPTED, (L._send_response,)),
    (S.ACCEPTED, _In.RECV_ACK): (S.ACCEPTED, (L._pass_ack_up,)),
    (S.ACCEPTED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),  # Timer L
    (S.ACCEPTED, _In.TRANSPORT_ERROR): (S.ACCEPTED, (L._transport_failed,)),
    # §17.2.4: transport errors end the transaction and are reported.
    (S.PROCEEDING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
    (S.COMPLETED, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
}

_SERVER_NON_INVITE: _Table = {
    # §17.2.2: retransmissions in Trying are absorbed (no entry); provisionals -> Proceeding.
    (S.TRYING, _In.SEND_1XX): (S.PROCEEDING, (L._send_response,)),
    (S.PROCEEDING, _In.SEND_1XX): (S.PROCEEDING, (L._send_response,)),
    (S.PROCEEDING, _In.RECV_REQUEST): (S.PROCEEDING, (L._resend_response,)),
    # §17.2.2: any final -> Completed with Timer J (zero on reliable transports).
    (S.TRYING, _In.SEND_2XX): (S.COMPLETED, (L._send_response, L._start_timeout, L._release)),
    (S.TRYING, _In.SEND_FINAL): (S.COMPLETED, (L._send_response, L._start_timeout, L._release)),
    (S.PROCEEDING, _In.SEND_2XX): (S.COMPLETED, (L._send_response, L._start_timeout, L._release)),
    (S.PROCEEDING, _In.SEND_FINAL): (S.COMPLETED, (L._send_response, L._start_timeout, L._release)),
    (S.COMPLETED, _In.RECV_REQUEST): (S.COMPLETED, (L._resend_response,)),
    (S.COMPLETED, _In.TIMEOUT_TIMER): (S.TERMINATED, ()),  # Timer J
    (S.PROCEEDING, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
    (S.COMPLETED, _In.TRANSPORT_ERROR): (S.TERMINATED, (L._transport_failed,)),
}

del L


def transition_table(role: str, kind: str) -> list[tuple[str, str, str, list[str]]]:
    """``(state, input, next state, [actions])`` rows of one machine, for docs/diagrams."""
    table = {
        ("client", "invite"): _CLIENT_INVITE, ("client", "non-invite"): _CLIENT_NON_INVITE,
        ("server", "invite"): _SERVER_INVITE, ("server", "non-invite"): _SERVER_NON_INVITE,
    }[(role, kind)]
    return [(state.value, event.value, target.value, [a.__name__.lstrip("_") for a in acts])
            for (state, event), (target, acts) in table.items()]

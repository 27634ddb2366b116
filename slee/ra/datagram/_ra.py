"""A small UDP resource adaptor: each datagram is an event, each peer a flow (an activity).

It exists to give example services and load tests a real network source that needs no SIP:
a datagram from a new peer starts a ``DatagramFlow`` activity and is fired as
``FLOW_STARTED``; later datagrams of the flow are fired as ``DATAGRAM_RECEIVED``. Services
make ``FLOW_STARTED`` their initial event (like a dialog-creating SIP request), so after an
upgrade the new version gets new flows while flows already under way stay with the old
version's entities. Both events carry a ``DatagramReceived``; and SBBs answer through the provider
(``reply``/``send``) and end the flow when the conversation is over (``end``). Flows idle
for ``idle_timeout`` seconds are ended by the RA.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from slee._ids import EventTypeId, ResourceAdaptorId, ResourceAdaptorTypeId
from slee.events import Address
from slee.ra.spi import ConfigProperty, EventOutcome, ResourceAdaptor, ResourceAdaptorType

DATAGRAM_RECEIVED = EventTypeId("datagram.DatagramReceived", "slee", "1.0")
FLOW_STARTED = EventTypeId("datagram.FlowStarted", "slee", "1.0")


@dataclass(frozen=True, slots=True)
class DatagramFlow:
    """The activity: one conversation with one peer (host, port)."""

    flow_id: str
    peer: tuple[str, int]


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    """One datagram from ``source``, on ``flow``."""

    data: bytes
    source: tuple[str, int]
    flow: DatagramFlow

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


DATAGRAM_RA_TYPE = ResourceAdaptorType(
    ResourceAdaptorTypeId("datagram", "slee", "1.0"),
    {FLOW_STARTED: DatagramReceived, DATAGRAM_RECEIVED: DatagramReceived},
    activity_types=(DatagramFlow,),
    description="UDP datagrams as events; one activity per peer",
)


class DatagramProvider:
    """What SBBs get from ``context.ra(link)``: answer peers and end flows."""

    def __init__(self, ra: DatagramResourceAdaptor) -> None:
        self._ra = ra

    def reply(self, event: DatagramReceived, data: bytes) -> None:
        self._ra.send(event.source, data)

    def send(self, flow: DatagramFlow, data: bytes) -> None:
        self._ra.send(flow.peer, data)

    def end(self, flow: DatagramFlow) -> None:
        """End the flow now; the peer's next datagram starts a new one."""
        self._ra.end_flow(flow)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, ra: DatagramResourceAdaptor) -> None:
        self.ra = ra

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ra.received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.ra.context.tracer.fine("datagram socket error: %s", exc)


class DatagramResourceAdaptor(ResourceAdaptor):
    ra_id = ResourceAdaptorId("datagram", "slee", "1.0")
    ra_type = DATAGRAM_RA_TYPE
    config_properties = {
        "host": ConfigProperty(str, "127.0.0.1", "address to bind"),
        "port": ConfigProperty(int, 0, "UDP port (0: any free port)"),
        "idle_timeout": ConfigProperty(float, 60.0, "seconds after which a silent flow is ended"),
        "max_backlog": ConfigProperty(int, 10000, "drop new datagrams while this many events are queued"),
    }

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.provider = DatagramProvider(self)
        self._transport: asyncio.DatagramTransport | None = None
        self._flows: dict[tuple[str, int], tuple[Hashable, DatagramFlow]] = {}
        self._last_seen: dict[Hashable, float] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._sweeper: asyncio.TimerHandle | None = None
        self.received_count = 0
        self.sent_count = 0
        self.dropped = 0
        self.failed_events = 0
        self.processed = 0
        self.listen: str | None = None

    def ra_verify_configuration(self, config: dict[str, Any]) -> None:
        if not 0 <= config["port"] <= 65535:
            raise ValueError(f"port {config['port']} is outside 0..65535")
        if config["idle_timeout"] <= 0:
            raise ValueError("idle_timeout must be positive")

    def ra_configure(self, config: dict[str, Any]) -> None:
        self.config = config

    async def ra_active(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                           local_addr=(self.config["host"], self.config["port"]))
        self._transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.listen = f"udp:{host}:{port}"
        self._stopping = False
        self._schedule_sweep()

    def ra_stopping(self) -> None:
        self._stopping = True

    async def ra_inactive(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.listen = None

    def get_provider(self) -> DatagramProvider:
        return self.provider

    def listen_addresses(self) -> list[str]:
        return [self.listen] if self.listen else []

    # -- the datagram path ---------------------------------------------------------------
    def received(self, data: bytes, peer: tuple[str, int]) -> None:
        self.received_count += 1
        endpoint = self.context.endpoint
        if endpoint.backlog() >= self.config["max_backlog"]:
            self.dropped += 1
            return
        current = self._flows.get(peer)
        event_type = DATAGRAM_RECEIVED
        if current is None:
            if self._stopping:
                self.dropped += 1
                return
            flow = DatagramFlow(f"{peer[0]}:{peer[1]}#{next(self._ids)}", peer)
            handle: Hashable = ("flow", flow.flow_id)
            endpoint.start_activity(handle, flow)
            self._flows[peer] = current = (handle, flow)
            event_type = FLOW_STARTED
        handle, flow = current
        self._last_seen[handle] = self.context.clock.now()
        try:
            endpoint.fire_event(handle, event_type, DatagramReceived(data, peer, flow),
                                Address("udp", f"{peer[0]}:{peer[1]}"), self._outcome)
        except Exception as exc:
            self.failed_events += 1
            self.context.tracer.warning("could not fire a datagram event from %s: %s", peer, exc)

    def _outcome(self, outcome: EventOutcome) -> None:
        self.processed += 1
        if outcome.failed:
            self.failed_events += 1

    def send(self, peer: tuple[str, int], data: bytes) -> None:
        if self._transport is None:
            raise RuntimeError("the datagram RA entity is not active")
        self._transport.sendto(data, peer)
        self.sent_count += 1

    def end_flow(self, flow: DatagramFlow) -> None:
        current = self._flows.get(flow.peer)
        if current is not None and current[1] == flow:
            del self._flows[flow.peer]
            handle = current[0]
            if self.context.endpoint.activity_exists(handle):
                self.context.endpoint.end_activity(handle)

    def activity_ended(self, handle: Hashable) -> None:
        self._last_seen.pop(handle, None)
        for peer, (h, _flow) in list(self._flows.items()):
            if h == handle:
                del self._flows[peer]

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(min(1.0, self.config["idle_timeout"] / 4), self._sweep)

    def _sweep(self) -> None:
        now = self.context.clock.now()
        limit = self.config["idle_timeout"]
        for _peer, (handle, flow) in list(self._flows.items()):
            if now - self._last_seen.get(handle, now) > limit:
                self.end_flow(flow)
        if self._transport is not None:
            self._schedule_sweep()

    def stats(self) -> dict[str, Any]:
        return {"listen": self.listen, "received": self.received_count, "sent": self.sent_count,
                "processed": self.processed, "failed_events": self.failed_events, "dropped": self.dropped,
                "flows": len(self._flows)}

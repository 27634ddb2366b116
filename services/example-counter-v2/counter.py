"""The example counter SBB: one entity per datagram flow (created by its first datagram),
answering every datagram (version 2).

A datagram whose text ends in "bye" is answered and ends the flow (its entity is removed).
The answer names this code's version, so an upgrade can be watched from the client side.
"""

from __future__ import annotations

from slee import CmpField, Sbb, event_handler
from slee.ra.datagram import DATAGRAM_RECEIVED, FLOW_STARTED, DatagramReceived

VERSION = "v2"


class CounterSbb(Sbb):
    count = CmpField(int, default=0)

    @event_handler(FLOW_STARTED, initial=True, select=("activity_context",))
    def on_flow_started(self, event: DatagramReceived, aci) -> None:
        self.on_datagram(event, aci)

    @event_handler(DATAGRAM_RECEIVED)
    def on_datagram(self, event: DatagramReceived, aci) -> None:
        self.count += 1
        text = event.text.strip()
        datagram = self.context.ra("datagram")
        datagram.reply(event, f"{VERSION} {self.count} {text}".encode())
        self.context.usage("replies").increment("replies")
        if text.split()[-1:] == ["bye"]:
            datagram.end(event.flow)

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


def flows(ctx) -> list[dict]:
    """Each live flow with its peer and datagram count (bin/slee op example-counter flows)."""
    rows = []
    for entity in ctx.entities("CounterSbb"):
        for flow in ctx.activity_of(entity):
            rows.append({"flow": flow.flow_id, "peer": f"{flow.peer[0]}:{flow.peer[1]}",
                         "count": entity.cmp.get("count", 0), "version": VERSION})
    return sorted(rows, key=lambda r: r["flow"])

"""The datagram resource adaptor: UDP datagrams as SLEE events (an example and load source)."""

from slee.ra.datagram._ra import (
    DATAGRAM_RA_TYPE,
    DATAGRAM_RECEIVED,
    FLOW_STARTED,
    DatagramFlow,
    DatagramProvider,
    DatagramReceived,
    DatagramResourceAdaptor,
)
from slee.ra.spi import hookimpl


@hookimpl
def slee_resource_adaptors() -> list[type]:
    """The pluggy hook (entry point ``slee`` / ``datagram``) offering this RA."""
    return [DatagramResourceAdaptor]


__all__ = [
    "DATAGRAM_RA_TYPE",
    "DATAGRAM_RECEIVED",
    "FLOW_STARTED",
    "DatagramFlow",
    "DatagramProvider",
    "DatagramReceived",
    "DatagramResourceAdaptor",
    "slee_resource_adaptors",
]

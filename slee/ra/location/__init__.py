"""The location service resource adaptor: SIP bindings by address-of-record (RFC 3261 §10).

Entry point ``location = "slee.ra.location"`` in the ``slee`` group; recipes create the
entity named ``location`` and services link it as ``location``.
"""

from slee.ra.location._ra import (
    LOCATION_RA_TYPE,
    AorActivity,
    LocationProvider,
    LocationResourceAdaptor,
)
from slee.ra.location._table import (
    ConcurrentUpdateError,
    LocationTable,
    best_first,
    contact_key,
    uri_key,
)
from slee.ra.location.events import (
    LOCATION_CHANGED,
    LOCATION_DEREGISTERED,
    LOCATION_REGISTERED,
    Binding,
    LocationEvent,
)
from slee.ra.spi import hookimpl


@hookimpl
def slee_resource_adaptors() -> list[type]:
    """The pluggy hook (entry point ``slee`` / ``location``) offering this RA."""
    return [LocationResourceAdaptor]


__all__ = [
    "LOCATION_CHANGED",
    "LOCATION_DEREGISTERED",
    "LOCATION_RA_TYPE",
    "LOCATION_REGISTERED",
    "AorActivity",
    "Binding",
    "ConcurrentUpdateError",
    "LocationEvent",
    "LocationProvider",
    "LocationResourceAdaptor",
    "LocationTable",
    "best_first",
    "contact_key",
    "slee_resource_adaptors",
    "uri_key",
]

"""Drivers for real SIP clients (baresip, pjsua2) used by the end-to-end tests.

Each driver starts one client process it owns, talks to it through its own UI (baresip's
stdio commands, a pjsua2 agent's JSON lines) and reports what the client itself says.
"""

from ._process import ClientError, ClientTimeout
from .baresip import BARESIP_STATUSES, BaresipClient, BaresipConfig
from .pjsua2_client import ACTIVITY_MAP, Pjsua2Client

__all__ = [
    "ACTIVITY_MAP",
    "BARESIP_STATUSES",
    "BaresipClient",
    "BaresipConfig",
    "ClientError",
    "ClientTimeout",
    "Pjsua2Client",
]

"""asyncio SIP transports: UDP and TCP on one port (RFC 3261 §18).

The only SIP code that touches sockets. It parses what arrives with the sans-IO core in
`slee.sip`, stamps received/rport on requests, answers unparseable requests itself, and
hands every message to one callback together with the `Peer` it came from.
"""

from slee.transport._config import TransportConfig
from slee.transport._shard import ShardConfig, shard_of_uri
from slee.transport._stun import is_stun, stun_binding_response
from slee.transport._transport import (
    MessageHandler,
    SipTransport,
    TransportErrorHandler,
    bind_udp_group,
)

__all__ = [
    "MessageHandler",
    "ShardConfig",
    "SipTransport",
    "TransportConfig",
    "TransportErrorHandler",
    "bind_udp_group",
    "is_stun",
    "shard_of_uri",
    "stun_binding_response",
]

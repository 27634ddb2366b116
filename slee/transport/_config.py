"""Transport configuration: one frozen dataclass passed in, never a global."""

from __future__ import annotations

from dataclasses import dataclass

from slee.transport._shard import ShardConfig

__all__ = ["TransportConfig"]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where and how the SIP transport listens (RFC 3261 §18).

    UDP and TCP bind the same port number: a UAC that fails over from UDP to TCP
    (RFC 3261 §18.1.1) expects to find the server on the port it already knows.
    """

    host: str = "0.0.0.0"
    """Bind address: "0.0.0.0", "::" (IPv6, dual-stack where the OS allows), or one address."""
    port: int = 5060
    """0 picks an ephemeral port (tests); UDP then binds the port TCP was given."""
    udp: bool = True
    tcp: bool = True
    max_message_size: int = 65535
    """Largest framed TCP message accepted; larger ones fail framing (RFC 3261 §18.3)."""
    max_connections: int = 10000
    """Open TCP connections (inbound and outbound); new ones beyond it are refused."""
    tcp_idle_timeout: float = 600.0
    """Seconds without traffic after which a TCP connection is closed (0 disables)."""
    connect_timeout: float = 5.0
    """Seconds an outbound TCP connect may take before the send is reported as failed."""
    advertised_host: str | None = None
    """What goes into Via/Contact when bound to a wildcard address (NAT, several NICs)."""
    max_write_buffer: int = 1 << 20
    # UDP socket buffers (the kernel doubles and caps them at net.core.rmem_max). Small on
    # purpose: under overload a deep queue only delays requests past the clients' retransmit
    # timers, so the server spends itself on requests already given up (congestion
    # collapse); a short queue drops the excess and the clients back off (RFC 3261 T1).
    udp_buffer: int = 256 << 10
    """Bytes queued for one TCP peer before it is treated as a stalled reader and closed."""
    tcp_backlog: int = 1024
    """listen() backlog: a registration storm after a restart arrives all at once."""
    shard: ShardConfig | None = None
    """Worker ``shard.index`` of ``shard.count`` sharing this port (SO_REUSEPORT); messages
    owned by another worker are handed to it (see `slee.transport._shard`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if not (self.udp or self.tcp):
            raise ValueError("enable at least one of udp and tcp")
        if self.max_message_size < 512:
            raise ValueError("max_message_size below 512 bytes cannot carry a SIP request")
        if self.max_connections < 1 or self.max_write_buffer < self.max_message_size:
            raise ValueError("max_connections must be >= 1 and max_write_buffer must hold "
                             "at least one message of max_message_size")
        if self.shard is not None and self.shard.count > 1 and self.port == 0:
            raise ValueError("workers sharing a port need a fixed port, not 0")
        if self.tcp_idle_timeout < 0 or self.connect_timeout <= 0:
            raise ValueError("tcp_idle_timeout must be >= 0 and connect_timeout > 0")

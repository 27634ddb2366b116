"""STUN Binding answers for RFC 5626 §4.4.2 UDP keep-alives (RFC 5389 §7, §15.2).

SIP Outbound clients on UDP keep their NAT binding open with STUN Binding requests sent
to the SIP port itself; a server that ignores them makes the client declare the flow dead.
Sans-IO: bytes and the observed source address in, the answer bytes out.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["is_stun", "stun_binding_response"]

_MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020
_HEADER = struct.Struct("!HHI12s")


def is_stun(data: bytes) -> bool:
    """True for a STUN message: top two bits zero and the magic cookie (RFC 5389 §6)."""
    return (
        len(data) >= 20
        and data[0] < 0x40
        and data[4:8] == b"\x21\x12\xa4\x42"
        and len(data) % 4 == 0
    )


def stun_binding_response(data: bytes, host: str, port: int) -> bytes | None:
    """The Binding success response telling the client its reflexive address, or None."""
    if not is_stun(data):
        return None
    msg_type, length, _cookie, txid = _HEADER.unpack_from(data)
    if msg_type != _BINDING_REQUEST or length != len(data) - 20:
        return None
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    xport = port ^ (_MAGIC_COOKIE >> 16)
    if ip.version == 4:
        family, xaddr = 0x01, int(ip) ^ _MAGIC_COOKIE
        addr = xaddr.to_bytes(4, "big")
    else:
        family = 0x02
        key = int.from_bytes(struct.pack("!I", _MAGIC_COOKIE) + txid, "big")
        addr = (int(ip) ^ key).to_bytes(16, "big")
    value = struct.pack("!BBH", 0, family, xport) + addr
    attribute = struct.pack("!HH", _XOR_MAPPED_ADDRESS, len(value)) + value
    return _HEADER.pack(_BINDING_SUCCESS, len(attribute), _MAGIC_COOKIE, txid) + attribute

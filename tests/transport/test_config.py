"""TransportConfig validation and what the transport advertises."""

from __future__ import annotations

import ipaddress

import pytest

from slee.transport import SipTransport, TransportConfig
from tests.transport.harness import run


def _ignore(message: object, source: object) -> None:
    pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 70000},
        {"udp": False, "tcp": False},
        {"max_message_size": 100},
        {"max_connections": 0},
        {"max_message_size": 65535, "max_write_buffer": 1000},
        {"connect_timeout": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TransportConfig(**kwargs)  # type: ignore[arg-type]


def test_advertised_host() -> None:
    async def scenario() -> None:
        bound = SipTransport(TransportConfig(host="127.0.0.1", port=0), _ignore)
        named = SipTransport(TransportConfig(host="0.0.0.0", port=0,
                                             advertised_host="sip.example.com"), _ignore)
        wildcard = SipTransport(TransportConfig(host="0.0.0.0", port=0, tcp=False), _ignore)
        for transport in (bound, named, wildcard):
            await transport.start()
        try:
            assert bound.advertised_host == "127.0.0.1"
            assert named.advertised_host == "sip.example.com"
            guessed = ipaddress.ip_address(wildcard.advertised_host)
            assert guessed.version == 4 and not guessed.is_unspecified
        finally:
            for transport in (bound, named, wildcard):
                await transport.close()

    run(scenario())


def test_send_before_start_is_a_usage_error() -> None:
    from slee.sip._addressing import Peer

    transport = SipTransport(TransportConfig(port=0), _ignore)
    with pytest.raises(RuntimeError):
        transport.send(b"x", Peer("udp", "127.0.0.1", 5060))

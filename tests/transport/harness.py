"""Shared helpers for transport tests: a recording SipTransport on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slee.sip._addressing import Peer
from slee.sip._message import Request, Response
from slee.transport import SipTransport, TransportConfig

TEST_TIMEOUT = 20.0


def run(coroutine: Awaitable[Any], timeout: float = TEST_TIMEOUT) -> Any:
    """Run one test coroutine on a fresh loop, bounded in time."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


class Recorder:
    """A SipTransport whose on_message and on_transport_error record into lists."""

    def __init__(self, handler: Callable[[Request | Response, Peer], None] | None = None,
                 **config: Any) -> None:
        config.setdefault("host", "127.0.0.1")
        config.setdefault("port", 0)
        self.messages: list[tuple[Request | Response, Peer]] = []
        self.errors: list[tuple[Peer, Exception]] = []
        self._handler = handler
        self._arrived = asyncio.Event()
        self.transport = SipTransport(TransportConfig(**config), self._on_message)
        self.transport.on_transport_error = self._on_error

    def _on_message(self, message: Request | Response, source: Peer) -> None:
        self.messages.append((message, source))
        self._arrived.set()
        if self._handler is not None:
            self._handler(message, source)

    def _on_error(self, destination: Peer, exc: Exception) -> None:
        self.errors.append((destination, exc))
        self._arrived.set()

    async def __aenter__(self) -> Recorder:
        await self.transport.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.transport.close()

    @property
    def host(self) -> str:
        return self.transport.listening[0].host

    @property
    def port(self) -> int:
        return self.transport.port

    async def wait_messages(self, count: int = 1, timeout: float = 5.0) -> None:
        await self._wait(lambda: len(self.messages) >= count, timeout)

    async def wait_errors(self, count: int = 1, timeout: float = 5.0) -> None:
        await self._wait(lambda: len(self.errors) >= count, timeout)

    async def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

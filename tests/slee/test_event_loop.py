"""`bin/slee start --loop`: which event loop the server runs on."""

import asyncio

import pytest

from slee.server import StartError, loop_factory, run_loop


def test_asyncio_is_asyncios_own_loop():
    assert loop_factory("asyncio") is None

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(kind(), "asyncio").startswith("asyncio")


def test_auto_and_uvloop_run_on_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop")  # a dependency on every platform that has it

    async def kind() -> type:
        return type(asyncio.get_running_loop())

    assert loop_factory("auto") is uvloop.new_event_loop
    assert run_loop(kind(), "uvloop") is uvloop.Loop


def test_an_unknown_loop_is_refused_with_the_choices():
    async def never() -> int:
        raise AssertionError("must not run")

    with pytest.raises(StartError, match="auto, uvloop, asyncio"):
        run_loop(never(), "trio")

"""The SIP RA over real loopback sockets: routing into SBBs and the RA's own answers."""

import asyncio

import pytest

from slee import Sbb, ServiceId, event_handler
from slee.container import Container
from slee.ra.sip import REQUEST, SipResourceAdaptor
from tests.support.sipclient import SipTestClient

SERVICE = ServiceId("echo", "slee.tests", "1.0")


class RegisterEcho(Sbb):
    """Answers REGISTER 200 with the Contact it got; MESSAGE raises (-> 500 from the RA)."""

    @event_handler(REQUEST["REGISTER"], initial=True)
    def on_register(self, event, aci):
        contact = event.request.headers.get("Contact") or ""
        event.server_transaction.respond(200, headers=[("Contact", contact)])

    @event_handler(REQUEST["MESSAGE"], initial=True)
    def on_message(self, event, aci):
        raise RuntimeError("this SBB fails on MESSAGE")


async def start(config=None):
    c = Container()
    await c.start()
    c.install_ra(SipResourceAdaptor)
    cfg = {"host": "127.0.0.1", "port": 0, **(config or {})}
    entity = c.create_ra_entity("sip", SipResourceAdaptor.ra_id, cfg)
    c.install_service(SERVICE, RegisterEcho, ra_links={"sip": "sip"})
    c.activate_service(SERVICE)
    await c.activate_ra_entity("sip")
    return c, entity.ra


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_register_answered_by_sbb_and_options_by_ra(transport):
    async def main():
        c, ra = await start()
        async with await SipTestClient.connect(transport, "127.0.0.1", ra.port) as ua:
            ua.send(ua.request_bytes("REGISTER", "sip:example.com", contact="<sip:alice@127.0.0.1:5099>"))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 200
            assert resp.headers.get("Contact") == "<sip:alice@127.0.0.1:5099>"
            assert resp.to_tag  # the RA's response carries a To-tag

            ua.send(ua.request_bytes("OPTIONS", f"sip:127.0.0.1:{ra.port}"))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 200
            assert "REGISTER" in resp.headers.get("Allow")
            assert "presence" in resp.headers.get("Allow-Events")

            ua.send(ua.request_bytes("MESSAGE", "sip:bob@example.com"))
            assert (await ua.receive_response(timeout=5)).status == 500

            ua.send(ua.request_bytes("SUBSCRIBE", "sip:bob@example.com", contact="<sip:a@127.0.0.1>",
                                     headers=[("Event", "dialog")]))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 489 and "presence" in resp.headers.get("Allow-Events")

            ua.send(ua.request_bytes("FOO", "sip:bob@example.com"))
            assert (await ua.receive_response(timeout=5)).status == 501

            ua.send(ua.request_bytes("INVITE", "sip:bob@example.com", contact="<sip:a@127.0.0.1>"))
            statuses = set()
            while 405 not in statuses:
                statuses.add((await ua.receive_response(timeout=5)).status)
            assert statuses <= {100, 405}

            ua.send(ua.request_bytes("BYE", f"sip:127.0.0.1:{ra.port}", to_tag="gone"))
            assert (await ua.receive_response(timeout=5)).status == 481
        await c.stop()

    run(main())


def test_malformed_and_invalid_requests_never_reach_an_sbb():
    async def main():
        c, ra = await start()
        async with await SipTestClient.connect("udp", "127.0.0.1", ra.port) as ua:
            ua.send(ua.request_bytes("REGISTER", "sip:example.com").replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 505
            ua.send(ua.request_bytes("REGISTER", "sip:example.com", headers=[("Require", "frobnication")]))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 420 and resp.headers.get("Unsupported") == "frobnication"
        assert c.delivered == 0  # neither reached the SBB
        assert ra.counters["rejected_invalid"] == 2
        await c.stop()

    run(main())


def test_overload_answers_503_and_recovers():
    async def main():
        c, ra = await start({"max_backlog": 1})
        # fake a backlog: events queued but not yet delivered
        c.backlog += 5
        async with await SipTestClient.connect("udp", "127.0.0.1", ra.port) as ua:
            ua.send(ua.request_bytes("REGISTER", "sip:example.com"))
            resp = await ua.receive_response(timeout=5)
            assert resp.status == 503 and resp.headers.get("Retry-After") == "5"
            assert [a.alarm_type for a in c.alarms.list()] == ["sip.overload"]
            c.backlog -= 5
            ua.send(ua.request_bytes("REGISTER", "sip:example.com"))
            assert (await ua.receive_response(timeout=5)).status == 200
            assert c.alarms.list() == []
        await c.stop()

    run(main())


def test_tags_and_branches_are_random_and_unique():
    from slee.ra.sip.activities import new_tag, random_hex

    tags = {new_tag() for _ in range(5000)}  # spans several 4 KiB refills
    assert len(tags) == 5000 and all(len(t) == 12 for t in tags)
    assert len(random_hex(8)) == 16

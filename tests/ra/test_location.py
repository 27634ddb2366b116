"""The location RA in a real container: ordering, versions, transactions, events, expiry and
persistence in a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from slee import Sbb, ServiceId, event_handler
from slee.clock import FakeClock
from slee.container import Container
from slee.ra.location import (
    LOCATION_CHANGED,
    LOCATION_DEREGISTERED,
    LOCATION_REGISTERED,
    Binding,
    ConcurrentUpdateError,
    LocationResourceAdaptor,
)
from slee.store import Store

SERVICE = ServiceId("location-recorder", "slee.tests", "1.0")
ALICE = "sip:alice@example.com"
SEEN: list[tuple[str, str, str, int]] = []  # (event name, aor, reason, bindings)


class Recorder(Sbb):
    """Records every location event it is given (one root entity per AOR activity)."""

    @event_handler(LOCATION_REGISTERED, initial=True)
    def on_registered(self, event, aci):
        SEEN.append(("registered", event.aor, event.reason, len(event.bindings)))

    @event_handler(LOCATION_CHANGED, initial=True)
    def on_changed(self, event, aci):
        SEEN.append(("changed", event.aor, event.reason, len(event.bindings)))

    @event_handler(LOCATION_DEREGISTERED, initial=True)
    def on_deregistered(self, event, aci):
        SEEN.append(("deregistered", event.aor, event.reason, len(event.bindings)))


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()
    yield
    SEEN.clear()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def start(*, store: Store | None = None, clock=None, recorder: bool = True):
    c = Container(store=store, clock=clock)
    await c.start()
    c.install_ra(LocationResourceAdaptor)
    entity = c.create_ra_entity("location", LocationResourceAdaptor.ra_id, {})
    if recorder:
        c.install_service(SERVICE, Recorder, ra_links={"location": "location"})
        c.activate_service(SERVICE)
    await c.activate_ra_entity("location")
    return c, entity.ra


def binding(contact: str, expires_at: float, q: float | None = None, *, aor: str = ALICE, cseq: int = 1) -> Binding:
    return Binding(aor, contact, expires_at, q, "call-1", cseq, (), ("udp", "192.0.2.1", 5060), None, None, None)


def test_lookup_is_best_q_first_then_most_recent_and_skips_expired():
    async def main():
        clock = FakeClock(1000.0)
        c, ra = await start(clock=clock, recorder=False)
        loc = ra.provider
        with c.transaction():
            loc.save(ALICE, [binding("sip:low@h", 2000, 0.1), binding("sip:none-old@h", 1500),
                             binding("sip:high@h", 2000, 0.9), binding("sip:none-new@h", 1800),
                             binding("sip:gone@h", 999, 1.0)], "registered")
        assert [b.contact for b in loc.lookup(ALICE)] == ["sip:none-new@h", "sip:none-old@h", "sip:high@h",
                                                          "sip:low@h"]
        assert loc.aors() == [ALICE]
        clock.advance(1000)  # everything expired (the sweep has not run: reads filter anyway)
        assert loc.lookup(ALICE) == [] and loc.aors() == []
        await c.stop()

    run(main())


def test_version_conflict_refuses_a_stale_writer():
    async def main():
        c, ra = await start(recorder=False)
        loc = ra.provider
        now = time.time()
        seen = loc.version(ALICE)
        with c.transaction():
            assert loc.save(ALICE, [binding("sip:a@h", now + 600)], "registered", expected_version=seen) == seen + 1
        with pytest.raises(ConcurrentUpdateError), c.transaction():
            loc.save(ALICE, [binding("sip:b@h", now + 600)], "registered", expected_version=seen)
        assert [b.contact for b in loc.lookup(ALICE)] == ["sip:a@h"]
        assert loc.version(ALICE) == seen + 1
        await c.stop()

    run(main())


def test_rollback_leaves_no_binding_and_fires_nothing():
    async def main():
        c, ra = await start()
        loc = ra.provider
        with pytest.raises(RuntimeError, match="abort"), c.transaction():
            loc.save(ALICE, [binding("sip:a@h", time.time() + 600)], "registered")
            assert len(loc.lookup(ALICE)) == 1  # visible inside the transaction
            raise RuntimeError("abort")
        await c.wait_idle(5)
        assert loc.lookup(ALICE) == [] and loc.version(ALICE) == 0
        assert not loc.was_registered(ALICE)
        assert SEEN == []
        await c.stop()

    run(main())


def test_events_fire_only_after_commit_in_order():
    async def main():
        c, ra = await start()
        loc = ra.provider
        now = time.time()
        with c.transaction():
            loc.save(ALICE, [binding("sip:a@h", now + 600)], "registered")
            await_none = list(SEEN)
        assert await_none == []  # nothing while the transaction was open
        await c.wait_idle(5)
        assert SEEN == [("registered", ALICE, "registered", 1)]
        with c.transaction():
            loc.save(ALICE, [binding("sip:a@h", now + 600), binding("sip:b@h", now + 600)], "registered")
        with c.transaction():
            loc.save(ALICE, [], "unregistered")
        await c.wait_idle(5)
        assert SEEN[1:] == [("changed", ALICE, "registered", 2), ("deregistered", ALICE, "unregistered", 0)]
        await c.stop()

    run(main())


def test_expiry_timer_removes_bindings_and_fires_deregistered():
    async def main():
        c, ra = await start()
        loc = ra.provider
        now = time.time()
        with c.transaction():
            loc.save(ALICE, [binding("sip:short@h", now + 0.3), binding("sip:long@h", now + 600)], "registered")
            loc.save("sip:bob@example.com", [binding("sip:b@h", now + 0.3, aor="sip:bob@example.com")],
                     "registered")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(k == "deregistered" for k, *_ in SEEN):
            await asyncio.sleep(0.05)
        await c.wait_idle(5)
        assert ("deregistered", "sip:bob@example.com", "expired", 0) in SEEN
        assert ("changed", ALICE, "expired", 1) in SEEN  # alice keeps one binding
        assert [b.contact for b in ra.table.stored(ALICE)] == ["sip:long@h"]  # removed, not just hidden
        assert loc.was_registered("sip:bob@example.com")
        await c.stop()

    run(main())


def test_bindings_survive_a_restart_with_a_real_sqlite_store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'slee.db'}"
    nul_aor = "sip:null-\x00-null@example.com"  # RFC 4475 escnull: an AOR with a NUL once unescaped
    expires = time.time() + 600
    saved = [binding("sip:a@192.0.2.1:5070;transport=tcp", expires, 0.5),
             binding("sip:b@192.0.2.2", expires, 1.0, cseq=7)]

    async def first():
        store = Store.open(url)
        c, ra = await start(store=store, recorder=False)
        with c.transaction():
            ra.provider.save(ALICE, saved, "registered")
            ra.provider.save(nul_aor, [binding("sip:%00@host5.example.com", expires, aor=nul_aor)], "registered")
            ra.provider.save("sip:gone@example.com", [binding("sip:g@h", expires, aor="sip:gone@example.com")],
                             "registered")
        with c.transaction():
            ra.provider.save("sip:gone@example.com", [], "unregistered")
        await c.stop()
        store.close()

    async def second():
        store = Store.open(url)
        c, ra = await start(store=store, recorder=False)
        loc = ra.provider
        assert loc.lookup(ALICE) == sorted(saved, key=lambda b: -(b.q or 1.0))
        assert [b.contact for b in loc.lookup(nul_aor)] == ["sip:%00@host5.example.com"]
        assert sorted(loc.aors()) == sorted([ALICE, nul_aor])
        assert loc.was_registered("sip:gone@example.com") and loc.lookup("sip:gone@example.com") == []
        await c.stop()
        store.close()

    run(first())
    run(second())


def test_an_aor_activity_nothing_is_attached_to_ends_after_its_events():
    # One activity context per registered AOR would cost every registration memory for
    # nothing: with no service attached, the AOR's activity ends once its event is
    # delivered, and the next change starts a new one.
    async def main():
        c, ra = await start(recorder=False)
        loc = ra.provider
        now = time.time()
        for contact in ("sip:a@h", "sip:b@h"):
            with c.transaction():
                loc.save(ALICE, [binding(contact, now + 600)], "registered")
            assert await c.wait_idle(5)
            assert ra._activities == {}
            assert not [k for k in c.activity_contexts if k[0] == "location"]
        assert ra.fired == 2
        await c.stop()

    run(main())


def test_an_aor_activity_a_service_is_attached_to_lives_on():
    async def main():
        c, ra = await start()  # the Recorder's root entity attaches to the AOR's activity
        loc = ra.provider
        now = time.time()
        ids = []
        for contact in ("sip:a@h", "sip:b@h"):
            with c.transaction():
                loc.save(ALICE, [binding(contact, now + 600)], "registered")
            assert await c.wait_idle(5)
            [ac] = [ac for k, ac in c.activity_contexts.items() if k[0] == "location"]
            ids.append(ac.id)
        assert ids[0] == ids[1]
        assert [s[0] for s in SEEN] == ["registered", "changed"]
        await c.stop()

    run(main())

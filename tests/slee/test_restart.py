"""State on persistent activities survives a container restart (real SQLite store)."""

import asyncio

import pytest

from slee import CmpField, Sbb, ServiceId, event_handler
from slee.clock import FakeClock
from slee.container import Container
from slee.events import EventType
from slee.store import Store
from slee.testing import FakeActivity, _HarnessRa
from tests.slee.sbbs import ARM, Ping, TimerSbb

SERVICE = ServiceId("timers", "slee.tests", "1.0")


def build(store, clock):
    c = Container(store=store, clock=clock)
    c.install_ra(_HarnessRa)
    c.install_event_type(EventType(ARM))
    c.create_ra_entity("harness", _HarnessRa.ra_id)
    c.install_service(SERVICE, TimerSbb)
    return c


@pytest.mark.parametrize("period", ["", "10"])
def test_timer_and_entity_survive_restart(tmp_path, period):
    url = f"sqlite:///{tmp_path / 'slee.db'}"
    clock = FakeClock()

    async def first():
        store = Store.open(url)
        c = build(store, clock)
        await c.start()
        c.activate_service(SERVICE)
        act = FakeActivity("register")
        c.start_activity("harness", act, act)
        from slee.events import Address

        c.fire_event("harness", act, ARM, Ping(period), Address("sip", "alice@x"))
        c.end_activity(("harness", act))
        assert await c.wait_idle()
        [entity] = c.entities.values()
        assert entity.cmp["timer_id"]
        await c.stop()
        store.close()
        return entity.id, entity.cmp["timer_id"]

    async def second():
        store = Store.open(url)
        c = build(store, clock)
        counts = c.restore()
        await c.start()
        c.activate_service(SERVICE)
        assert counts["entities"] == 1 and counts["timers"] == 1 and counts["activities"] == 1
        clock.advance(31)
        fired = c.run_timers()
        assert await c.wait_idle()
        [entity] = c.entities.values()
        await c.stop()
        store.close()
        return entity.id, fired, entity.cmp["fired"]

    entity_id, _timer = asyncio.run(first())
    again, fired, count = asyncio.run(second())
    assert again == entity_id
    assert fired == 1 and count == 1


def test_entities_on_transient_activities_are_never_stored(tmp_path):
    """A root attached only to a transient activity (a SIP transaction) gets no store row:
    restore would drop it anyway, so writing it would only cost a write and a delete."""
    from tests.slee.sbbs import BOOM, DONE, PING, CounterSbb

    url = f"sqlite:///{tmp_path / 'slee.db'}"
    svc = ServiceId("counter", "slee.tests", "1.0")

    async def run(first: bool):
        store = Store.open(url)
        c = Container(store=store, clock=FakeClock())
        c.install_ra(_HarnessRa)
        for eid in (PING, BOOM, DONE):
            c.install_event_type(EventType(eid))
        c.create_ra_entity("harness", _HarnessRa.ra_id)
        c.install_service(svc, CounterSbb)
        if not first:
            c.restore()
        await c.start()
        c.activate_service(svc)
        if first:
            act = FakeActivity("t")
            c.start_activity("harness", act, act)
            from slee.events import Address

            c.fire_event("harness", act, PING, Ping(), Address("sip", "a@x"))
        assert await c.wait_idle()
        n = len(c.entities)
        await c.stop()
        remaining = store.count("sbb")
        store.close()
        return n, remaining

    assert asyncio.run(run(True)) == (1, 0)  # live in memory, no row
    assert asyncio.run(run(False)) == (0, 0)


def test_entity_on_a_persistent_activity_is_stored_and_restored(tmp_path):
    """The counterpart: attaching to a null activity makes the entity durable (TimerSbb)."""
    url = f"sqlite:///{tmp_path / 'slee.db'}"

    async def run():
        store = Store.open(url)
        c = build(store, FakeClock())
        await c.start()
        c.activate_service(SERVICE)
        act = FakeActivity("x")
        c.start_activity("harness", act, act)
        from slee.events import Address

        c.fire_event("harness", act, ARM, Ping(""), Address("sip", "bob@x"))
        assert await c.wait_idle()
        await c.stop()
        rows = store.count("sbb")
        store.close()
        return rows

    assert asyncio.run(run()) == 1


def test_a_failing_store_write_does_not_block_later_ones(tmp_path):
    """One transaction whose write the store refuses: what it would have acknowledged is
    withheld and an alarm says why; every later transaction is written and clears it."""
    url = f"sqlite:///{tmp_path / 'slee.db'}"
    ran: list[str] = []
    alarms: list[list[str]] = []
    notes: list[tuple[str, str]] = []

    async def main():
        store = Store.open(url)
        c = Container(store=store)
        c.alarms.listeners.append(lambda what, alarm: notes.append((what, alarm.alarm_type)))
        await c.start()
        with c.transaction() as txn:
            txn.put("test", "bad", {1, 2})  # a set: the store cannot encode it
            txn.after_durable(lambda: ran.append("bad"))
        for i in range(3):
            with c.transaction() as txn:
                txn.put("test", f"good{i}", {"n": i})
                txn.after_durable(lambda i=i: ran.append(f"good{i}"))
        await c.flush()
        await asyncio.sleep(0.05)
        alarms.append([a.alarm_type for a in c.alarms.list()])
        with c.transaction() as txn:
            txn.put("test", "good3", {"n": 3})
        await c.flush()
        await asyncio.sleep(0.05)
        alarms.append([a.alarm_type for a in c.alarms.list()])
        rows = store.load("test")
        await c.stop()
        store.close()
        return rows

    rows = asyncio.run(main())
    assert sorted(rows) == ["good0", "good1", "good2", "good3"]
    assert sorted(ran) == ["good0", "good1", "good2"]  # "bad" was never acknowledged
    assert notes[:1] == [("raised", "store.write-failed")]
    assert ("cleared", "store.write-failed") in notes and alarms[-1] == []


class _FlagSbb(Sbb):
    """A durable entity with one stored and one unstored CMP field."""

    count = CmpField(int, default=0)
    busy = CmpField(bool, default=False, stored=False)

    @event_handler(ARM, initial=True, select=("address",))
    def on_arm(self, event, aci):
        if self.count == 0:
            null = self.context.null_activity_factory.create_null_activity()
            self.context.aci_for(null).attach(self.context.sbb_local_object)
            self.count = 1
        if event.text == "boom":
            self.busy = True
            raise RuntimeError("rolled back")
        self.busy = not self.busy


def test_an_unstored_cmp_field_is_kept_rolled_back_and_passivated_but_never_written(tmp_path):
    from slee.events import Address

    url = f"sqlite:///{tmp_path / 'slee.db'}"
    svc = ServiceId("flags", "slee.tests", "1.0")

    def build_flags(store):
        c = Container(store=store, clock=FakeClock())
        c.install_ra(_HarnessRa)
        c.install_event_type(EventType(ARM))
        c.create_ra_entity("harness", _HarnessRa.ra_id)
        c.install_service(svc, _FlagSbb)
        return c

    async def first():
        store = Store.open(url)
        c = build_flags(store)
        await c.start()
        c.activate_service(svc)
        act = FakeActivity("a")
        c.start_activity("harness", act, act)

        async def arm(text=""):
            c.fire_event("harness", act, ARM, Ping(text), Address("sip", "a@x"))
            assert await c.wait_idle()

        await arm()
        [entity] = c.entities.values()
        assert entity.cmp == {"count": 1, "busy": True}
        stored = store.get("sbb", entity.id)
        assert stored["cmp"] == {"count": 1}  # the unstored field is not in the row
        writes = c._committer.stats["submissions"]
        await arm()  # busy back to False (its default): nothing to write
        await arm()  # busy True again
        assert entity.cmp["busy"] is True and c._committer.stats["submissions"] == writes
        await arm("boom")  # the handler fails: busy is rolled back with its transaction
        assert entity.cmp["busy"] is True
        c.passivate(10)
        assert entity.obj is None and entity.packed is not None
        assert entity.cmp == {"count": 1, "busy": True}  # it travels with the packed state
        await c.stop()
        store.close()
        return entity.id

    async def second(entity_id):
        store = Store.open(url)
        c = build_flags(store)
        c.restore()
        entity = c.entities[entity_id]
        assert entity.cmp == {"count": 1}  # after a restart: the default
        store.close()

    asyncio.run(second(asyncio.run(first())))

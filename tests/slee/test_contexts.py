"""Work scheduled from inside a commit must not run in the committed transaction.

asyncio copies the caller's context into every callback it schedules. A drain scheduled
while a transaction commits (an SBB fired an event) once ran with that committed
transaction still current, so work in it joined a dead transaction: roots it detached were
never removed and entities it created were never stored.
"""

import asyncio

from slee import CmpField, EventTypeId, Sbb, ServiceId, event_handler
from slee.container import Container
from slee.events import Address, EventType
from slee.testing import FakeActivity, _HarnessRa
from slee.transaction import current_transaction

KICK = EventTypeId("ctx.Kick", "slee.tests", "1.0")
FOLLOW = EventTypeId("ctx.Follow", "slee.tests", "1.0")


def test_committed_transaction_is_never_current():
    c = Container()
    txn, token = c.transactions.begin()
    assert current_transaction.get() is txn
    txn.state = "committed"  # as after commit, before the token is reset
    assert current_transaction.get() is None
    current_transaction.reset(token)


def test_a_drain_scheduled_inside_a_commit_runs_in_a_clean_context():
    seen: list[object] = []

    async def main():
        c = Container()
        await c.start()
        txn, token = c.transactions.begin()
        c._loop.call_soon(lambda: seen.append(current_transaction.get()))  # what asyncio captures
        c._drain_soon = lambda: seen.append(("drain", current_transaction.get()))  # type: ignore[method-assign]
        c._schedule_drain()
        c.transactions.commit(txn, token)
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert seen == [None, ("drain", None)]


class Kicker(Sbb):
    """On Kick (on activity A) fires Follow on activity B: queued inside the commit."""

    @event_handler(KICK, initial=True, select=("activity_context",))
    def on_kick(self, event, aci):
        self.fire_event(FOLLOW, event, self.context._container._aci_for_activity(event, self.context.descriptor))


class Follower(Sbb):
    count = CmpField(int, default=0)

    @event_handler(FOLLOW, initial=True, select=("activity_context",))
    def on_follow(self, event, aci):
        self.count += 1


def test_entities_created_and_removed_in_follow_up_work_are_committed():
    async def main():
        c = Container()
        c.install_ra(_HarnessRa)
        for eid in (KICK, FOLLOW):
            c.install_event_type(EventType(eid))
        c.create_ra_entity("h", _HarnessRa.ra_id)
        c.install_service(ServiceId("kick", "t", "1"), Kicker)
        c.install_service(ServiceId("follow", "t", "1"), Follower)
        await c.start()
        c.activate_service(ServiceId("kick", "t", "1"))
        c.activate_service(ServiceId("follow", "t", "1"))
        a, b = FakeActivity("a"), FakeActivity("b")
        c.start_activity("h", a, a)
        c.start_activity("h", b, b)
        c.fire_event("h", a, KICK, b, Address("x", "1"))
        assert await c.wait_idle()
        followers = [e for e in c.entities.values() if e.descriptor.cls is Follower]
        assert [e.cmp for e in followers] == [{"count": 1}]
        c.end_activity(("h", b))
        c.end_activity(("h", a))
        assert await c.wait_idle()
        assert c.entities == {}  # both roots removed once their activities ended
        await c.stop()

    asyncio.run(main())

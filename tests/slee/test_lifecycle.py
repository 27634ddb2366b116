"""SBB lifecycle callback order (JSR 240 §6.3 state diagram) and child relations."""

import pytest

from slee.errors import NoSuchObjectError, ValidationError
from slee.testing import SbbHarness
from tests.slee import sbbs
from tests.slee.sbbs import BOOM, DONE, LOG, PING, SPAWN, ChildSbb, CounterSbb, ParentSbb, Ping


@pytest.fixture(autouse=True)
def clear_log():
    LOG.clear()
    yield
    LOG.clear()


def calls(entity_id=None):
    return [what for what, eid in LOG if entity_id is None or eid == entity_id]


def test_create_then_event_order():
    with SbbHarness(CounterSbb) as h:
        h.fire(PING, Ping(), h.activity("a"), address="alice@example.com")
        eid = h.root().id
        # Pooled (set_sbb_context) -> Ready via create; the create transaction stores;
        # the delivery transaction loads, handles and stores.
        assert calls() == [
            ("set_sbb_context"), ("sbb_create"), ("sbb_post_create"), ("sbb_store"),
            ("sbb_load"), ("on_ping"), ("sbb_store"),
        ]
        assert LOG[1][1] == eid
        LOG.clear()
        h.fire(PING, Ping(), h.activity("b"), address="alice@example.com")
        # same convergence name: the existing entity is attached to "b", no new entity
        assert calls(eid) == ["sbb_load", "on_ping", "sbb_store"]
        assert len(h.roots()) == 1 and len(h.root().attached) == 2


def test_passivate_then_activate_on_next_event():
    with SbbHarness(CounterSbb) as h:
        act = h.activity("a")
        h.fire(PING, Ping(), act, address="alice@example.com")
        eid = h.root().id
        LOG.clear()
        assert h.container.passivate() == 1
        assert calls(eid) == ["sbb_passivate"]
        assert h.root().obj is None  # back in the pool, not bound to the entity
        LOG.clear()
        h.fire(PING, Ping(), act, address="alice@example.com")
        assert calls(eid) == ["sbb_activate", "sbb_load", "on_ping", "sbb_store"]
        assert h.root().cmp["count"] == 2  # CMP state survived passivation


def test_rollback_order_and_state():
    with SbbHarness(CounterSbb, event_types=[DONE]) as h:
        act = h.activity("a")
        h.fire(PING, Ping(), act, address="alice@example.com")
        eid = h.root().id
        LOG.clear()
        outcome = h.fire(BOOM, Ping(), act, address="alice@example.com")
        assert outcome.failed == 1 and outcome.delivered == 0
        # exception_thrown in the failed transaction, then rolled_back in a new one
        assert calls(eid) == ["sbb_load", "sbb_exception_thrown", "sbb_load", "sbb_rolled_back", "sbb_store"]
        assert h.root().cmp["count"] == 1
        assert any("boom" in m for m in h.traces.messages())


def test_activity_end_then_remove():
    with SbbHarness(CounterSbb) as h:
        act = h.activity("a")
        h.fire(PING, Ping(), act, address="alice@example.com")
        eid = h.root().id
        LOG.clear()
        h.end(act)
        assert calls(eid) == ["sbb_load", "on_end", "sbb_store", "sbb_load", "sbb_remove"]
        assert h.roots() == []
        assert h.activity_ended(act)


def test_pool_reuses_objects_and_unset_when_full():
    with SbbHarness(CounterSbb) as h:
        h.container.pool.max_pooled = 1
        acts = [h.activity(f"a{i}") for i in range(3)]
        for i, act in enumerate(acts):
            h.fire(PING, Ping(), act, address=f"user{i}@example.com")
        assert len(h.roots()) == 3
        for act in acts:
            h.end(act)
        assert h.roots() == []
        # three objects were created; one stays pooled, two were unset
        assert calls().count("set_sbb_context") == 3
        assert calls().count("unset_sbb_context") == 2


def test_child_create_local_call_and_cascade_remove():
    with SbbHarness(ParentSbb) as h:
        act = h.activity("call")
        h.fire(SPAWN, Ping("hello"), act)
        parent = h.root()
        [child_id] = parent.children["kids"]
        child = h.entity(child_id)
        assert child.cmp == {"value": "hello"}
        assert child.priority == 5 and child.parent_id == parent.id
        # DONE fired by the parent reached both, the child first (higher priority)
        order = [w for w, _ in LOG if w.endswith("on_done")]
        assert order == ["child_on_done", "parent_on_done"]
        LOG.clear()
        h.end(act)
        removes = [eid for w, eid in LOG if w == "sbb_remove"]
        assert removes == [child_id, parent.id]  # children first
        assert h.entities() == []


def test_local_object_of_removed_entity_raises():
    with SbbHarness(ParentSbb) as h:
        act = h.activity("call")
        h.fire(SPAWN, Ping("x"), act)
        from slee.sbb import SbbLocalObject

        [child_id] = h.root().children["kids"]
        ref = SbbLocalObject(h.container, child_id)
        h.end(act)
        with pytest.raises(NoSuchObjectError):
            ref.get_sbb_priority()


def test_validation_rejects_bad_handler_signature():
    from slee import EventTypeId, Sbb, event_handler

    class Bad(Sbb):
        @event_handler(PING, initial=True)
        def on_ping(self, event):  # missing aci
            pass

    with pytest.raises(ValidationError, match=r"test_lifecycle.py:\d+: event handler Bad.on_ping must take"):
        SbbHarness(Bad)

    class Unknown(Sbb):
        @event_handler(EventTypeId("nope", "x", "1"), initial=True)
        def on_x(self, event, aci):
            pass

    from slee.container import Container

    with pytest.raises(ValidationError, match="not installed"):
        Container().describe(Unknown)


def test_child_sbb_module_is_importable():
    assert sbbs.ChildSbb is ChildSbb


def test_passivated_state_is_packed_and_comes_back_equal():
    """A passivated entity keeps its CMP state as JSON text; the next event sees the same
    values of the same types, and the store would get the same document."""
    with SbbHarness(sbbs.KeeperSbb) as h:
        act = h.activity("a")
        h.fire(PING, Ping("fill"), act, address="k@example.com")
        entity = h.container.entities[h.root().id]
        before = dict(entity.cmp)
        stored_before = entity._cmp_json()  # the CMP part of the store document
        h.container.passivate()
        assert entity.packed is not None and entity._cmp is None
        assert len(entity.packed) < 400
        assert {k: v for k, v in entity.cmp.items() if k not in ("where", "kid")} == {
            k: v for k, v in before.items() if k not in ("where", "kid")}
        assert entity.packed is None  # reading unpacked it
        assert entity.cmp["where"]._ac is before["where"]._ac
        assert entity.cmp["kid"] == before["kid"]
        assert entity._cmp_json() == stored_before
        h.container.passivate()
        h.fire(PING, Ping("again"), act, address="k@example.com")
        assert entity.cmp["seen"][-1] == ["bytes", "ActivityContextInterface", True, 0.1 + 0.2]


def test_state_that_would_not_come_back_the_same_is_not_packed():
    with SbbHarness(sbbs.KeeperSbb) as h:
        act = h.activity("a")
        h.fire(PING, Ping("tuple"), act, address="k@example.com")
        entity = h.container.entities[h.root().id]
        h.container.passivate()
        assert entity.packed is None and entity.cmp["pair"] == (1, 2)


def test_packed_state_is_deflated_against_the_first_state_of_its_sbb():
    with SbbHarness(sbbs.KeeperSbb) as h:
        for user in ("k1", "k2"):
            h.fire(PING, Ping("fill"), h.activity(), address=f"{user}@example.com")
        first, second = (h.container.entities[e.id] for e in h.roots())
        size = len(second._cmp_json().encode())
        h.container.passivate()
        assert first.pack_dict is second.pack_dict is second.descriptor.pack_dict
        assert len(second.packed) * 3 < size  # most of it is in the shared dictionary
        assert second.cmp["text"] == "é ü" and second.packed is None and second.pack_dict is None


def test_idle_sweep_passivates_objects_unused_since_the_last_sweep():
    with SbbHarness(CounterSbb) as h:
        act = h.activity()
        h.fire(PING, Ping(), act, address="a@example.com")
        a = h.container.entities[h.root().id]
        h.container._idle_sweep()  # the first sweep only marks where it stopped
        assert a.obj is not None
        h.fire(PING, Ping(), h.activity(), address="b@example.com")
        b = next(h.container.entities[e.id] for e in h.roots() if e.id != a.id)
        h.container._idle_sweep()  # a was not used since the mark: passivated
        assert a.obj is None and b.obj is not None
        h.fire(PING, Ping(), act, address="a@example.com")  # a is used again
        h.container._idle_sweep()
        assert a.obj is not None and b.obj is None
        assert a.cmp["count"] == 2 and b.cmp["count"] == 1


def test_the_idle_sweep_runs_on_a_started_container(tmp_path):
    """A started container sweeps by itself every ``ready_idle_s`` (real loop timer)."""
    import asyncio

    from slee.container import Container, ContainerConfig

    async def main():
        container = Container(config=ContainerConfig(ready_idle_s=0.05))
        await container.start()
        try:
            await asyncio.sleep(0.12)
            assert container._idle_handle is not None and len(container._ready_lru) == 1  # the mark
        finally:
            await container.stop()
        assert container._idle_handle is None

    asyncio.run(main())


def test_an_idle_sweep_passivates_a_bounded_batch_per_loop_turn():
    """Packing costs ~10 us an entity: a second's worth of them at once would stall the
    loop, so one call does at most ``_IDLE_BATCH`` and the rest follows."""
    from slee.container import _IDLE_BATCH

    with SbbHarness(CounterSbb) as h:
        for i in range(_IDLE_BATCH + 6):
            h.fire(PING, Ping(), h.activity(), address=f"u{i}@example.com")
        entities = [h.container.entities[e.id] for e in h.roots()]
        h.container._idle_sweep()  # mark
        h.container._idle_sweep()
        assert sum(e.obj is None for e in entities) == _IDLE_BATCH
        h.container._idle_sweep()  # the continuation (call_soon on a running container)
        assert all(e.obj is None for e in entities)

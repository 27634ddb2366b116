"""Lifecycle through the manager: activate, upgrade (swap), drain, uninstall, restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slee.container import Container
from slee.deploy import DeploymentManager
from slee.errors import InvalidStateError
from slee.ra.datagram import (
    DATAGRAM_RECEIVED,
    FLOW_STARTED,
    DatagramFlow,
    DatagramReceived,
    DatagramResourceAdaptor,
)
from slee.service import ServiceState
from slee.store import Store

from .conftest import SBB_CODE, write_unit


def _fire(c: Container, flow: str, first: bool) -> None:
    handle = ("flow", flow)
    activity = DatagramFlow(flow, ("127.0.0.1", 1))
    if first:
        c.start_activity("dgram", handle, activity)
    c.fire_event("dgram", handle, FLOW_STARTED if first else DATAGRAM_RECEIVED,
                 DatagramReceived(b"x", ("127.0.0.1", 1), activity))
    c.drain()


def _owner(c: Container, flow: str) -> str:
    ac = c.activity_contexts[("dgram", ("flow", flow))]
    return {str(e.service.id) for e in ac.attached}.pop()


def test_upgrade_keeps_old_flows_on_v1_and_new_on_v2(manager, tmp_path):
    c = manager.container
    manager.install(write_unit(tmp_path, version="1.0"))
    manager.activate("demo")
    _fire(c, "old", first=True)
    result = asyncio.run(manager.upgrade("demo", write_unit(tmp_path, version="2.0")))
    assert result["new"] == "demo/test/2.0" and result["old_state"] == "STOPPING"
    _fire(c, "old", first=False)
    _fire(c, "new", first=True)
    assert _owner(c, "old") == "demo/test/1.0"
    assert _owner(c, "new") == "demo/test/2.0"
    with pytest.raises(InvalidStateError, match="STOPPING with 1 root SBB entities"):
        manager.uninstall("demo/test/1.0")
    c.end_activity(("dgram", ("flow", "old")))
    c.drain()
    assert c.services[manager.service("demo/test/1.0").id].state is ServiceState.INACTIVE
    manager.uninstall("demo/test/1.0")
    with pytest.raises(InvalidStateError, match="ACTIVE"):
        manager.uninstall("demo")


def test_upgrade_to_a_broken_unit_changes_nothing(manager, tmp_path):
    manager.install(write_unit(tmp_path, version="1.0"))
    manager.activate("demo")
    broken = write_unit(tmp_path, version="2.0")
    (broken / "sbb.py").write_text("raise RuntimeError('nope')\n")
    with pytest.raises(Exception, match="importing sbb failed"):
        asyncio.run(manager.upgrade("demo", broken))
    assert [(str(s.id), s.state.value) for s in manager.container.services.values()] == [("demo/test/1.0", "ACTIVE")]


def test_rollback_swaps_back_to_an_installed_version(manager, tmp_path):
    v1 = write_unit(tmp_path, version="1.0")
    manager.install(v1)
    manager.activate("demo")
    asyncio.run(manager.upgrade("demo", write_unit(tmp_path, version="2.0")))
    result = asyncio.run(manager.upgrade("demo", v1))
    assert (result["new"], result["installed"]) == ("demo/test/1.0", False)
    states = {str(s.id): s.state.value for s in manager.container.services.values()}
    assert states == {"demo/test/1.0": "ACTIVE", "demo/test/2.0": "INACTIVE"}


def test_what_was_deployed_comes_back_after_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'slee.db'}"

    def boot() -> tuple[Store, Container, DeploymentManager]:
        store = Store.open(url)
        c = Container(store=store)
        c.install_ra(DatagramResourceAdaptor)
        return store, c, DeploymentManager(c, units_dir=tmp_path / "units")

    async def first() -> None:
        store, c, m = boot()
        await c.start()
        m.create_ra_entity("dgram", "datagram", {"port": 0})
        await m.activate_ra_entity("dgram")
        src = tmp_path / "src"
        m.install(write_unit(src, version="1.0"))
        m.activate("demo")
        m.install(write_unit(src, version="2.0"))
        await c.stop()
        store.close()
        for unit in m.units.values():
            unit.namespace.unload()
        import shutil

        shutil.rmtree(src)  # the copies in the data dir are what comes back

    async def second() -> None:
        store, c, m = boot()
        summary = m.restore()
        await c.start()
        assert await m.activate_restored_ra_entities() == ["dgram"]
        assert summary["problems"] == []
        states = {str(s.id): s.state.value for s in c.services.values()}
        assert states == {"demo/test/1.0": "ACTIVE", "demo/test/2.0": "INACTIVE"}
        assert c.ra_entities["dgram"].config["port"] == 0
        await c.stop()
        store.close()
        for unit in m.units.values():
            unit.namespace.unload()

    asyncio.run(first())
    asyncio.run(second())


def test_missing_code_at_restore_raises_an_alarm(tmp_path):
    url = f"sqlite:///{tmp_path / 'slee.db'}"
    store = Store.open(url)
    c = Container(store=store)
    c.install_ra(DatagramResourceAdaptor)
    c.create_ra_entity("dgram", DatagramResourceAdaptor.ra_id, {})
    m = DeploymentManager(c, units_dir=tmp_path / "units")
    unit = m.install(write_unit(tmp_path / "src", version="1.0"))
    unit.namespace.unload()
    import shutil

    shutil.rmtree(unit.archive)
    store.close()
    store = Store.open(url)
    c = Container(store=store)
    summary = DeploymentManager(c, units_dir=Path(tmp_path / "units")).restore()
    assert any("demo/test/1.0" in p for p in summary["problems"])
    assert [a.alarm_type for a in c.alarms.list()] == ["restore-unit"]
    store.close()


OPS_MANIFEST = """\
name: ops
vendor: test
version: "1.0"
depends-on:
  ra-types: [datagram/slee/1.0]
services:
  - name: ops
    root-sbb: sbb:CounterSbb
    management:
      counts: sbb:counts
      reset: sbb:reset
ra-links:
  datagram: dgram
"""

OPS_CODE = SBB_CODE + '''

def counts(ctx):
    """Datagram counts per flow."""
    return sorted((a.flow_id, e.cmp.get("count", 0)) for e in ctx.entities("CounterSbb") for a in ctx.activity_of(e))


def reset(ctx, flow):
    """Set one flow's count back to zero (transactional, like any SBB write)."""
    for e in ctx.entities("CounterSbb"):
        if any(a.flow_id == flow for a in ctx.activity_of(e)):
            e.set_cmp("count", 0)
            return {"reset": flow}
    raise ValueError(f"no flow {flow}")
'''


def test_management_operations_are_declared_validated_and_run_in_a_transaction(manager, tmp_path):
    from slee.deploy import DeployError
    from slee.service import OperationContext

    unit = write_unit(tmp_path, name="ops", manifest=OPS_MANIFEST, code=OPS_CODE)
    manager.install(unit)
    service = manager.activate("ops")
    assert sorted(service.operations) == ["counts", "reset"]
    c = manager.container
    _fire(c, "f1", True)
    _fire(c, "f1", False)
    _fire(c, "f2", True)
    ctx = OperationContext(c, service)
    with c.transaction():
        assert service.operations["counts"](ctx) == [("f1", 2), ("f2", 1)]
    with c.transaction():
        assert service.operations["reset"](ctx, flow="f1") == {"reset": "f1"}
    with pytest.raises(ValueError, match="no flow f9"), c.transaction():
        service.operations["reset"](ctx, flow="f9")
    with c.transaction():
        assert service.operations["counts"](ctx) == [("f1", 0), ("f2", 1)]

    bad = write_unit(tmp_path, name="ops2", manifest=OPS_MANIFEST.replace("ops", "ops2").replace("sbb:reset", "sbb:nope"),
                     code=OPS_CODE)
    with pytest.raises(DeployError, match=r"deployable-unit.yaml:\d+: .*nope"):
        manager.install(bad)


def test_upgrade_with_migrate_moves_entities_to_the_new_code(manager, tmp_path):
    """--migrate: live entities continue on v2 (same ids and CMP), v1 is INACTIVE at once."""
    v1 = write_unit(tmp_path, version="1.0", tag="v1")
    v2 = write_unit(tmp_path / "b", version="2.0", tag="v2")
    manager.install(v1)
    manager.activate("demo")
    c = manager.container
    _fire(c, "f1", True)
    _fire(c, "f1", False)
    [before] = list(c.entities.values())
    assert before.cmp["count"] == 2

    result = asyncio.run(manager.upgrade("demo", v2, migrate=True))
    assert result["migrated"] == 1 and result["old_state"] == "INACTIVE"
    [after] = list(c.entities.values())
    assert after.id == before.id and after.cmp["count"] == 2
    assert str(after.service.id) == "demo/test/2.0" and after.descriptor.id.version == "2.0"
    assert _owner(c, "f1") == "demo/test/2.0"
    _fire(c, "f1", False)  # the next event of the old flow runs the new code
    assert after.cmp["count"] == 3
    manager.uninstall("demo/test/1.0")


def test_migrate_is_refused_when_the_new_version_lacks_a_live_sbb(manager, tmp_path):
    from slee.errors import ValidationError

    v1 = write_unit(tmp_path, version="1.0")
    renamed = (
        "from slee import Sbb, event_handler\n"
        "from slee.ra.datagram import FLOW_STARTED\n\n\n"
        "class OtherSbb(Sbb):\n"
        "    @event_handler(FLOW_STARTED, initial=True)\n"
        "    def on_start(self, event, aci):\n"
        "        pass\n"
    )
    v2 = write_unit(tmp_path / "b", version="2.0", code=renamed)
    (v2 / "deployable-unit.yaml").write_text((v2 / "deployable-unit.yaml").read_text().replace("sbb:CounterSbb", "sbb:OtherSbb"))
    manager.install(v1)
    manager.activate("demo")
    _fire(manager.container, "f1", True)
    with pytest.raises(ValidationError, match="no SBB named 'CounterSbb'"):
        asyncio.run(manager.upgrade("demo", v2, migrate=True))
    states = {str(s.id): s.state.value for s in manager.container.services.values()}
    assert states == {"demo/test/1.0": "ACTIVE"}  # v1 untouched, the refused v2 uninstalled again
    assert [str(u) for u in manager.units] == ["demo/test/1.0"]


def test_migrate_keeps_the_value_of_a_field_whose_default_changed(manager, tmp_path):
    """A field at its default is not stored; v2 declaring another default must not change it."""
    code_v1 = SBB_CODE.replace("    count = CmpField(int, default=0)\n",
                               "    count = CmpField(int, default=0)\n    level = CmpField(int, default=0)\n"
                               "    mode = CmpField(str, default='a')\n")
    code_v2 = SBB_CODE.replace("    count = CmpField(int, default=0)\n",
                               "    count = CmpField(int, default=0)\n    level = CmpField(int, default=7)\n"
                               "    mode = CmpField(str, default='a')\n")
    manager.install(write_unit(tmp_path, version="1.0", code=code_v1))
    manager.activate("demo")
    c = manager.container
    _fire(c, "f1", True)
    [entity] = list(c.entities.values())
    assert "level" not in entity.cmp and "mode" not in entity.cmp  # both at their v1 defaults

    asyncio.run(manager.upgrade("demo", write_unit(tmp_path / "b", version="2.0", code=code_v2), migrate=True))
    assert entity.cmp["level"] == 0  # the value it had, not v2's default of 7
    assert "mode" not in entity.cmp  # same default in both: nothing to keep
    manager.uninstall("demo/test/1.0")

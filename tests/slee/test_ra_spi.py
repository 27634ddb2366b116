"""Resource adaptor SPI: pluggy discovery, configuration checking, entity lifecycle."""

import asyncio

import pytest

from slee import (
    EventTypeId,
    ResourceAdaptorId,
    ResourceAdaptorTypeId,
    Sbb,
    ServiceId,
    event_handler,
)
from slee.container import Container
from slee.errors import InvalidStateError
from slee.events import Address
from slee.ra.spi import (
    ConfigProperty,
    RaEntityState,
    ResourceAdaptor,
    ResourceAdaptorType,
    discover_resource_adaptors,
    hookimpl,
    plugin_manager,
)

TICK = EventTypeId("ticker.Tick", "slee.tests", "1.0")
TICKER_TYPE = ResourceAdaptorType(ResourceAdaptorTypeId("ticker", "slee.tests", "1.0"), {TICK: None})


class TickerRa(ResourceAdaptor):
    """Fires `count` Tick events on one activity when activated; reports outcomes."""

    ra_id = ResourceAdaptorId("ticker", "slee.tests", "1.0")
    ra_type = TICKER_TYPE
    config_properties = {
        "count": ConfigProperty(int, 3, "ticks to fire"),
        "label": ConfigProperty(str, required=True, description="activity label"),
    }

    def __init__(self, context):
        super().__init__(context)
        self.outcomes = []
        self.ended = []

    def ra_verify_configuration(self, config):
        if config["count"] < 0:
            raise ValueError("count must be >= 0")

    async def ra_active(self):
        ep = self.context.endpoint
        handle = ("tick", self.context.config["label"])
        ep.start_activity(handle, handle)
        for i in range(self.context.config["count"]):
            ep.fire_event(handle, TICK, i, Address("test", "x"), callback=self.outcomes.append)
        ep.end_activity(handle)

    def activity_ended(self, handle):
        self.ended.append(handle)

    def get_provider(self):
        return self


class Plugin:
    @hookimpl
    def slee_resource_adaptors(self):
        return [TickerRa]


class BadPlugin:
    @hookimpl
    def slee_resource_adaptors(self):
        return [object]


def test_discovery_through_pluggy():
    pm = plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    assert discover_resource_adaptors(pm) == {TickerRa.ra_id: TickerRa}
    pm.register(BadPlugin())
    with pytest.raises(TypeError, match="not a ResourceAdaptor subclass"):
        discover_resource_adaptors(pm)


def test_configuration_is_checked():
    c = Container()
    c.install_ra(TickerRa)
    with pytest.raises(ValueError, match="property label is required"):
        c.create_ra_entity("t", TickerRa.ra_id, {})
    with pytest.raises(ValueError, match="no configuration property colour"):
        c.create_ra_entity("t", TickerRa.ra_id, {"label": "a", "colour": "red"})
    with pytest.raises(ValueError, match="count must be int"):
        c.create_ra_entity("t", TickerRa.ra_id, {"label": "a", "count": "many"})
    with pytest.raises(ValueError, match="count must be >= 0"):
        c.create_ra_entity("t", TickerRa.ra_id, {"label": "a", "count": -1})
    entity = c.create_ra_entity("t", TickerRa.ra_id, {"label": "a", "count": "2"})
    assert entity.config == {"count": 2, "label": "a"}


class TickCounter(Sbb):
    seen: list[int] = []

    @event_handler(TICK, initial=True, select=("address",))
    def on_tick(self, event, aci):
        TickCounter.seen.append(event)
        assert self.context.ra("ticks").context.entity_name == "t"


def test_ra_entity_lifecycle_and_event_outcomes():
    async def run():
        c = Container()
        await c.start()
        c.install_ra(TickerRa)
        entity = c.create_ra_entity("t", TickerRa.ra_id, {"label": "a", "count": 3})
        svc = ServiceId("ticks", "slee.tests", "1.0")
        c.install_service(svc, TickCounter, ra_links={"ticks": "t"})
        c.activate_service(svc)
        await c.activate_ra_entity("t")
        assert entity.state is RaEntityState.ACTIVE
        assert await c.wait_idle()
        assert TickCounter.seen == [0, 1, 2]
        assert [(o.delivered, o.failed) for o in entity.ra.outcomes] == [(1, 0)] * 3
        assert entity.ra.ended == [("tick", "a")]
        with pytest.raises(InvalidStateError, match="deactivate it first"):
            c.remove_ra_entity("t")
        await c.deactivate_ra_entity("t")
        with pytest.raises(InvalidStateError, match="linked by services"):
            c.remove_ra_entity("t")
        await c.stop()

    TickCounter.seen = []
    asyncio.run(run())

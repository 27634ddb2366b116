"""Resource adaptor SPI (JSR 240 §15): how protocols plug into the container.

A resource adaptor *type* names the event types and activity types an RA fires and the
provider interface SBBs use. A resource adaptor is a class deriving from
``ResourceAdaptor``; RA *entities* are instances of it created with configuration
properties (``bin/slee ra create``). RAs are discovered through pluggy: a package ships a
module implementing the ``slee_resource_adaptors`` hook and registers it under the
``slee`` entry-point group, so a third party can ship an RA as a pip package.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from slee._ids import EventTypeId, ResourceAdaptorId, ResourceAdaptorTypeId
from slee.events import Address

if TYPE_CHECKING:
    from slee.container import Container

hookspec = pluggy.HookspecMarker("slee")
hookimpl = pluggy.HookimplMarker("slee")
log = logging.getLogger("slee.ra")


class RaEntityState(enum.Enum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    STOPPING = "STOPPING"


@dataclass(frozen=True, slots=True)
class ConfigProperty:
    """One configuration property of an RA, with its type, default and meaning."""

    type: type
    default: Any = None
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class ResourceAdaptorType:
    id: ResourceAdaptorTypeId
    event_types: dict[EventTypeId, type | None]
    activity_types: tuple[type, ...] = ()
    provider_interface: type | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """Reported to the RA after an event it fired with ``callback`` was processed."""

    delivered: int  # SBB entities whose handler ran and committed
    failed: int  # handlers that raised (their transactions rolled back)
    initial_matches: int  # services for which the event was initial


class SleeEndpoint:
    """The RA entity's handle on the container (JSR 240 SleeEndpoint)."""

    __slots__ = ("_container", "_entity")

    def __init__(self, container: Container, entity: RaEntity) -> None:
        self._container = container
        self._entity = entity

    def start_activity(self, handle: Hashable, activity: Any, *, persistent: bool = False,
                       implicit_end: bool = False) -> None:
        """Start an activity; ``persistent`` ones (with ``handle_key``) survive a restart;
        ``implicit_end`` ones end by themselves once nothing is attached, named, timed or
        queued on them (the RA hears of it through ``activity_ended``)."""
        self._container.start_activity(self._entity.name, handle, activity, persistent=persistent,
                                       implicit_end=implicit_end)

    def fire_event(self, handle: Hashable, event_type: EventTypeId, event: Any, address: Address | None = None,
                   callback: Callable[[EventOutcome], None] | None = None) -> None:
        self._container.fire_event(self._entity.name, handle, event_type, event, address, callback)

    def end_activity(self, handle: Hashable) -> None:
        self._container.end_activity((self._entity.name, handle))

    def deliver_now(self) -> None:
        """The events fired so far are delivered now (call at the end of an I/O callback)."""
        self._container.deliver_now()

    def activity_exists(self, handle: Hashable) -> bool:
        return (self._entity.name, handle) in self._container.activity_contexts

    def backlog(self) -> int:
        """Events waiting for delivery in the whole container (for overload control)."""
        return self._container.backlog


@dataclass(slots=True)
class ResourceAdaptorContext:
    """Given to an RA object when its entity is created."""

    entity_name: str
    ra_id: ResourceAdaptorId
    endpoint: SleeEndpoint
    container: Container
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def tracer(self) -> Any:
        return self.container.tracers.get(f"ra/{self.entity_name}")

    @property
    def alarms(self) -> Any:
        return self.container.alarms.for_component(f"ra/{self.entity_name}")

    @property
    def usage(self) -> Any:
        return self.container.usage.parameter_set(f"ra/{self.entity_name}", str(self.ra_id))

    @property
    def clock(self) -> Any:
        return self.container.clock

    @property
    def profiles(self) -> Any:
        return self.container.profiles

    @property
    def worker(self) -> Any:
        """`slee.workers.WorkerInfo` when this container is one of several worker processes
        sharing the RA's network endpoints, else None."""
        return self.container.config.worker


class ResourceAdaptor:
    """Base class of resource adaptors. Override what you need."""

    ra_id: ResourceAdaptorId
    ra_type: ResourceAdaptorType
    config_properties: dict[str, ConfigProperty] = {}

    def __init__(self, context: ResourceAdaptorContext) -> None:
        self.context = context

    # configuration
    def ra_verify_configuration(self, config: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the property when the configuration is unusable."""

    def ra_configure(self, config: dict[str, Any]) -> None:
        pass

    def ra_config_update(self, config: dict[str, Any]) -> Any:
        """Apply a new configuration while ACTIVE (may be a coroutine). The default says it
        cannot, and the container then deactivates, reconfigures and reactivates the entity."""
        raise NotImplementedError(f"{type(self).__name__} cannot be reconfigured while active")

    def listen_addresses(self) -> list[str]:
        """Where this entity listens (for the server's ready line and status)."""
        return []

    # lifecycle
    async def ra_active(self) -> None:
        """Start: bind sockets, start accepting work."""

    def ra_stopping(self) -> None:
        """Stop creating activities; existing ones finish."""

    async def ra_inactive(self) -> None:
        """Every activity has ended (or the container stops): release resources."""

    # SBB-facing
    def get_provider(self) -> Any:
        return None

    # container callbacks
    def activity_ended(self, handle: Hashable) -> None:
        pass

    def handle_key(self, handle: Hashable) -> str:
        """A string identifying a persistent activity's handle, for restoring it."""
        return str(handle)

    def activity_state(self, handle: Hashable, activity: Any) -> Any:
        """JSON state saved with a persistent activity (for ``restore_activity``)."""
        return None

    def restore_activity(self, key: str, state: Any) -> tuple[Hashable, Any] | None:
        """Recreate a persistent activity after a restart: return (handle, activity) or None."""
        return None

    def stats(self) -> dict[str, Any]:
        return {}


@dataclass(slots=True)
class RaEntity:
    name: str
    ra_id: ResourceAdaptorId
    ra: ResourceAdaptor
    config: dict[str, Any]
    state: RaEntityState = RaEntityState.INACTIVE

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ra": str(self.ra_id), "state": self.state.value,
                "config": {k: v for k, v in self.config.items() if "password" not in k and "secret" not in k},
                "stats": self.ra.stats()}


def check_config(ra_cls: type[ResourceAdaptor], config: dict[str, Any]) -> dict[str, Any]:
    """Apply defaults and types from ``config_properties``; unknown keys are refused."""
    props = ra_cls.config_properties
    unknown = sorted(set(config) - set(props))
    if unknown:
        raise ValueError(f"{ra_cls.__name__} has no configuration property {', '.join(unknown)}; "
                         f"it has {', '.join(sorted(props)) or 'none'}")
    out: dict[str, Any] = {}
    for name, prop in props.items():
        if name in config:
            value = config[name]
            if prop.type is bool and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes", "on")
            elif prop.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # YAML writes 60 for 60.0
            elif prop.type in (int, float) and isinstance(value, str):
                try:
                    value = prop.type(value)
                except ValueError:
                    raise ValueError(f"property {name} must be {prop.type.__name__}, got {value!r}") from None
            elif prop.type is list and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if value is not None and not isinstance(value, prop.type):
                raise ValueError(f"property {name} must be {prop.type.__name__}, got {type(value).__name__}")
            out[name] = value
        elif prop.required:
            raise ValueError(f"property {name} is required ({prop.description})")
        else:
            out[name] = prop.default
    return out


# -- plugin discovery ----------------------------------------------------------------------
class RaHookSpec:
    """Hooks an RA package implements."""

    @hookspec
    def slee_resource_adaptors(self) -> list[type[ResourceAdaptor]]:  # type: ignore[empty-body]
        """Return the resource adaptor classes this plugin provides."""


def plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("slee")
    pm.add_hookspecs(RaHookSpec)
    if load_entry_points:
        pm.load_setuptools_entrypoints("slee")
    return pm


def discover_resource_adaptors(pm: pluggy.PluginManager | None = None) -> dict[ResourceAdaptorId, type[ResourceAdaptor]]:
    """Every RA class offered by installed plugins, by id. Malformed plugins fail loudly."""
    pm = pm or plugin_manager()
    found: dict[ResourceAdaptorId, type[ResourceAdaptor]] = {}
    for batch in pm.hook.slee_resource_adaptors():
        for cls in batch:
            if not (isinstance(cls, type) and issubclass(cls, ResourceAdaptor)):
                raise TypeError(f"plugin returned {cls!r}, which is not a ResourceAdaptor subclass")
            if not isinstance(getattr(cls, "ra_id", None), ResourceAdaptorId) or not isinstance(
                getattr(cls, "ra_type", None), ResourceAdaptorType
            ):
                raise TypeError(f"{cls.__qualname__} must define ra_id (ResourceAdaptorId) and ra_type (ResourceAdaptorType)")
            found[cls.ra_id] = cls
    return found

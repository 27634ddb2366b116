"""Services (JSR 240 §2.2, §12): a root SBB plus its lifecycle state."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slee._entity import SbbDescriptor
from slee._ids import DeployableUnitId, ServiceId


class ServiceState(enum.Enum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    STOPPING = "STOPPING"


@dataclass(slots=True)
class Service:
    """An installed service. ``roots`` maps convergence names to root SBB entity ids."""

    id: ServiceId
    root: SbbDescriptor
    default_priority: int = 0
    ra_links: dict[str, str] = field(default_factory=dict)  # link name -> RA entity name
    address_profile_table: str | None = None
    deployable_unit: DeployableUnitId | None = None
    state: ServiceState = ServiceState.INACTIVE
    roots: dict[str, str] = field(default_factory=dict)
    descriptors: dict[str, SbbDescriptor] = field(default_factory=dict)  # every SBB of the service by id
    usage_sets: tuple[str, ...] = ()
    entity_count: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # service env entries (from the recipe)
    operations: dict[str, Callable[..., Any]] = field(default_factory=dict)  # management operations

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "state": self.state.value,
            "root_sbb": str(self.root.id),
            "default_priority": self.default_priority,
            "root_entities": len(self.roots),
            "entities": self.entity_count,
            "ra_links": dict(self.ra_links),
            "deployable_unit": str(self.deployable_unit) if self.deployable_unit else None,
            "usage_sets": list(self.usage_sets),
            "operations": sorted(self.operations),
        }


class OperationContext:
    """What a service's management operation receives (a Rhino service MBean, in Python).

    Operations are declared per service in ``deployable-unit.yaml`` under ``management``
    (``show: ops:show_presentity``) and called with ``bin/slee op SERVICE OP key=value ...``
    or by a service's own CLI commands. They run inside a SLEE transaction, so they may read
    and write profiles, CMP state and activity-context attributes consistently.
    """

    def __init__(self, container: Any, service: Service) -> None:
        self.container = container
        self.service = service

    @property
    def config(self) -> dict[str, Any]:
        return self.service.config

    def now(self) -> float:
        return self.container.clock.now()

    @property
    def profiles(self) -> Any:
        return self.container.profiles

    @property
    def naming(self) -> Any:
        return self.container.naming

    def ra(self, link: str) -> Any:
        return self.container._ra_provider(self.service, link)

    def root_entity(self, convergence_name: str) -> Any:
        """The root SBB entity with this convergence name (or None)."""
        entity_id = self.service.roots.get(convergence_name)
        return self.container.entities.get(entity_id) if entity_id else None

    def entities(self, sbb_name: str | None = None) -> list[Any]:
        """This service's SBB entities (optionally only those of one SBB class name)."""
        return [e for e in self.container.entities.values()
                if e.service is self.service and (sbb_name is None or e.descriptor.id.name == sbb_name)]

    def activity_of(self, entity: Any) -> list[Any]:
        """The activity objects an entity is attached to."""
        acs = self.container.activity_contexts_by_id
        return [acs[a].activity for a in sorted(entity.attached) if a in acs]

    def usage(self) -> list[dict[str, Any]]:
        return self.container.usage.snapshot(str(self.service.id))

    def local_object(self, entity: Any) -> Any:
        """An ``SbbLocalObject`` for an entity, to call its ``@local_method``s."""
        from slee.sbb import SbbLocalObject

        return SbbLocalObject(self.container, entity.id)

    def root_for_address(self, address: Any) -> Any:
        """The root entity whose convergence name is ``address`` alone (a service whose
        initial events select on the address only), or None."""
        entity_id = self.service.roots.get(f"addr={address}")
        return self.container.entities.get(entity_id) if entity_id is not None else None

    def named_entities(self, name: str, sbb_name: str | None = None) -> list[Any]:
        """This service's entities attached to the activity bound to ``name`` in the naming facility."""
        aci = self.container.naming.lookup(name)
        if aci is None:
            return []
        return [e for e in aci._ac.attached
                if e.service is self.service and (sbb_name is None or e.descriptor.id.name == sbb_name)]

"""Services (JSR 240 §2.2, §12): a root SBB plus its lifecycle state."""

from __future__ import annotations

import enum
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
        }

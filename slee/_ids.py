"""Component identity: every SLEE component is named by (name, vendor, version), JSR 240 §2.1."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class ComponentId:
    """Identity of an installable component; several versions may be installed at once."""

    name: str
    vendor: str
    version: str

    kind = "component"

    def __str__(self) -> str:
        return f"{self.name}/{self.vendor}/{self.version}"

    @classmethod
    def parse(cls, text: str) -> ComponentId:
        """Parse ``name/vendor/version`` (the form the CLI and manifests use)."""
        parts = text.split("/")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ValueError(f"{cls.kind} id {text!r} must look like name/vendor/version")
        return cls(*(p.strip() for p in parts))

    def to_json(self) -> list[str]:
        return [self.name, self.vendor, self.version]


class EventTypeId(ComponentId):
    kind = "event type"


class SbbId(ComponentId):
    kind = "SBB"


class ServiceId(ComponentId):
    kind = "service"


class ProfileSpecId(ComponentId):
    kind = "profile specification"


class ResourceAdaptorTypeId(ComponentId):
    kind = "resource adaptor type"


class ResourceAdaptorId(ComponentId):
    kind = "resource adaptor"


class DeployableUnitId(ComponentId):
    kind = "deployable unit"


__all__ = [
    "ComponentId",
    "DeployableUnitId",
    "EventTypeId",
    "ProfileSpecId",
    "ResourceAdaptorId",
    "ResourceAdaptorTypeId",
    "SbbId",
    "ServiceId",
]

"""Deployable units, recipes and the deployment manager (install, upgrade, restore).

A deployable unit is a folder (or a zip of one) with a ``deployable-unit.yaml`` manifest and
the Python code of its SBBs; see docs/deploying.md.
"""

from slee.deploy._errors import DeployError
from slee.deploy._manager import (
    DeploymentManager,
    DeployReport,
    InstalledUnit,
    NotFoundError,
    Progress,
)
from slee.deploy._manifest import MANIFEST, Ref, ServiceDecl, UnitManifest, read_manifest
from slee.deploy._namespace import UnitNamespace, namespace_name
from slee.deploy._recipe import Recipe, read_recipe

__all__ = [
    "MANIFEST",
    "DeployError",
    "DeployReport",
    "DeploymentManager",
    "InstalledUnit",
    "NotFoundError",
    "Progress",
    "Recipe",
    "Ref",
    "ServiceDecl",
    "UnitManifest",
    "UnitNamespace",
    "namespace_name",
    "read_manifest",
    "read_recipe",
]

"""Deployment recipes, ``deploy/NAME.yaml``: what ``bin/slee deploy NAME`` puts in place.

A recipe lists RA entities (with configuration), deployable units in dependency order,
profile tables (with initial profiles) and the services to activate. Values may use
``${var}`` or ``${var:-default}``; the container passes ``sip_host``, ``sip_port`` and
``data_dir``, and ``bin/slee deploy --set k=v`` adds more. Applying a recipe is idempotent:
whatever already exists is left alone and reported as unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slee._ids import ResourceAdaptorId
from slee.deploy._yaml import Doc, line_of

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP = {"description", "ra-entities", "units", "profile-tables", "activate", "variables"}


@dataclass(frozen=True, slots=True)
class RaEntityStep:
    name: str
    ra: ResourceAdaptorId
    config: dict[str, Any]
    active: bool
    line: int | None


@dataclass(frozen=True, slots=True)
class UnitStep:
    path: Path
    ra_links: dict[str, str]
    line: int | None


@dataclass(frozen=True, slots=True)
class TableStep:
    name: str
    spec: str
    profiles: dict[str, dict[str, Any]]
    line: int | None


@dataclass(slots=True)
class Recipe:
    name: str
    file: str
    description: str = ""
    ra_entities: list[RaEntityStep] = field(default_factory=list)
    units: list[UnitStep] = field(default_factory=list)
    tables: list[TableStep] = field(default_factory=list)
    activate: list[tuple[str, int | None]] = field(default_factory=list)


def substitute(text: str, variables: dict[str, str], doc: Doc, node: yaml.Node | None) -> str:
    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in variables:
            return str(variables[name])
        if default is not None:
            return default
        raise doc.error(node, f"variable ${{{name}}} is not set (known: {', '.join(sorted(variables)) or 'none'}); "
                              f"pass it with --set {name}=VALUE or write ${{{name}:-default}}")

    return _VAR.sub(one, text)


def read_recipe(path: str | Path, variables: dict[str, str] | None = None) -> Recipe:
    """Parse a recipe; unit paths are relative to the folder above ``deploy/`` (the project)."""
    path = Path(path).resolve()
    doc = Doc.read(path)
    top = doc.mapping(doc.root, "the recipe", _TOP)
    env = dict(variables or {})
    if "variables" in top:  # recipe defaults; the caller's values win
        for key, node in doc.mapping(top["variables"], "variables").items():
            env.setdefault(key, doc.scalar(node, f"variables.{key}"))
    base = path.parent.parent if path.parent.name == "deploy" else path.parent
    recipe = Recipe(path.stem, str(path))
    if "description" in top:
        recipe.description = doc.scalar(top["description"], "description")

    def text(node: yaml.Node, what: str) -> str:
        return substitute(doc.scalar(node, what), env, doc, node)

    loader = yaml.SafeLoader("")

    def deep(node: yaml.Node) -> Any:
        """Plain values with ${var} substituted; an unset variable names its own line."""
        if isinstance(node, yaml.MappingNode):
            return {doc.scalar(k, "a key"): deep(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [deep(v) for v in node.value]
        value = loader.construct_object(node, deep=True)
        return substitute(value, env, doc, node) if isinstance(value, str) else value

    names: set[str] = set()
    for node in doc.sequence(top.get("ra-entities", _null()), "ra-entities"):
        keys = doc.mapping(node, "an RA entity", {"name", "ra", "config", "active"})
        name = text(doc.required(keys, "name", node, "an RA entity"), "RA entity name")
        if name in names:
            raise doc.error(node, f"RA entity {name!r} is listed twice")
        names.add(name)
        ra_node = doc.required(keys, "ra", node, "an RA entity")
        try:
            ra = ResourceAdaptorId.parse(text(ra_node, "ra"))
        except ValueError as exc:
            raise doc.error(ra_node, str(exc)) from None
        config = deep(keys["config"]) if "config" in keys else {}
        if not isinstance(config, dict):
            raise doc.error(keys["config"], "config must be a mapping")
        active = True
        if "active" in keys:
            active = text(keys["active"], "active").lower() in ("true", "yes", "on", "1")
        recipe.ra_entities.append(RaEntityStep(name, ra, config, active, line_of(node)))

    for node in doc.sequence(top.get("units", _null()), "units"):
        if isinstance(node, yaml.ScalarNode):
            unit_path, links = text(node, "unit path"), {}
        else:
            keys = doc.mapping(node, "a unit", {"path", "ra-links"})
            unit_path = text(doc.required(keys, "path", node, "a unit"), "unit path")
            links = {k: text(v, f"ra-links.{k}")
                     for k, v in doc.mapping(keys.get("ra-links", _empty_map()), "ra-links").items()}
        resolved = (base / unit_path).resolve() if not Path(unit_path).is_absolute() else Path(unit_path)
        if not resolved.exists():
            raise doc.error(node, f"unit {unit_path!r} not found (looked at {resolved})")
        recipe.units.append(UnitStep(resolved, links, line_of(node)))

    for node in doc.sequence(top.get("profile-tables", _null()), "profile-tables"):
        keys = doc.mapping(node, "a profile table", {"name", "spec", "profiles"})
        profiles: dict[str, dict[str, Any]] = {}
        if "profiles" in keys:
            for pname, pnode in doc.mapping(keys["profiles"], "profiles").items():
                values = deep(pnode) if pnode.tag != "tag:yaml.org,2002:null" else {}
                if not isinstance(values, dict):
                    raise doc.error(pnode, f"profile {pname!r} must be a mapping of attribute values")
                profiles[pname] = values
        recipe.tables.append(TableStep(text(doc.required(keys, "name", node, "a profile table"), "table name"),
                                       text(doc.required(keys, "spec", node, "a profile table"), "table spec"),
                                       profiles, line_of(node)))

    for node in doc.sequence(top.get("activate", _null()), "activate"):
        recipe.activate.append((text(node, "a service to activate"), line_of(node)))
    return recipe


def _null() -> yaml.Node:
    return yaml.ScalarNode("tag:yaml.org,2002:null", "")


def _empty_map() -> yaml.Node:
    return yaml.MappingNode("tag:yaml.org,2002:map", [])


__all__ = ["RaEntityStep", "Recipe", "TableStep", "UnitStep", "read_recipe", "substitute"]

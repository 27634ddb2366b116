"""The deployable-unit manifest, ``deployable-unit.yaml``: a unit's identity and wiring.

The manifest is small on purpose. It says who the unit is, what it needs, which services it
offers (by root SBB class), how its RA links are bound, and which profile specifications,
profile tables, usage parameter sets and event types it brings. Everything an SBB declares
about itself (handlers, selectors, CMP fields, children) stays in Python and is validated
when the unit is installed. See docs/deploying.md for the format.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slee._ids import DeployableUnitId, EventTypeId, ProfileSpecId, ResourceAdaptorTypeId, ServiceId
from slee.deploy._errors import DeployError
from slee.deploy._yaml import Doc, line_of

MANIFEST = "deployable-unit.yaml"

_TOP_KEYS = {"name", "vendor", "version", "description", "depends-on", "services", "ra-links",
             "profile-specs", "profile-tables", "usage-parameter-sets", "event-types"}
_SERVICE_KEYS = {"name", "vendor", "version", "root-sbb", "default-priority", "address-profile-table",
                 "usage-parameter-sets", "config", "description", "management"}


@dataclass(frozen=True, slots=True)
class Ref:
    """A ``module:Class`` reference, with the manifest line it came from."""

    module: str
    attr: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


@dataclass(frozen=True, slots=True)
class ServiceDecl:
    id: ServiceId
    root_sbb: Ref
    default_priority: int
    address_profile_table: str | None
    usage_sets: tuple[str, ...]
    config: dict
    line: int | None
    management: dict[str, Ref] = field(default_factory=dict)  # operation name -> module:function


@dataclass(frozen=True, slots=True)
class EventTypeDecl:
    id: EventTypeId
    event_class: Ref | None
    line: int | None


@dataclass(frozen=True, slots=True)
class ProfileSpecDecl:
    id: ProfileSpecId
    spec_class: Ref
    line: int | None


@dataclass(frozen=True, slots=True)
class ProfileTableDecl:
    name: str
    spec: str
    line: int | None


@dataclass(slots=True)
class UnitManifest:
    """A parsed manifest. ``location`` is the unit folder, or ``archive.zip/inner/folder``."""

    id: DeployableUnitId
    file: str
    location: str
    archive: Path | None
    description: str = ""
    depends_units: list[tuple[DeployableUnitId, int | None]] = field(default_factory=list)
    depends_ra_types: list[tuple[ResourceAdaptorTypeId, int | None]] = field(default_factory=list)
    services: list[ServiceDecl] = field(default_factory=list)
    ra_links: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    profile_specs: list[ProfileSpecDecl] = field(default_factory=list)
    profile_tables: list[ProfileTableDecl] = field(default_factory=list)
    usage_sets: tuple[str, ...] = ()
    event_types: list[EventTypeDecl] = field(default_factory=list)
    lines: dict[str, int | None] = field(default_factory=dict)  # "name", "version", ... -> line

    @property
    def source(self) -> Path:
        """The folder or zip the unit was read from."""
        return self.archive if self.archive is not None else Path(self.location)


def read_manifest(path: str | Path) -> UnitManifest:
    """Read a unit from a folder holding ``deployable-unit.yaml``, that file, or a zip of either."""
    path = Path(path).resolve()
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if path.is_dir():
        file = path / MANIFEST
        if not file.is_file():
            raise DeployError(str(path), None, f"no {MANIFEST} in this folder; is it a deployable unit?")
        return parse_manifest(Doc.read(file), str(path), None)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n == MANIFEST or n.endswith("/" + MANIFEST)]
            if not names:
                raise DeployError(str(path), None, f"the zip holds no {MANIFEST}")
            inner = min(names, key=lambda n: n.count("/"))
            text = io.TextIOWrapper(zf.open(inner), encoding="utf-8").read()
        folder = inner[: -len(MANIFEST)].rstrip("/")
        location = f"{path}/{folder}" if folder else str(path)
        return parse_manifest(Doc.read(Path(f"{path}/{inner}"), text), location, path)
    if not path.exists():
        raise DeployError(str(path), None, "no such file or folder")
    raise DeployError(str(path), None, f"not a deployable unit (a folder with {MANIFEST}, or a zip of one)")


def parse_manifest(doc: Doc, location: str, archive: Path | None) -> UnitManifest:
    top = doc.mapping(doc.root, "the manifest", _TOP_KEYS)
    name = doc.scalar(doc.required(top, "name", doc.root, "the manifest"), "name")
    vendor = doc.scalar(doc.required(top, "vendor", doc.root, "the manifest"), "vendor")
    version = doc.scalar(doc.required(top, "version", doc.root, "the manifest"), "version")
    for what, value in (("name", name), ("vendor", vendor), ("version", version)):
        if "/" in value:
            raise doc.error(top[what], f"{what} {value!r} must not contain '/'")
    m = UnitManifest(DeployableUnitId(name, vendor, version), doc.file, location, archive)
    m.lines = {k: line_of(v) for k, v in top.items()}
    if "description" in top:
        m.description = doc.scalar(top["description"], "description")

    if "depends-on" in top:
        deps = doc.mapping(top["depends-on"], "depends-on", {"units", "ra-types"})
        for node in doc.sequence(deps.get("units", _null()), "depends-on.units"):
            m.depends_units.append((_component(doc, node, DeployableUnitId, "depends-on.units"), line_of(node)))
        for node in doc.sequence(deps.get("ra-types", _null()), "depends-on.ra-types"):
            m.depends_ra_types.append((_component(doc, node, ResourceAdaptorTypeId, "depends-on.ra-types"),
                                       line_of(node)))

    for node in doc.sequence(top.get("event-types", _null()), "event-types"):
        keys = doc.mapping(node, "an event type", {"id", "class"})
        eid = _component(doc, doc.required(keys, "id", node, "an event type"), EventTypeId, "event type id")
        cls = _ref(doc, keys["class"], "event type class") if "class" in keys else None
        m.event_types.append(EventTypeDecl(eid, cls, line_of(node)))

    for node in doc.sequence(top.get("profile-specs", _null()), "profile-specs"):
        keys = doc.mapping(node, "a profile specification", {"id", "class"})
        sid = _component(doc, doc.required(keys, "id", node, "a profile specification"), ProfileSpecId,
                         "profile specification id")
        m.profile_specs.append(ProfileSpecDecl(sid, _ref(doc, doc.required(keys, "class", node, "a profile specification"),
                                                         "profile specification class"), line_of(node)))

    for node in doc.sequence(top.get("profile-tables", _null()), "profile-tables"):
        keys = doc.mapping(node, "a profile table", {"name", "spec"})
        table = doc.scalar(doc.required(keys, "name", node, "a profile table"), "profile table name")
        spec = doc.scalar(doc.required(keys, "spec", node, "a profile table"), "profile table spec")
        m.profile_tables.append(ProfileTableDecl(table, spec, line_of(node)))

    m.usage_sets = tuple(doc.scalar(n, "a usage parameter set name")
                         for n in doc.sequence(top.get("usage-parameter-sets", _null()), "usage-parameter-sets"))

    if "ra-links" in top:
        for link, node in doc.mapping(top["ra-links"], "ra-links").items():
            m.ra_links[link] = (doc.scalar(node, f"ra-links.{link}"), line_of(node))

    seen: set[ServiceId] = set()
    for node in doc.sequence(top.get("services", _null()), "services"):
        keys = doc.mapping(node, "a service", _SERVICE_KEYS)
        sname = doc.scalar(doc.required(keys, "name", node, "a service"), "service name")
        sid = ServiceId(sname, doc.scalar(keys["vendor"], "service vendor") if "vendor" in keys else vendor,
                        doc.scalar(keys["version"], "service version") if "version" in keys else version)
        if sid in seen:
            raise doc.error(node, f"service {sid} is declared twice")
        seen.add(sid)
        root = _ref(doc, doc.required(keys, "root-sbb", node, "a service"), "root-sbb")
        priority = doc.integer(keys["default-priority"], "default-priority") if "default-priority" in keys else 0
        if not -128 <= priority <= 127:
            raise doc.error(keys["default-priority"], f"default-priority {priority} is outside -128..127")
        table = doc.scalar(keys["address-profile-table"], "address-profile-table") \
            if "address-profile-table" in keys else None
        sets = tuple(doc.scalar(n, "a usage parameter set name")
                     for n in doc.sequence(keys.get("usage-parameter-sets", _null()), "usage-parameter-sets"))
        config = doc.plain(keys["config"]) if "config" in keys else {}
        if not isinstance(config, dict):
            raise doc.error(keys["config"], "config must be a mapping")
        ops: dict[str, Ref] = {}
        if "management" in keys:
            for op, op_node in doc.mapping(keys["management"], "management").items():
                if not op.replace("-", "").replace("_", "").isalnum():
                    raise doc.error(op_node, f"management operation name {op!r} must be letters, digits, - or _")
                ops[op] = _ref(doc, op_node, f"management.{op}")
        m.services.append(ServiceDecl(sid, root, priority, table, sets + m.usage_sets, config, line_of(node), ops))
    if not m.services and not m.event_types and not m.profile_specs:
        raise doc.error(doc.root, "the unit declares no services, event types or profile specifications")
    return m


def _null() -> yaml.Node:
    return yaml.ScalarNode("tag:yaml.org,2002:null", "")


def _component(doc: Doc, node: yaml.Node, cls: Any, what: str) -> Any:
    text = doc.scalar(node, what)
    try:
        return cls.parse(text)
    except ValueError as exc:
        raise doc.error(node, str(exc)) from None


def _ref(doc: Doc, node: yaml.Node, what: str) -> Ref:
    text = doc.scalar(node, what)
    module, sep, attr = text.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise doc.error(node, f"{what} {text!r} must look like 'module:Class' (module relative to the unit folder)")
    for part in module.split("."):
        if not part.isidentifier():
            raise doc.error(node, f"{what} {text!r}: {module!r} is not a module path")
    return Ref(module.strip(), attr.strip(), line_of(node))


__all__ = ["MANIFEST", "EventTypeDecl", "ProfileSpecDecl", "ProfileTableDecl", "Ref", "ServiceDecl",
           "UnitManifest", "parse_manifest", "read_manifest"]

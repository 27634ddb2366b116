"""The deployment manager: install, activate, upgrade and uninstall, and remember all of it.

Everything an operator changes goes through here so it is written to the store: installed
units (``du``), RA entities (``ra-entity``) and applied recipes (``deploy-recipe``); the
container itself records service states (``service-state``). At start, :meth:`restore`
rebuilds the same picture: RA entities, then units in install order, then the container's
own state (entities, timers, profiles), then service states; RA entities become active last,
so no event arrives before the services are back.

Every install is validated completely before the container is touched, so a refused unit
changes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slee._entity import SbbDescriptor, describe_sbb
from slee._ids import DeployableUnitId, EventTypeId, ResourceAdaptorId, SbbId, ServiceId
from slee.deploy._errors import DeployError
from slee.deploy._manifest import MANIFEST, UnitManifest, read_manifest
from slee.deploy._namespace import UnitNamespace, namespace_name
from slee.deploy._recipe import Recipe, UnitStep, read_recipe
from slee.errors import InvalidStateError, ProfileError, ValidationError
from slee.events import EventType
from slee.facilities.profile import ProfileSpec
from slee.ra.spi import RaEntityState, check_config
from slee.sbb import Sbb
from slee.service import Service, ServiceState

log = logging.getLogger("slee.deploy")

Progress = Callable[[str], Awaitable[None] | None]

NS_UNIT = "du"
NS_RA = "ra-entity"
NS_RECIPE = "deploy-recipe"
NS_SERVICE_STATE = "service-state"  # written by the container; read here at restore


class NotFoundError(InvalidStateError):
    """The unit, service or RA entity named does not exist."""


@dataclass(slots=True)
class InstalledUnit:
    """A unit version in the container, with what it brought in (so it can be taken out)."""

    manifest: UnitManifest
    namespace: UnitNamespace
    services: list[ServiceId]
    event_types: list[EventTypeId]
    profile_specs: dict[str, type[ProfileSpec]]
    ra_links: dict[str, str]
    archive: str
    seq: int
    installed_at: float = field(default_factory=time.time)

    @property
    def id(self) -> DeployableUnitId:
        return self.manifest.id


@dataclass(slots=True)
class _Prepared:
    manifest: UnitManifest
    namespace: UnitNamespace
    event_types: list[EventType]
    specs: list[tuple[Any, type[ProfileSpec]]]
    services: list[tuple[Any, SbbDescriptor]]
    ra_links: dict[str, str]
    operations: dict[Any, dict[str, Callable[..., Any]]] = field(default_factory=dict)  # service id -> ops


@dataclass(slots=True)
class DeployReport:
    """What a deploy did: ``changed`` lists the actions taken; empty means nothing to do."""

    target: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "changed": self.changed, "unchanged": self.unchanged,
                "warnings": self.warnings, "nothing_to_do": not self.changed}


async def _say(progress: Progress | None, message: str) -> None:
    log.info("%s", message)
    if progress is not None:
        result = progress(message)
        if inspect.isawaitable(result):
            await result


class DeploymentManager:
    """Installs units into a container and persists what is deployed in its store."""

    def __init__(self, container: Any, *, units_dir: Path | None = None, recipes_dir: Path | None = None,
                 variables: dict[str, str] | None = None) -> None:
        self.container = container
        self.store = container.store
        self.units_dir = units_dir
        self.recipes_dir = recipes_dir
        self.variables = dict(variables or {})
        self.units: dict[DeployableUnitId, InstalledUnit] = {}
        self._seq = itertools.count(1)
        self._restoring = False

    # ==================================================================================
    # lookups
    # ==================================================================================
    def service(self, ref: str, *, prefer: ServiceState | None = None) -> Service:
        """A service by ``name/vendor/version`` or, when unambiguous, by name."""
        services = self.container.services
        if ref.count("/") == 2:
            try:
                sid = ServiceId.parse(ref)
            except ValueError as exc:
                raise NotFoundError(str(exc)) from None
            if sid not in services:
                raise NotFoundError(f"no service {sid} is installed; installed: {self._names(services)}")
            return services[sid]
        found = [s for s in services.values() if s.id.name == ref]
        if not found:
            raise NotFoundError(f"no service named {ref!r} is installed; installed: {self._names(services)}")
        if len(found) > 1 and prefer is not None:
            preferred = [s for s in found if s.state is prefer]
            if len(preferred) == 1:
                return preferred[0]
        if len(found) > 1:
            raise NotFoundError(f"{ref!r} is ambiguous: {', '.join(f'{s.id} ({s.state.value})' for s in found)}; "
                                "give name/vendor/version")
        return found[0]

    def unit(self, ref: str) -> InstalledUnit:
        """A unit by id, by name when unambiguous, or through one of its services."""
        if ref.count("/") == 2:
            try:
                uid = DeployableUnitId.parse(ref)
            except ValueError as exc:
                raise NotFoundError(str(exc)) from None
            if uid in self.units:
                return self.units[uid]
            for unit in self.units.values():
                if ServiceId.parse(ref) in unit.services:
                    return unit
            raise NotFoundError(f"no unit {uid} is installed; installed: {self._names(self.units)}")
        found = [u for u in self.units.values() if u.id.name == ref]
        if not found:
            found = [u for u in self.units.values() if any(s.name == ref for s in u.services)]
        if not found:
            raise NotFoundError(f"no unit named {ref!r} is installed; installed: {self._names(self.units)}")
        if len(found) > 1:
            raise NotFoundError(f"{ref!r} is ambiguous: {', '.join(str(u.id) for u in found)}; give name/vendor/version")
        return found[0]

    @staticmethod
    def _names(items: Any) -> str:
        return ", ".join(str(i) for i in items) or "none"

    def unit_json(self, unit: InstalledUnit) -> dict[str, Any]:
        services = self.container.services
        return {
            "id": str(unit.id),
            "source": str(unit.manifest.source),
            "archive": unit.archive,
            "namespace": unit.namespace.package,
            "services": [{"id": str(s), "state": services[s].state.value} for s in unit.services if s in services],
            "event_types": [str(e) for e in unit.event_types],
            "profile_specs": sorted(unit.profile_specs),
            "ra_links": dict(unit.ra_links),
            "depends_on": [str(d) for d, _ in unit.manifest.depends_units],
            "installed_at": unit.installed_at,
        }

    # ==================================================================================
    # install
    # ==================================================================================
    def prepare(self, path: str | Path, ra_links: dict[str, str] | None = None) -> _Prepared:
        """Validate a unit completely and load its code; the container is not touched.

        Raises ``DeployError`` (file:line: reason) for any problem; on error the unit's code
        is unloaded again.
        """
        m = read_manifest(path)
        c = self.container
        f = m.file
        if m.id in self.units:
            raise DeployError(f, m.lines.get("version"),
                              f"unit {m.id} is already installed (version clash); give the new code a new "
                              f"version, or uninstall {m.id} first")
        for decl in m.services:
            if decl.id in c.services:
                raise DeployError(f, decl.line, f"service {decl.id} is already installed (version clash)")
        for uid, line in m.depends_units:
            if uid not in self.units:
                raise DeployError(f, line, f"depends on unit {uid}, which is not installed "
                                           f"(installed: {self._names(self.units)})")
        ra_types = {cls.ra_type.id for cls in c.ra_classes.values()}
        for tid, line in m.depends_ra_types:
            if tid not in ra_types:
                raise DeployError(f, line, f"depends on RA type {tid}, which no installed resource adaptor "
                                           f"implements (installed: {self._names(sorted(ra_types))})")
        links = {k: v for k, (v, _) in m.ra_links.items()}
        for k, v in (ra_links or {}).items():
            if k not in links:
                raise DeployError(f, m.lines.get("ra-links"),
                                  f"the RA link override {k}={v} names a link the unit does not declare "
                                  f"(links: {', '.join(links) or 'none'})")
            links[k] = v
        for link, entity in links.items():
            if entity not in c.ra_entities:
                line = m.ra_links[link][1]
                how = " (overridden by the recipe)" if ra_links and link in ra_links else ""
                raise DeployError(f, line, f"RA link {link!r} names RA entity {entity!r}{how}, which does not "
                                           f"exist (entities: {self._names(c.ra_entities)})")
        for decl in m.event_types:
            existing = c.event_types.get(decl.id)
            if existing is not None:
                raise DeployError(f, decl.line, f"event type {decl.id} is already installed"
                                                f"{f' by {existing.owner}' if existing.owner else ''} (clash); "
                                                "put shared event types in a unit both depend on")
        ns = UnitNamespace(m.id, m.location, f)
        try:
            return self._prepare_code(m, ns, links)
        except BaseException:
            ns.unload()
            raise

    def _prepare_code(self, m: UnitManifest, ns: UnitNamespace, links: dict[str, str]) -> _Prepared:
        c = self.container
        f = m.file
        event_types: list[EventType] = []
        for decl in m.event_types:
            cls = ns.resolve(decl.event_class, "event type class") if decl.event_class else None
            if cls is not None and not isinstance(cls, type):
                raise DeployError(f, decl.event_class.line, f"event type class {decl.event_class} is not a class")
            event_types.append(EventType(decl.id, cls, m.id))
        mine = {e.id for e in event_types}

        def known(eid: EventTypeId) -> bool:
            return eid in mine or eid in c.event_types

        specs: list[tuple[Any, type[ProfileSpec]]] = []
        for sdecl in m.profile_specs:
            cls = ns.resolve(sdecl.spec_class, "profile specification class")
            if not (isinstance(cls, type) and issubclass(cls, ProfileSpec)):
                raise DeployError(f, sdecl.spec_class.line, f"{sdecl.spec_class} is not a subclass of slee.ProfileSpec")
            specs.append((sdecl.id, cls))
        spec_names = {str(s) for s, _ in specs} | {s.name for s, _ in specs} | set(c.profiles.specs)
        tables = {t.name for t in m.profile_tables} | set(c.profiles.tables)
        for tdecl in m.profile_tables:
            if tdecl.spec not in spec_names:
                raise DeployError(f, tdecl.line, f"profile table {tdecl.name!r} uses specification {tdecl.spec!r}, "
                                                 f"which neither this unit nor an installed one defines")
            table = c.profiles.tables.get(tdecl.name)
            if table is not None and tdecl.spec not in (str(table.spec.spec_id), table.spec.spec_id.name):
                raise DeployError(f, tdecl.line, f"profile table {tdecl.name!r} exists with specification "
                                                 f"{table.spec.spec_id}, not {tdecl.spec}")

        services: list[tuple[Any, SbbDescriptor]] = []
        for sdecl in m.services:
            cls = ns.resolve(sdecl.root_sbb, "root-sbb")
            if not (isinstance(cls, type) and issubclass(cls, Sbb)):
                raise DeployError(f, sdecl.root_sbb.line, f"root-sbb {sdecl.root_sbb} is not a subclass of slee.Sbb")
            if sdecl.address_profile_table and sdecl.address_profile_table not in tables:
                raise DeployError(f, sdecl.line, f"address-profile-table {sdecl.address_profile_table!r} does not "
                                                 "exist and the unit does not create it")
            descriptor = self._describe(m, ns, cls, known, sdecl.root_sbb.line)
            if not descriptor.initial_handlers:
                raise DeployError(*_split(descriptor.source, f, sdecl.root_sbb.line),
                                  f"root SBB {descriptor.id} of service {sdecl.id} declares no initial event "
                                  "(mark a handler initial=True)")
            services.append((sdecl, descriptor))
        operations: dict[Any, dict[str, Callable[..., Any]]] = {}
        for sdecl in m.services:
            ops = operations[sdecl.id] = {}
            for op, ref in sdecl.management.items():
                fn = ns.resolve(ref, f"management operation {op}")
                if not callable(fn):
                    raise DeployError(f, ref.line, f"management operation {op}: {ref} is not callable")
                ops[op] = fn
        return _Prepared(m, ns, event_types, specs, services, links, operations)

    def _describe(self, m: UnitManifest, ns: UnitNamespace, cls: type, known: Callable[[EventTypeId], bool],
                  line: int | None) -> SbbDescriptor:
        def sbb_id(k: Any) -> SbbId:
            return SbbId(k.sbb_name or k.__name__, k.sbb_vendor or m.id.vendor, k.sbb_version or m.id.version)

        done: dict[type, SbbDescriptor] = {}

        def resolve_child(child: type | str) -> SbbDescriptor:
            if isinstance(child, str):
                module, _, attr = child.partition(":")
                from slee.deploy._manifest import Ref

                child = ns.resolve(Ref(module, attr, line), "child SBB")
            if not isinstance(child, type):
                raise DeployError(m.file, line, f"child relation names {child!r}, which is not a class")
            if child not in done:
                done[child] = describe_sbb(child, sbb_id(child), known_event=known, resolve_child=resolve_child)
            return done[child]

        try:
            return describe_sbb(cls, sbb_id(cls), known_event=known, resolve_child=resolve_child)
        except DeployError:
            raise
        except ValidationError as exc:
            file, lineno, reason = _parse_located(str(exc), m.file, line)
            raise DeployError(file, lineno, reason) from None
        except Exception as exc:
            raise DeployError(m.file, line, f"describing {cls.__qualname__} failed: {exc!r}") from None

    def install(self, path: str | Path, ra_links: dict[str, str] | None = None, *, archive: str | None = None,
                seq: int | None = None) -> InstalledUnit:
        """Validate and install a unit: its services come in INACTIVE. Refused units change nothing."""
        prepared = self.prepare(path, ra_links)
        return self._apply(prepared, ra_links or {}, archive=archive, seq=seq)

    def _apply(self, p: _Prepared, overrides: dict[str, str], *, archive: str | None, seq: int | None) -> InstalledUnit:
        c = self.container
        m = p.manifest
        installed_services: list[ServiceId] = []
        try:
            for et in p.event_types:
                c.install_event_type(et)
            specs: dict[str, type[ProfileSpec]] = {}
            for sid, cls in p.specs:
                c.profiles.register_spec(cls, sid)
                specs[str(sid)] = cls
            for decl, descriptor in p.services:
                service = c.install_service(decl.id, descriptor, default_priority=decl.default_priority,
                                            ra_links=p.ra_links, address_profile_table=decl.address_profile_table,
                                            deployable_unit=m.id, config=decl.config)
                service.usage_sets = decl.usage_sets
                service.operations = dict(p.operations.get(decl.id, {}))
                for name in decl.usage_sets:
                    c.usage.parameter_set(decl.id, descriptor.id, name)
                installed_services.append(decl.id)
            for tdecl in m.profile_tables:
                if tdecl.name not in c.profiles.tables:
                    c.profiles.create_table(tdecl.name, tdecl.spec)
        except BaseException:
            for sid in installed_services:
                c.uninstall_service(sid)
            c.event_types.uninstall_owned_by(m.id)
            p.namespace.unload()
            raise
        if seq is None:
            seq = next(self._seq)
        else:
            self._seq = itertools.count(max(seq + 1, next(self._seq)))
        if archive is None:
            archive = self._keep_copy(m)
        unit = InstalledUnit(m, p.namespace, installed_services, [e.id for e in p.event_types], specs,
                             p.ra_links, archive, seq)
        self.units[m.id] = unit
        if not self._restoring:
            self._put(NS_UNIT, str(m.id), {"archive": archive, "source": str(m.source), "ra_links": overrides,
                                           "seq": seq, "installed_at": unit.installed_at})
        log.info("installed unit %s (%s)", m.id, ", ".join(str(s) for s in installed_services) or "no services")
        return unit

    def _keep_copy(self, m: UnitManifest) -> str:
        """Copy the unit into the data dir so a restart does not depend on the source folder."""
        if self.units_dir is None:
            return str(m.source)
        self.units_dir.mkdir(parents=True, exist_ok=True)
        name = namespace_name(m.id).rpartition(".")[2]
        if m.archive is not None:
            target = self.units_dir / f"{name}.zip"
            shutil.copyfile(m.archive, target)
        else:
            target = self.units_dir / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(m.location, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return str(target)

    # ==================================================================================
    # uninstall
    # ==================================================================================
    def uninstall(self, ref: str) -> InstalledUnit:
        """Remove a unit whose services are all INACTIVE and that no other unit depends on."""
        unit = self.unit(ref)
        c = self.container
        users = [str(u.id) for u in self.units.values() if any(d == unit.id for d, _ in u.manifest.depends_units)]
        if users:
            raise InvalidStateError(f"unit {unit.id} is in use: unit(s) {', '.join(users)} depend on it; uninstall them first")
        for sid in unit.services:
            service = c.services.get(sid)
            if service is not None and service.state is not ServiceState.INACTIVE:
                hint = ("deactivate it first (bin/slee deactivate)" if service.state is ServiceState.ACTIVE
                        else "it is draining; wait until it is INACTIVE")
                raise InvalidStateError(f"unit {unit.id} is in use: service {sid} is {service.state.value} with "
                                        f"{len(service.roots)} root SBB entities; {hint}")
        for sid in unit.services:
            if sid in c.services:
                c.uninstall_service(sid)
            self._delete(NS_SERVICE_STATE, str(sid))
        c.event_types.uninstall_owned_by(unit.id)
        for key, cls in unit.profile_specs.items():
            if not any(t.spec is cls for t in c.profiles.tables.values()):
                for k in [k for k, v in c.profiles.specs.items() if v is cls]:
                    del c.profiles.specs[k]
            else:
                log.info("profile specification %s stays registered: tables still use it", key)
        unit.namespace.unload()
        del self.units[unit.id]
        self._delete(NS_UNIT, str(unit.id))
        if self.units_dir is not None and unit.archive.startswith(str(self.units_dir)):
            target = Path(unit.archive)
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        log.info("uninstalled unit %s", unit.id)
        return unit

    # ==================================================================================
    # service lifecycle
    # ==================================================================================
    def activate(self, ref: str) -> Service:
        service = self.service(ref, prefer=ServiceState.INACTIVE)
        self.container.activate_service(service.id)
        return service

    def deactivate(self, ref: str) -> Service:
        service = self.service(ref, prefer=ServiceState.ACTIVE)
        self.container.deactivate_service(service.id)
        return service

    async def upgrade(self, ref: str, path: str | Path, ra_links: dict[str, str] | None = None,
                      progress: Progress | None = None, *, migrate: bool = False) -> dict[str, Any]:
        """Install ``path`` and swap its service in for the ACTIVE ``ref`` in one step.

        New initial events go to the new version at once; the old version is STOPPING and
        keeps serving its existing entities until they end, then becomes INACTIVE. If the unit
        at ``path`` is already installed (e.g. rolling back to a version still installed), it
        is swapped in without reinstalling. With ``migrate`` the old version's entities move
        to the new code instead of draining (``Container.migrate_service``).
        """
        old = self.service(ref, prefer=ServiceState.ACTIVE)
        if old.state is not ServiceState.ACTIVE:
            raise InvalidStateError(f"service {old.id} is {old.state.value}; upgrade swaps out an ACTIVE service "
                                    "(activate it, or just install and activate the new version)")
        manifest = read_manifest(path)
        fresh = manifest.id not in self.units
        if fresh:
            await _say(progress, f"validating {manifest.id} from {manifest.source}")
            unit = self.install(path, ra_links)
            await _say(progress, f"installed {unit.id}")
        else:
            unit = self.units[manifest.id]
            await _say(progress, f"unit {unit.id} is already installed; swapping it back in")
        candidates = [s for s in unit.services if s.name == old.id.name] or (
            unit.services if len(unit.services) == 1 else [])
        if not candidates or candidates[0] == old.id:
            if fresh:
                self.uninstall(str(unit.id))
            raise ValidationError(f"{manifest.file}: unit {unit.id} has no other version of service "
                                  f"{old.id.name} to swap in (services: {self._names(unit.services)})")
        new_id = candidates[0]
        moved = None
        try:
            if migrate:
                for _ in range(500):  # wait for a moment with no asynchronous handler running
                    if not self.container._tasks:
                        break
                    await asyncio.sleep(0.01)
                moved = self.container.migrate_service(old.id, new_id)
                await _say(progress, f"migrated {moved} SBB entities from {old.id} to {new_id}")
            else:
                self.container.swap_services(old.id, new_id)
        except Exception:
            if fresh:
                self.uninstall(str(unit.id))
            raise
        draining = (f"STOPPING, {len(old.roots)} root entities draining" if old.state is ServiceState.STOPPING
                    else old.state.value)
        await _say(progress, f"swapped: {new_id} is ACTIVE; {old.id} is {draining}")
        return {"old": str(old.id), "new": str(new_id), "old_state": old.state.value,
                "draining": len(old.roots), "unit": str(unit.id), "installed": fresh, "migrated": moved}

    # ==================================================================================
    # RA entities
    # ==================================================================================
    def create_ra_entity(self, name: str, ra: str | ResourceAdaptorId, config: dict[str, Any] | None = None) -> Any:
        ra_id = ra if isinstance(ra, ResourceAdaptorId) else self._ra_id(ra)
        ra_cls = self.container.ra_classes.get(ra_id)
        config = _coerce(ra_cls, config or {}) if ra_cls is not None else config
        entity = self.container.create_ra_entity(name, ra_id, config or {})
        self._put(NS_RA, name, {"ra": str(ra_id), "config": dict(config or {}), "active": False,
                                "seq": next(self._seq)})
        return entity

    def _ra_id(self, text: str) -> ResourceAdaptorId:
        if text.count("/") == 2:
            return ResourceAdaptorId.parse(text)
        found = [r for r in self.container.ra_classes if r.name == text]
        if len(found) != 1:
            raise NotFoundError(f"no single resource adaptor named {text!r}; installed: "
                                f"{self._names(self.container.ra_classes)}")
        return found[0]

    async def reconfigure_ra_entity(self, name: str, config: dict[str, Any]) -> None:
        cfg = await self.container.reconfigure_ra_entity(name, config)
        doc = self.store.get(NS_RA, name) if self.store is not None else None
        if doc is not None:
            doc["config"] = dict(cfg)
            self._put(NS_RA, name, doc)

    async def activate_ra_entity(self, name: str) -> None:
        await self.container.activate_ra_entity(name)
        self._mark_ra(name, True)

    async def deactivate_ra_entity(self, name: str) -> None:
        await self.container.deactivate_ra_entity(name)
        self._mark_ra(name, False)

    def remove_ra_entity(self, name: str) -> None:
        self.container.remove_ra_entity(name)
        self._delete(NS_RA, name)

    def _mark_ra(self, name: str, active: bool) -> None:
        if self.store is None:
            return
        doc = self.store.get(NS_RA, name)
        if doc is not None:
            doc["active"] = active
            self._put(NS_RA, name, doc)

    # ==================================================================================
    # recipes
    # ==================================================================================
    def recipe_path(self, target: str) -> Path | None:
        p = Path(target)
        if p.suffix in (".yaml", ".yml") and p.is_file():
            return p.resolve()
        if self.recipes_dir is not None and "/" not in target and (self.recipes_dir / f"{target}.yaml").is_file():
            return self.recipes_dir / f"{target}.yaml"
        return None

    def available_recipes(self) -> list[str]:
        if self.recipes_dir is None or not self.recipes_dir.is_dir():
            return []
        return sorted(p.stem for p in self.recipes_dir.glob("*.yaml"))

    async def deploy(self, target: str, variables: dict[str, str] | None = None,
                     progress: Progress | None = None) -> DeployReport:
        """Apply a recipe (``NAME`` in the recipes folder, or a path to one) or a unit folder/zip.

        Idempotent: what exists already is left as it is and reported as unchanged.
        """
        env = {**self.variables, **(variables or {})}
        recipe_file = self.recipe_path(target)
        if recipe_file is not None:
            recipe = read_recipe(recipe_file, env)
        elif Path(target).exists():
            m = read_manifest(target)
            recipe = Recipe(str(m.id), m.file, units=[UnitStep(m.source, {}, None)],
                            activate=[(str(s.id), None) for s in m.services])
        else:
            known = ", ".join(self.available_recipes()) or "none"
            raise NotFoundError(f"no recipe {target!r} in {self.recipes_dir} (recipes: {known}) and no unit at that path")
        report = DeployReport(recipe.name)
        await _say(progress, f"deploying {recipe.name} ({recipe.file})")
        c = self.container
        # check the whole recipe before changing anything
        for step in recipe.ra_entities:
            if step.ra not in c.ra_classes:
                raise DeployError(recipe.file, step.line, f"resource adaptor {step.ra} is not installed "
                                                           f"(installed: {self._names(c.ra_classes)})")
            try:
                check_config(c.ra_classes[step.ra], _coerce(c.ra_classes[step.ra], step.config))
            except ValueError as exc:
                raise DeployError(recipe.file, step.line, f"RA entity {step.name}: {exc}") from None
        manifests = [(step, read_manifest(step.path)) for step in recipe.units]

        for step in recipe.ra_entities:
            entity = c.ra_entities.get(step.name)
            if entity is None:
                entity = self.create_ra_entity(step.name, step.ra, step.config)
                await self._changed(report, progress, f"created RA entity {step.name} ({step.ra})")
            else:
                wanted = check_config(c.ra_classes[step.ra], _coerce(c.ra_classes[step.ra], step.config))
                if entity.ra_id != step.ra:
                    msg = (f"RA entity {step.name} exists as {entity.ra_id}, not {step.ra}; left as it is "
                           f"(remove it first to change its resource adaptor)")
                    report.warnings.append(msg)
                    await _say(progress, "warning: " + msg)
                elif entity.config != wanted:
                    diff = ", ".join(f"{k}: {entity.config.get(k)!r} -> {v!r}" for k, v in wanted.items()
                                     if entity.config.get(k) != v)
                    await self.reconfigure_ra_entity(step.name, wanted)
                    await self._changed(report, progress, f"reconfigured RA entity {step.name} ({diff})")
                else:
                    report.unchanged.append(f"RA entity {step.name}")
            if step.active and entity.state is RaEntityState.INACTIVE:
                await self.activate_ra_entity(step.name)
                await self._changed(report, progress, f"activated RA entity {step.name}")
        for step, m in manifests:
            same_name = [u for u in self.units.values() if u.id.name == m.id.name and u.id.vendor == m.id.vendor]
            if m.id in self.units:
                report.unchanged.append(f"unit {m.id}")
            elif same_name:
                msg = (f"unit {m.id.name} is installed as {', '.join(str(u.id) for u in same_name)}; "
                       f"left as it is (use bin/slee upgrade to change versions)")
                report.warnings.append(msg)
                await _say(progress, msg)
            else:
                await _say(progress, f"installing {m.id} from {m.source}")
                self.install(step.path, step.ra_links)
                await self._changed(report, progress, f"installed unit {m.id}")
        for table in recipe.tables:
            try:
                existing = c.profiles.tables.get(table.name)
                if existing is None:
                    c.profiles.create_table(table.name, table.spec)
                    await self._changed(report, progress, f"created profile table {table.name}")
                else:
                    report.unchanged.append(f"profile table {table.name}")
                t = c.profiles.tables[table.name]
                for pname, values in table.profiles.items():
                    if pname in t:
                        report.unchanged.append(f"profile {table.name}/{pname}")
                        continue
                    t.create(pname, **_parse_values(t, values))
                    await self._changed(report, progress, f"created profile {table.name}/{pname}")
            except ProfileError as exc:
                raise DeployError(recipe.file, table.line, str(exc)) from None
        for ref, line in recipe.activate:
            name = ref.split("/")[0]
            active = [s for s in c.services.values() if s.state is ServiceState.ACTIVE
                      and (str(s.id) == ref or s.id.name == name)]
            if active:
                report.unchanged.append(f"service {active[0].id} ACTIVE")
                continue
            try:
                service = self.activate(ref)
            except InvalidStateError as exc:
                raise DeployError(recipe.file, line, str(exc)) from None
            await self._changed(report, progress, f"activated service {service.id}")
        self._put(NS_RECIPE, recipe.name, {"file": recipe.file, "variables": variables or {}, "at": time.time()})
        if not report.changed:
            await _say(progress, f"nothing to do: {recipe.name} is already deployed")
        else:
            await _say(progress, f"deployed {recipe.name}: {len(report.changed)} change(s)")
        return report

    @staticmethod
    async def _changed(report: DeployReport, progress: Progress | None, message: str) -> None:
        report.changed.append(message)
        await _say(progress, message)

    # ==================================================================================
    # restart
    # ==================================================================================
    def restore(self) -> dict[str, Any]:
        """Rebuild RA entities, units, container state and service states from the store.

        Call before ``container.start()``; then ``await activate_restored_ra_entities()``.
        Problems with one item are logged and raised as alarms; the rest still comes back.
        """
        summary: dict[str, Any] = {"ra_entities": 0, "units": 0, "services_active": 0, "problems": []}
        if self.store is None:
            return summary
        c = self.container

        def problem(kind: str, key: str, exc: BaseException) -> None:
            msg = f"could not restore {kind} {key}: {exc}"
            log.error("%s", msg)
            summary["problems"].append(msg)
            c.alarms.raise_alarm("slee/deploy", f"restore-{kind}", key, "MAJOR", msg)

        self._restoring = True
        try:
            ras = sorted(self.store.load(NS_RA).items(), key=lambda kv: kv[1].get("seq", 0))
            for name, doc in ras:
                try:
                    ra_id = ResourceAdaptorId.parse(doc["ra"])
                    ra_cls = c.ra_classes.get(ra_id)
                    config = doc.get("config") or {}
                    c.create_ra_entity(name, ra_id, _coerce(ra_cls, config) if ra_cls else config)
                    summary["ra_entities"] += 1
                except Exception as exc:
                    problem("ra-entity", name, exc)
            units = sorted(self.store.load(NS_UNIT).items(), key=lambda kv: kv[1].get("seq", 0))
            for key, doc in units:
                path = doc.get("archive") or doc.get("source")
                try:
                    if not path or not Path(path).exists():
                        raise FileNotFoundError(f"the unit's code is gone from {path}")
                    self.install(path, doc.get("ra_links") or {}, archive=path, seq=doc.get("seq"))
                    summary["units"] += 1
                except Exception as exc:
                    problem("unit", key, exc)
            summary["container"] = c.restore()
            states = self.store.load(NS_SERVICE_STATE)
            for sid in list(c.services):
                state = states.get(str(sid))
                try:
                    if state == ServiceState.ACTIVE.value:
                        c.activate_service(sid)
                        summary["services_active"] += 1
                    elif state == ServiceState.STOPPING.value:
                        c.activate_service(sid)
                        c.deactivate_service(sid)
                except Exception as exc:
                    problem("service", str(sid), exc)
        finally:
            self._restoring = False
        seqs = [d.get("seq", 0) for d in self.store.load(NS_RA).values()] + [u.seq for u in self.units.values()]
        self._seq = itertools.count(max(seqs, default=0) + 1)
        return summary

    async def activate_restored_ra_entities(self) -> list[str]:
        """Activate the RA entities that were active before the restart (after container.start)."""
        if self.store is None:
            return []
        done = []
        for name, doc in self.store.load(NS_RA).items():
            entity = self.container.ra_entities.get(name)
            if doc.get("active") and entity is not None and entity.state is RaEntityState.INACTIVE:
                try:
                    await self.container.activate_ra_entity(name)
                    done.append(name)
                except Exception as exc:
                    log.error("could not activate RA entity %s: %s", name, exc)
                    self.container.alarms.raise_alarm("slee/deploy", "restore-ra-entity", name, "MAJOR",
                                                      f"could not activate RA entity {name}: {exc}")
        return done

    # ==================================================================================
    # store
    # ==================================================================================
    def _put(self, ns: str, key: str, value: Any) -> None:
        if self.store is not None:
            from slee.store import Put

            self.store.apply([Put(ns, key, value)])

    def _delete(self, ns: str, key: str) -> None:
        if self.store is not None:
            from slee.store import Delete

            self.store.apply([Delete(ns, key)])


_LOCATED = re.compile(r"^(?P<file>[^\s:][^:]*?):(?P<line>\d+): (?P<reason>.*)$", re.S)


def _parse_located(message: str, file: str, line: int | None) -> tuple[str, int | None, str]:
    m = _LOCATED.match(message)
    if m:
        return m.group("file"), int(m.group("line")), m.group("reason")
    return file, line, message


def _split(source: str, file: str, line: int | None) -> tuple[str, int | None]:
    f, ln, _ = _parse_located(f"{source}: x", file, line)
    return f, ln


def _coerce(ra_cls: Any, config: dict[str, Any]) -> dict[str, Any]:
    """YAML and JSON write 60 for 60.0: accept an int where the RA declares a float property."""
    props = getattr(ra_cls, "config_properties", {})
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) and k in props and props[k].type is float
            else v for k, v in config.items()}


def _parse_values(table: Any, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        attr = table.attributes.get(k)
        out[k] = attr.parse(v) if attr is not None and isinstance(v, str) else v
    return out


__all__ = ["MANIFEST", "DeployReport", "DeploymentManager", "InstalledUnit", "NotFoundError", "Progress"]

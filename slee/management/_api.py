"""The management API: HTTP+JSON on loopback, every request authenticated by a bearer token.

Reads are ``GET``; every change is a ``POST`` with a JSON body (component ids contain '/',
so they travel in bodies and query strings, not in paths). Long operations (``deploy``,
``upgrade``) answer with ``application/x-ndjson``: one ``{"progress": ...}`` line per step,
then one ``{"result": ...}`` or ``{"error": ...}`` line. Errors are JSON
``{"error": message}`` with 400 (bad request), 401 (no or wrong token), 404 (no such
thing), 409 (wrong state) or 422 (refused deployable unit, with file and line).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from slee import __version__
from slee.deploy import DeployError, DeploymentManager, NotFoundError
from slee.errors import InvalidStateError, ProfileError, SleeError, ValidationError
from slee.service import ServiceState

log = logging.getLogger("slee.management")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """The request itself is malformed (missing field, wrong type)."""


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _status_of(exc: BaseException) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, DeployError):
        return 422, {"file": exc.file, "line": exc.line, "reason": exc.reason}
    if isinstance(exc, ValidationError):
        return 422, {}
    if isinstance(exc, NotFoundError):
        return 404, {}
    if isinstance(exc, BadRequest):
        return 400, {}
    if isinstance(exc, InvalidStateError | ProfileError | SleeError | ValueError | KeyError | TypeError):
        return 409, {}
    return 500, {}


def auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "missing or wrong bearer token (see mgmt.token in the data dir)"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="slee"'})
        return await handler(request)

    return check


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        status, extra = _status_of(exc)
        if status == 500:
            log.exception("management call %s %s failed", request.method, request.path)
        message = str(exc) if not isinstance(exc, KeyError) else f"no such item: {exc}"
        return _error(status, message or type(exc).__name__, **extra)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type = str) -> Any:
    value = body.get(name)
    if value is None or not isinstance(value, kind) or (kind is str and not value):
        raise BadRequest(f"field {name!r} ({kind.__name__}) is required")
    return value


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise BadRequest(f"query parameter {name!r} is required")
    return value


class ManagementApi:
    """Routes bound to one deployment manager (and through it, one container)."""

    def __init__(self, manager: DeploymentManager, *, info: Callable[[], dict[str, Any]] | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.manager = manager
        self.container = manager.container
        self._info = info or dict
        self._on_stop = on_stop

    def app(self, token: str) -> web.Application:
        app = web.Application(middlewares=[auth_middleware(token), error_middleware], client_max_size=1 << 20)
        get, post = web.get, web.post
        app.add_routes([
            get("/v1/status", self.status),
            post("/v1/stop", self.stop),
            get("/v1/services", self.services),
            post("/v1/services/activate", self.activate),
            post("/v1/services/deactivate", self.deactivate),
            get("/v1/units", self.units),
            post("/v1/units/install", self.install),
            post("/v1/units/uninstall", self.uninstall),
            get("/v1/recipes", self.recipes),
            post("/v1/deploy", self.deploy),
            post("/v1/upgrade", self.upgrade),
            get("/v1/ra", self.ra_entities),
            get("/v1/ra/types", self.ra_types),
            get("/v1/ra/config", self.ra_config),
            post("/v1/ra/create", self.ra_create),
            post("/v1/ra/activate", self.ra_activate),
            post("/v1/ra/deactivate", self.ra_deactivate),
            post("/v1/ra/remove", self.ra_remove),
            get("/v1/profiles/tables", self.profile_tables),
            post("/v1/profiles/tables/create", self.profile_table_create),
            post("/v1/profiles/tables/remove", self.profile_table_remove),
            get("/v1/profiles", self.profiles_list),
            get("/v1/profiles/get", self.profile_get),
            post("/v1/profiles/create", self.profile_create),
            post("/v1/profiles/set", self.profile_set),
            post("/v1/profiles/remove", self.profile_remove),
            get("/v1/trace", self.trace_get),
            post("/v1/trace/set", self.trace_set),
            get("/v1/alarms", self.alarms),
            post("/v1/alarms/clear", self.alarms_clear),
            get("/v1/usage", self.usage),
            post("/v1/usage/reset", self.usage_reset),
            get("/v1/events", self.events),
            get("/v1/services/ops", self.service_ops),
            post("/v1/services/op", self.service_op),
        ])
        return app

    # -- container --------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        c = self.container
        doc = {"version": __version__, **self._info(), **c.status(),
               "units": [str(u) for u in self.manager.units]}
        return web.json_response(doc)

    async def stop(self, request: web.Request) -> web.Response:
        if self._on_stop is None:
            raise InvalidStateError("this container cannot be stopped through the API")
        asyncio.get_running_loop().call_soon(self._on_stop)
        return web.json_response({"stopping": True, "pid": self._info().get("pid")})

    # -- services and units -------------------------------------------------------------------
    async def services(self, request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in self.container.services.values()])

    async def activate(self, request: web.Request) -> web.Response:
        service = self.manager.activate(_field(await _body(request), "service"))
        return web.json_response(service.to_json())

    async def deactivate(self, request: web.Request) -> web.Response:
        service = self.manager.deactivate(_field(await _body(request), "service"))
        return web.json_response(service.to_json())

    async def service_ops(self, request: web.Request) -> web.Response:
        service = self.manager.service(request.query.get("service", ""))
        return web.json_response([
            {"op": name, "doc": (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""}
            for name, fn in sorted(service.operations.items())
        ])

    async def service_op(self, request: web.Request) -> web.Response:
        """Call a service's management operation inside a SLEE transaction."""
        from slee.service import OperationContext

        body = await _body(request)
        service = self.manager.service(_field(body, "service"))
        op = _field(body, "op")
        fn = service.operations.get(op)
        if fn is None:
            known = ", ".join(sorted(service.operations)) or "none"
            raise InvalidStateError(f"service {service.id} has no management operation {op!r} (it has: {known})")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise InvalidStateError("args must be a JSON object")
        ctx = OperationContext(self.container, service)
        with self.container.transaction():
            try:
                result = fn(ctx, **args)
            except TypeError as exc:
                raise InvalidStateError(f"operation {op}: {exc}") from None
            if asyncio.iscoroutine(result):
                result = await result
        await self.container.flush()
        return web.json_response(json.loads(json.dumps(result, default=str)))

    async def units(self, request: web.Request) -> web.Response:
        return web.json_response([self.manager.unit_json(u) for u in self.manager.units.values()])

    async def install(self, request: web.Request) -> web.Response:
        body = await _body(request)
        unit = self.manager.install(_path(_field(body, "path")), _links(body))
        return web.json_response(self.manager.unit_json(unit))

    async def uninstall(self, request: web.Request) -> web.Response:
        unit = self.manager.uninstall(_field(await _body(request), "unit"))
        return web.json_response({"uninstalled": str(unit.id), "services": [str(s) for s in unit.services]})

    async def recipes(self, request: web.Request) -> web.Response:
        return web.json_response({"folder": str(self.manager.recipes_dir), "recipes": self.manager.available_recipes()})

    async def deploy(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        target = _field(body, "target")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            raise BadRequest("variables must be an object")

        async def work(progress: Any) -> Any:
            report = await self.manager.deploy(target, {str(k): str(v) for k, v in variables.items()}, progress)
            return report.to_json()

        return await _streamed(request, work)

    async def upgrade(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        ref, path = _field(body, "service"), _path(_field(body, "path"))
        wait = float(body.get("wait") or 0)

        async def work(progress: Any) -> Any:
            result = await self.manager.upgrade(ref, path, _links(body), progress, migrate=bool(body.get("migrate")))
            if wait > 0:
                result["old_state"] = await self._drain(result["old"], wait, progress)
            return result

        return await _streamed(request, work)

    async def _drain(self, old: str, wait: float, progress: Any) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        last = loop.time()
        while True:
            service = self.container.services.get(self.manager.service(old).id)
            if service is None or service.state is ServiceState.INACTIVE:
                await progress(f"{old} is INACTIVE; it can be uninstalled (bin/slee uninstall {old})")
                return "INACTIVE"
            if loop.time() >= deadline:
                await progress(f"{old} is still {service.state.value} with {len(service.roots)} root entities")
                return service.state.value
            if loop.time() - last >= 1.0:
                last = loop.time()
                await progress(f"{old} draining: {len(service.roots)} root entities left")
            await asyncio.sleep(0.05)

    # -- RA entities --------------------------------------------------------------------------
    async def ra_entities(self, request: web.Request) -> web.Response:
        return web.json_response([e.to_json() for e in self.container.ra_entities.values()])

    async def ra_types(self, request: web.Request) -> web.Response:
        out = []
        for ra_id, cls in self.container.ra_classes.items():
            out.append({
                "ra": str(ra_id), "type": str(cls.ra_type.id),
                "event_types": [str(e) for e in cls.ra_type.event_types],
                "config": {k: {"type": p.type.__name__, "default": p.default, "required": p.required,
                               "description": p.description} for k, p in cls.config_properties.items()},
            })
        return web.json_response(out)

    async def ra_config(self, request: web.Request) -> web.Response:
        name = _query(request, "name")
        entity = self.container.ra_entities.get(name)
        if entity is None:
            raise NotFoundError(f"no RA entity {name!r}; entities: {', '.join(self.container.ra_entities) or 'none'}")
        cls = self.container.ra_classes[entity.ra_id]
        return web.json_response({"name": name, "ra": str(entity.ra_id), "state": entity.state.value,
                                  "config": entity.to_json()["config"],
                                  "properties": {k: p.description for k, p in cls.config_properties.items()}})

    async def ra_create(self, request: web.Request) -> web.Response:
        body = await _body(request)
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise BadRequest("config must be an object")
        entity = self.manager.create_ra_entity(_field(body, "name"), _field(body, "ra"), config)
        if body.get("activate"):
            await self.manager.activate_ra_entity(entity.name)
        return web.json_response(entity.to_json())

    async def ra_activate(self, request: web.Request) -> web.Response:
        name = _field(await _body(request), "name")
        await self.manager.activate_ra_entity(name)
        return web.json_response(self.container.ra_entities[name].to_json())

    async def ra_deactivate(self, request: web.Request) -> web.Response:
        name = _field(await _body(request), "name")
        await self.manager.deactivate_ra_entity(name)
        return web.json_response(self.container.ra_entities[name].to_json())

    async def ra_remove(self, request: web.Request) -> web.Response:
        name = _field(await _body(request), "name")
        self.manager.remove_ra_entity(name)
        return web.json_response({"removed": name})

    # -- profiles -----------------------------------------------------------------------------
    async def profile_tables(self, request: web.Request) -> web.Response:
        profiles = self.container.profiles
        return web.json_response({
            "tables": [{"name": t.name, "spec": str(t.spec.spec_id), "profiles": len(t)}
                       for t in sorted(profiles.tables.values(), key=lambda t: t.name)],
            "specs": sorted({str(s.spec_id) for s in profiles.specs.values()}),
        })

    async def profile_table_create(self, request: web.Request) -> web.Response:
        body = await _body(request)
        table = self.container.profiles.create_table(_field(body, "name"), _field(body, "spec"))
        return web.json_response({"name": table.name, "spec": str(table.spec.spec_id)})

    async def profile_table_remove(self, request: web.Request) -> web.Response:
        name = _field(await _body(request), "name")
        self.container.profiles.remove_table(name)
        return web.json_response({"removed": name})

    async def profiles_list(self, request: web.Request) -> web.Response:
        table = self.container.profiles.get_table(_query(request, "table"))
        return web.json_response({"table": table.name, "attributes": list(table.attributes),
                                  "profiles": {n: table.get(n) for n in table.names()}})

    async def profile_get(self, request: web.Request) -> web.Response:
        table = self.container.profiles.get_table(_query(request, "table"))
        name = _query(request, "profile")
        values = table.get(name)
        if values is None:
            raise NotFoundError(f"table {table.name} has no profile {name!r}")
        return web.json_response({"table": table.name, "profile": name, "values": values})

    async def profile_create(self, request: web.Request) -> web.Response:
        body = await _body(request)
        table = self.container.profiles.get_table(_field(body, "table"))
        name = _field(body, "profile")
        table.create(name, **_values(table, body.get("values") or {}))
        return web.json_response({"table": table.name, "profile": name, "values": table.get(name)})

    async def profile_set(self, request: web.Request) -> web.Response:
        body = await _body(request)
        table = self.container.profiles.get_table(_field(body, "table"))
        name = _field(body, "profile")
        table.update(name, **_values(table, _field(body, "values", dict)))
        return web.json_response({"table": table.name, "profile": name, "values": table.get(name)})

    async def profile_remove(self, request: web.Request) -> web.Response:
        body = await _body(request)
        table = self.container.profiles.get_table(_field(body, "table"))
        name = _field(body, "profile")
        table.remove(name)
        return web.json_response({"removed": name, "table": table.name})

    # -- tracing, alarms, usage, events -----------------------------------------------------------
    async def trace_get(self, request: web.Request) -> web.Response:
        levels = self.container.tracers.levels()
        component = request.query.get("component")
        if component:
            levels = [row for row in levels if row["component"] == component or row["component"].startswith(component)]
        return web.json_response(levels)

    async def trace_set(self, request: web.Request) -> web.Response:
        body = await _body(request)
        component, level = _field(body, "component"), _field(body, "level")
        tracer = body.get("tracer") or "root"
        if level.lower() == "unset":
            self.container.tracers.unset_level(component, tracer)
        else:
            self.container.tracers.set_level(component, tracer, level)
        return web.json_response({"component": component, "tracer": tracer,
                                  "level": self.container.tracers.effective_level(component, tracer).name})

    async def alarms(self, request: web.Request) -> web.Response:
        return web.json_response([a.to_json() for a in self.container.alarms.list()])

    async def alarms_clear(self, request: web.Request) -> web.Response:
        body = await _body(request)
        alarms = self.container.alarms
        if body.get("all"):
            ids = [a.id for a in alarms.list()]
            for alarm_id in ids:
                alarms.clear_by_id(alarm_id)
            return web.json_response({"cleared": ids})
        alarm_id = _field(body, "id")
        if not alarms.clear_by_id(alarm_id):
            raise NotFoundError(f"no active alarm {alarm_id}")
        return web.json_response({"cleared": [alarm_id]})

    async def usage(self, request: web.Request) -> web.Response:
        return web.json_response(self.container.usage.snapshot(request.query.get("service") or None))

    async def usage_reset(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.container.usage.reset(body.get("service") or None)
        return web.json_response({"reset": body.get("service") or "all"})

    async def events(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"id": str(t.id), "class": f"{t.event_class.__module__}.{t.event_class.__qualname__}" if t.event_class else None,
             "owner": str(t.owner) if t.owner else "container"}
            for t in self.container.event_types.all()
        ])


async def _streamed(request: web.Request, work: Callable[[Any], Awaitable[Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)

    async def progress(message: str) -> None:
        await response.write(json.dumps({"progress": message}).encode() + b"\n")

    try:
        result = await work(progress)
        line: dict[str, Any] = {"result": result}
    except Exception as exc:
        status, extra = _status_of(exc)
        if status == 500:
            log.exception("management call %s failed", request.path)
        line = {"error": str(exc), "status": status, **extra}
    await response.write(json.dumps(line).encode() + b"\n")
    await response.write_eof()
    return response


def _path(text: str) -> str:
    path = Path(text)
    if not path.is_absolute():
        raise BadRequest(f"path {text!r} must be absolute (the CLI resolves it)")
    return text


def _links(body: dict[str, Any]) -> dict[str, str]:
    links = body.get("ra_links") or {}
    if not isinstance(links, dict):
        raise BadRequest("ra_links must be an object of link -> RA entity")
    return {str(k): str(v) for k, v in links.items()}


def _values(table: Any, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise BadRequest("values must be an object of attribute -> value")
    out = {}
    for name, value in values.items():
        attr = table.attributes.get(name)
        if attr is None:
            raise ProfileError(f"table {table.name} has no attribute {name!r}; attributes: {', '.join(table.attributes)}")
        out[name] = attr.parse(value) if isinstance(value, str) and attr.type is not str else value
    return out

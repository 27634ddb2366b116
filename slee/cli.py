"""The ``slee`` command line: start a container, and manage a running one through its API.

Every command except ``start`` talks to the container whose data dir is ``--data`` (default
``./var``). Output is a table for people, or JSON with ``--json``. Exit codes: 0 done,
1 refused or failed (the message says why), 2 bad usage, 3 no container running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slee import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ==========================================================================================
# output
# ==========================================================================================
def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = list(headers or [c.upper() for c in columns])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _released(lock: Path) -> bool:
    """Whether no process holds the data dir's lock (a zombie or exited container does not)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def _pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {item!r} must look like key=value", EXIT_USAGE)
        out[key.strip()] = value
    return out


# ==========================================================================================
# commands
# ==========================================================================================
class Cli:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data)
        self.as_json = args.json
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from slee.management import ContainerNotRunning, ManagementClient

            try:
                self._client = ManagementClient(self.data)
            except ContainerNotRunning as exc:
                raise CliError(str(exc), EXIT_NOT_RUNNING) from None
        return self._client

    def out(self, payload: Any, human: Callable[[Any], str] | str | None = None) -> None:
        if self.as_json or human is None:
            print(json.dumps(payload, indent=2, sort_keys=False))
        else:
            print(human(payload) if callable(human) else human)

    def progress(self, message: str) -> None:
        print(("  " if not self.as_json else "") + message, file=sys.stderr if self.as_json else sys.stdout,
              flush=True)

    def get(self, path: str, **query: str) -> Any:
        return self.client.call("GET", path, query={k: v for k, v in query.items() if v is not None} or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.call("POST", path, body or {})

    # -- lifecycle ---------------------------------------------------------------------------
    def cmd_start(self) -> int:
        from slee.management import NotLoopbackError
        from slee.server import ServerConfig, StartError, configure_logging, run_loop, serve
        from slee.store import StoreError

        a = self.args
        if a.workers < 1:
            raise CliError(f"--workers must be 1 or more, not {a.workers}")
        configure_logging(a.log_level)
        config = ServerConfig(data_dir=self.data, store_url=a.store, mgmt_host=a.mgmt_host, mgmt_port=a.mgmt_port,
                              sip_host=a.sip_host, sip_port=a.sip_port, deploy=tuple(a.deploy or ()),
                              recipes_dir=Path(a.recipes).resolve() if a.recipes else None,
                              variables=_pairs(a.set, "--set"), gc_threshold=a.gc_threshold, loop=a.loop,
                              durability=a.durability)
        try:
            if a.workers > 1:
                from slee.workers import serve_workers

                return run_loop(serve_workers(config, a.workers), a.loop)
            return run_loop(serve(config), a.loop)
        except (StartError, NotLoopbackError, StoreError, OSError) as exc:
            raise CliError(f"cannot start: {exc}") from None
        except Exception as exc:
            from slee.errors import SleeError

            if isinstance(exc, SleeError):
                raise CliError(f"cannot start: {exc}") from None
            raise

    def cmd_stop(self) -> int:
        client = self.client
        result = self.post("/v1/stop")
        pid = result.get("pid") or client.pid
        deadline = time.monotonic() + self.args.timeout
        while not _released(self.data / "slee.lock"):  # the container holds it until it has exited
            if time.monotonic() > deadline:
                raise CliError(f"the container (pid {pid}) is still stopping after {self.args.timeout:.0f}s")
            time.sleep(0.05)
        self.out({"stopped": True, "pid": pid}, f"stopped the container (pid {pid}) in {self.data}")
        return EXIT_OK

    def cmd_status(self) -> int:
        s = self.get("/v1/status")

        def human(s: dict[str, Any]) -> str:
            lines = [f"container  pid {s.get('pid')}  up {s.get('uptime', 0):.0f}s  data {s.get('data_dir')}",
                     f"store      {s.get('store')}"
                     + (f"  (durability {s['durability']})" if s.get("durability") else ""),
                     f"listening  {', '.join(s.get('listening') or []) or '-'}",
                     f"events     delivered {s['delivered']}  failed {s['failed']}  backlog {s['backlog']}  "
                     f"activities {s['activities']}  SBB entities {s['sbb_entities']}  timers {s['timers']}  "
                     f"alarms {s['alarms']}",
                     "", "SERVICES", table(s["services"], ["id", "state", "root_entities", "entities"],
                                           ["SERVICE", "STATE", "ROOTS", "ENTITIES"]),
                     "", "RA ENTITIES", table(s["ra_entities"], ["name", "ra", "state"])]
            if s.get("workers"):  # bin/slee start --workers N: the rows above are worker 0's
                rows = [{**w, "pid": w.get("pid", "-"), "state": "error: " + w["error"] if "error" in w else "up"}
                        for w in s["workers"]]
                how = {"steered": "steered by the kernel to their owner", "random": "spread at random",
                       "hash": "spread by address hash"}.get(s.get("datagrams", ""), "-")
                lines += ["", f"WORKERS (UDP datagrams {how}, owners by {s.get('owner_hash', '-')}; "
                          "services and RA entities above: worker 0)",
                          table(rows, ["index", "pid", "state", "restarts", "delivered", "backlog", "sbb_entities"],
                                ["WORKER", "PID", "STATE", "RESTARTS", "EVENTS", "BACKLOG", "SBB ENTITIES"])]
            return "\n".join(lines)

        self.out(s, human)
        return EXIT_OK

    # -- deployment ------------------------------------------------------------------------------
    def cmd_deploy(self) -> int:
        target = self.args.target
        if Path(target).exists():
            target = str(Path(target).resolve())
        result = self.client.stream("/v1/deploy", {"target": target, "variables": _pairs(self.args.set, "--set")},
                                    self.progress)
        if self.as_json:
            self.out(result)
        elif result["nothing_to_do"]:
            print(f"{result['target']}: already deployed; nothing changed")
        else:
            print(f"{result['target']}: deployed ({len(result['changed'])} change(s))")
        return EXIT_OK

    def cmd_upgrade(self) -> int:
        body = {"service": self.args.service, "path": str(Path(self.args.path).resolve()),
                "ra_links": _pairs(self.args.link, "--link"), "wait": self.args.wait,
                "migrate": self.args.migrate}
        r = self.client.stream("/v1/upgrade", body, self.progress)
        self.out(r, lambda r: f"upgraded: {r['new']} is ACTIVE; {r['old']} is {r['old_state']}"
                 + (f" ({r['migrated']} SBB entities migrated)" if r.get("migrated") is not None else ""))
        return EXIT_OK

    def cmd_install(self) -> int:
        u = self.post("/v1/units/install", {"path": str(Path(self.args.path).resolve()),
                                            "ra_links": _pairs(self.args.link, "--link")})
        if self.args.activate:
            for s in u["services"]:
                self.post("/v1/services/activate", {"service": s["id"]})
                s["state"] = "ACTIVE"
        self.out(u, lambda u: f"installed {u['id']}\n" + table(u["services"], ["id", "state"], ["SERVICE", "STATE"]))
        return EXIT_OK

    def cmd_uninstall(self) -> int:
        r = self.post("/v1/units/uninstall", {"unit": self.args.unit})
        self.out(r, lambda r: f"uninstalled {r['uninstalled']}")
        return EXIT_OK

    def cmd_activate(self) -> int:
        s = self.post("/v1/services/activate", {"service": self.args.service})
        self.out(s, lambda s: f"{s['id']} is {s['state']}")
        return EXIT_OK

    def cmd_deactivate(self) -> int:
        s = self.post("/v1/services/deactivate", {"service": self.args.service})
        self.out(s, lambda s: f"{s['id']} is {s['state']}" + (
            f" ({s['root_entities']} root entities draining)" if s["state"] == "STOPPING" else ""))
        return EXIT_OK

    def cmd_services(self) -> int:
        self.out(self.get("/v1/services"), lambda rows: table(
            rows, ["id", "state", "root_entities", "entities", "default_priority", "deployable_unit"],
            ["SERVICE", "STATE", "ROOTS", "ENTITIES", "PRIORITY", "UNIT"]))
        return EXIT_OK

    def cmd_units(self) -> int:
        rows = self.get("/v1/units")
        self.out(rows, lambda rows: table(
            [{**u, "services": [f"{s['id']} ({s['state']})" for s in u["services"]]} for u in rows],
            ["id", "services", "source"], ["UNIT", "SERVICES", "SOURCE"]))
        return EXIT_OK

    def cmd_recipes(self) -> int:
        r = self.get("/v1/recipes")
        self.out(r, lambda r: f"recipes in {r['folder']}: {', '.join(r['recipes']) or 'none'}")
        return EXIT_OK

    # -- RA entities ---------------------------------------------------------------------------
    def cmd_ra(self) -> int:
        a = self.args
        action = a.ra_action or "list"
        if action == "list":
            rows = self.get("/v1/ra")
            self.out(rows, lambda rows: table(
                [{**r, "listen": (r.get("stats") or {}).get("listen")} for r in rows],
                ["name", "ra", "state", "listen", "config"]))
        elif action == "types":
            self.out(self.get("/v1/ra/types"), lambda rows: table(
                [{**r, "config": list(r["config"])} for r in rows], ["ra", "type", "config"],
                ["RA", "RA TYPE", "CONFIG PROPERTIES"]))
        elif action == "config":
            r = self.get("/v1/ra/config", name=a.name)
            self.out(r, lambda r: f"{r['name']} ({r['ra']}, {r['state']})\n" + table(
                [{"property": k, "value": v, "meaning": r["properties"].get(k, "")} for k, v in r["config"].items()],
                ["property", "value", "meaning"]))
        elif action == "create":
            r = self.post("/v1/ra/create", {"name": a.name, "ra": a.ra, "config": _pairs(a.config, "--config"),
                                            "activate": a.activate})
            self.out(r, lambda r: f"created RA entity {r['name']} ({r['ra']}), {r['state']}")
        else:
            path = {"activate": "/v1/ra/activate", "deactivate": "/v1/ra/deactivate", "remove": "/v1/ra/remove"}[action]
            r = self.post(path, {"name": a.name})
            self.out(r, lambda r: f"RA entity {a.name}: " + (r.get("state") or "removed"))
        return EXIT_OK

    # -- profiles ------------------------------------------------------------------------------
    def cmd_profiles(self) -> int:
        a = self.args
        action = a.profiles_action or "tables"
        if action == "tables":
            r = self.get("/v1/profiles/tables")
            self.out(r, lambda r: table(r["tables"], ["name", "spec", "profiles"]) +
                     f"\nspecifications: {', '.join(r['specs']) or 'none'}")
        elif action == "create-table":
            self.out(self.post("/v1/profiles/tables/create", {"name": a.table, "spec": a.spec}),
                     lambda r: f"created profile table {r['name']} ({r['spec']})")
        elif action == "remove-table":
            self.out(self.post("/v1/profiles/tables/remove", {"name": a.table}),
                     lambda r: f"removed profile table {r['removed']}")
        elif action in ("create", "set"):
            values = _pairs(a.values, "attribute")
            if action == "set" and not values:
                raise CliError("give at least one attribute=value", EXIT_USAGE)
            r = self.post(f"/v1/profiles/{action}", {"table": a.table, "profile": a.profile, "values": values})
            self.out(r, lambda r: f"{r['table']}/{r['profile']}: {_cell(r['values'])}")
        elif action == "get":
            r = self.get("/v1/profiles/get", table=a.table, profile=a.profile)
            self.out(r, lambda r: table([{"attribute": k, "value": v} for k, v in r["values"].items()],
                                        ["attribute", "value"]))
        elif action == "list":
            r = self.get("/v1/profiles", table=a.table)
            self.out(r, lambda r: table([{"profile": n, **v} for n, v in r["profiles"].items()],
                                        ["profile", *r["attributes"]]))
        elif action == "remove":
            self.out(self.post("/v1/profiles/remove", {"table": a.table, "profile": a.profile}),
                     lambda r: f"removed {r['table']}/{r['removed']}")
        return EXIT_OK

    # -- facilities ------------------------------------------------------------------------------
    def cmd_trace(self) -> int:
        a = self.args
        if (a.trace_action or "get") == "get":
            rows = self.get("/v1/trace", component=getattr(a, "component", None))
            self.out(rows, lambda rows: table(rows, ["component", "tracer", "level", "explicit"]))
        else:
            r = self.post("/v1/trace/set", {"component": a.component, "tracer": a.tracer, "level": a.level})
            self.out(r, lambda r: f"{r['component']} {r['tracer']}: {r['level']}")
        return EXIT_OK

    def cmd_alarms(self) -> int:
        a = self.args
        if (a.alarms_action or "list") == "list":
            self.out(self.get("/v1/alarms"), lambda rows: table(
                rows, ["id", "level", "source", "alarm_type", "instance_id", "message"]))
        else:
            if not a.all and not a.id:
                raise CliError("give an alarm id or --all", EXIT_USAGE)
            r = self.post("/v1/alarms/clear", {"all": True} if a.all else {"id": a.id})
            self.out(r, lambda r: f"cleared {len(r['cleared'])} alarm(s)")
        return EXIT_OK

    def cmd_usage(self) -> int:
        a = self.args
        if a.reset:
            self.out(self.post("/v1/usage/reset", {"service": a.service}), lambda r: f"reset usage of {r['reset']}")
            return EXIT_OK
        rows = self.get("/v1/usage", service=a.service)
        flat = []
        for r in rows:
            for name, value in r["counters"].items():
                flat.append({"service": r["service"], "sbb": r["sbb"], "set": r["set"], "parameter": name, "value": value})
            for name, sample in r["samples"].items():
                flat.append({"service": r["service"], "sbb": r["sbb"], "set": r["set"], "parameter": name,
                             "value": sample})
        self.out(rows, lambda _r: table(flat, ["service", "sbb", "set", "parameter", "value"]))
        return EXIT_OK

    def cmd_op(self) -> int:
        """Call a service's management operation (see ``management`` in deployable-unit.yaml)."""
        a = self.args
        if not a.op:
            rows = self.get("/v1/services/ops", service=a.service)
            self.out(rows, lambda r: table(r, ["op", "doc"], ["OPERATION", "WHAT IT DOES"]) if r
                     else f"{a.service} has no management operations")
            return EXIT_OK
        args: dict[str, Any] = {}
        for item in a.args or []:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise CliError(f"argument {item!r} must look like KEY=VALUE", EXIT_USAGE)
            args[key.replace("-", "_")] = value
        result = self.post("/v1/services/op", {"service": a.service, "op": a.op, "args": args})
        self.out(result, _render_result)
        return EXIT_OK

    def cmd_events(self) -> int:
        self.out(self.get("/v1/events"), lambda rows: table(rows, ["id", "owner", "class"],
                                                            ["EVENT TYPE", "DEFINED BY", "CLASS"]))
        return EXIT_OK


def _render_result(result: Any) -> str:
    """A table for a list of flat dicts, indented JSON for anything else."""
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        columns = list(dict.fromkeys(k for r in result for k in r))
        flat = [{k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in r.items()} for r in result]
        return table(flat, columns)
    return json.dumps(result, indent=2, sort_keys=False)


# ==========================================================================================
# parser
# ==========================================================================================
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR",
                        help="the container's data dir (default ./var)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")

    parser = argparse.ArgumentParser(prog="slee", description="A JAIN SLEE style container for SIP services.",
                                     epilog="Run 'slee COMMAND -h' for the options of one command.")
    parser.add_argument("--version", action="version", version=f"slee {__version__}")
    parser.add_argument("--data", default="var", metavar="DIR", help="the container's data dir (default ./var)")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    p = cmd("start", "run a container in the foreground (SIGINT/SIGTERM or 'slee stop' stop it)")
    p.add_argument("--deploy", action="append", metavar="NAME", help="apply recipe deploy/NAME.yaml (repeatable)")
    p.add_argument("--sip-host", default="0.0.0.0", help="SIP address for recipes (${sip_host}; default 0.0.0.0)")
    p.add_argument("--sip-port", type=int, default=5060, help="SIP port for recipes (${sip_port}; default 5060)")
    p.add_argument("--store", metavar="URL", help="store URL (default: sqlite:///DATA/slee.db)")
    p.add_argument("--mgmt-host", default="127.0.0.1", help="management API address; loopback only")
    p.add_argument("--mgmt-port", type=int, default=8750, help="management API port (0: any free port)")
    p.add_argument("--recipes", metavar="DIR", help="recipe folder (default ./deploy)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe variable (repeatable)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--gc-threshold", type=int, default=10_000, metavar="N",
                   help="allocations between young-generation GC runs (0: CPython's default tuning)")
    p.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                   help="event loop: uvloop when installed (auto, the default), or asyncio's own")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N container processes sharing the SIP port, one per core (default 1; see docs/operations.md)")
    p.add_argument("--durability", default="write", choices=["write", "fsync"],
                   help="SQLite store: acknowledge state once written to the WAL, fsynced within 10 ms (write, the "
                        "default: survives a crash of the server, not of the OS) or once fsynced (fsync)")

    p = cmd("stop", "stop the running container cleanly")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to exit")
    cmd("status", "show the container, its services and RA entities")

    p = cmd("deploy", "apply a recipe (deploy/NAME.yaml, or a path), or install and activate a unit folder/zip")
    p.add_argument("target", metavar="NAME|PATH")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="recipe variable (repeatable)")
    p = cmd("upgrade", "install a new version of SERVICE from PATH and swap it in (the old one drains)")
    p.add_argument("service")
    p.add_argument("path")
    p.add_argument("--link", action="append", metavar="LINK=ENTITY", help="override an RA link")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the old version to become INACTIVE")
    p.add_argument("--migrate", action="store_true",
                   help="move the old version's SBB entities to the new code instead of draining them "
                        "(for long-lived stateful services such as presence)")
    p = cmd("install", "install a deployable unit (folder or zip); its services start INACTIVE")
    p.add_argument("path")
    p.add_argument("--link", action="append", metavar="LINK=ENTITY", help="override an RA link")
    p.add_argument("--activate", action="store_true", help="activate its services too")
    p = cmd("uninstall", "remove an installed unit (by id, name or one of its services)")
    p.add_argument("unit")
    p = cmd("activate", "activate an installed service")
    p.add_argument("service")
    p = cmd("deactivate", "deactivate a service: it drains (STOPPING), then becomes INACTIVE")
    p.add_argument("service")
    cmd("services", "list services")
    cmd("units", "list installed deployable units")
    cmd("recipes", "list the recipes the container knows")

    p = cmd("ra", "RA entities: list, types, create, activate, deactivate, remove, config")
    ra = p.add_subparsers(dest="ra_action", metavar="ACTION")
    ra.add_parser("list", parents=[common], help="list RA entities")
    ra.add_parser("types", parents=[common], help="list installed resource adaptors and their properties")
    q = ra.add_parser("create", parents=[common], help="create an RA entity")
    q.add_argument("name")
    q.add_argument("ra", help="resource adaptor id name/vendor/version (or its name)")
    q.add_argument("--config", action="append", metavar="KEY=VALUE")
    q.add_argument("--activate", action="store_true")
    for action in ("activate", "deactivate", "remove", "config"):
        q = ra.add_parser(action, parents=[common], help=f"{action} an RA entity" if action != "config"
                          else "show an RA entity's configuration")
        q.add_argument("name")

    p = cmd("profiles", "profile tables and profiles")
    pr = p.add_subparsers(dest="profiles_action", metavar="ACTION")
    pr.add_parser("tables", parents=[common], help="list tables and specifications")
    q = pr.add_parser("create-table", parents=[common], help="create a profile table")
    q.add_argument("table")
    q.add_argument("spec")
    q = pr.add_parser("remove-table", parents=[common], help="remove a profile table and its profiles")
    q.add_argument("table")
    for action, text in (("create", "create a profile"), ("set", "change attributes of a profile")):
        q = pr.add_parser(action, parents=[common], help=text)
        q.add_argument("table")
        q.add_argument("profile")
        q.add_argument("values", nargs="*", metavar="ATTRIBUTE=VALUE")
    for action, text in (("get", "show a profile"), ("remove", "remove a profile")):
        q = pr.add_parser(action, parents=[common], help=text)
        q.add_argument("table")
        q.add_argument("profile")
    q = pr.add_parser("list", parents=[common], help="list the profiles of a table")
    q.add_argument("table")

    p = cmd("trace", "tracer levels")
    tr = p.add_subparsers(dest="trace_action", metavar="ACTION")
    q = tr.add_parser("get", parents=[common], help="show tracer levels")
    q.add_argument("component", nargs="?")
    q = tr.add_parser("set", parents=[common], help="set a level (or 'unset')")
    q.add_argument("component", help="e.g. example-counter/slee.examples/1.0/CounterSbb, or * for all")
    q.add_argument("level", help="OFF SEVERE WARNING INFO CONFIG FINE FINER FINEST, or unset")
    q.add_argument("--tracer", default="root")

    p = cmd("alarms", "active alarms")
    al = p.add_subparsers(dest="alarms_action", metavar="ACTION")
    al.add_parser("list", parents=[common], help="list active alarms")
    q = al.add_parser("clear", parents=[common], help="clear an alarm (or --all)")
    q.add_argument("id", nargs="?")
    q.add_argument("--all", action="store_true")

    p = cmd("usage", "usage parameters per service and SBB")
    p.add_argument("service", nargs="?")
    p.add_argument("--reset", action="store_true")
    cmd("events", "list installed event types")

    from slee.cli_presence import register_commands as presence_commands
    from slee.cli_sip import register_commands as users_commands

    users_commands(sub, common)
    presence_commands(sub, [common])

    p = cmd("op", "call a service's management operation (no OP: list them)")
    p.add_argument("service", help="service id, or its name")
    p.add_argument("op", nargs="?", help="operation name")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE", help="operation arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli = Cli(args)
    if hasattr(args, "func"):  # commands contributed by service CLI modules (slee.cli_sip)
        def handler() -> int:
            return args.func(cli)
    elif hasattr(args, "presence_handler"):
        def handler() -> int:
            return args.presence_handler(cli)
    else:
        handler = getattr(cli, "cmd_" + args.command.replace("-", "_"))
    try:
        return handler()
    except CliError as exc:
        print(f"slee: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from slee.management import ApiError

        if isinstance(exc, ApiError):
            print(f"slee: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())

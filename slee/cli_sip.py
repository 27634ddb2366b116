"""``bin/slee users add|remove|list|passwd``: subscribers of the SIP registrar.

Passwords never leave this process: the CLI computes HA1 = H(user:realm:password) for MD5 and
SHA-256 (RFC 3261 §22.4, RFC 8760; realm = the SIP domain) and stores only those through the
management API's generic profile endpoints (table ``subscribers``, profile ``user@domain``).

The lead wires it into ``slee/cli.py`` with ``register_commands(sub, common)``; the parser
sets ``func`` so ``main`` can call ``args.func(cli)`` for the ``users`` command.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from slee.sip import compute_ha1

TABLE = "subscribers"
SETTINGS = ("sip-settings", "default")


def subscriber_values(user: str, domain: str, password: str) -> dict[str, Any]:
    return {"username": user, "realm": domain,
            "ha1_md5": compute_ha1(user, domain, password, "MD5"),
            "ha1_sha256": compute_ha1(user, domain, password, "SHA-256"),
            "addresses": [f"sip:{user}@{domain}"], "enabled": True}


def add_user(client: Any, user: str, domain: str, password: str) -> dict[str, Any]:
    """Create the subscriber ``user@domain`` (``client`` is a ``ManagementClient``)."""
    return client.call("POST", "/v1/profiles/create", {"table": TABLE, "profile": f"{user}@{domain}",
                                                        "values": subscriber_values(user, domain, password)})


def _default_domain(client: Any) -> str | None:
    try:
        r = client.call("GET", "/v1/profiles/get", query={"table": SETTINGS[0], "profile": SETTINGS[1]})
    except Exception:
        return None
    domains = (r.get("values") or {}).get("domains") or []
    return domains[0] if domains else None


def _split(cli: Any, name: str, domain: str | None) -> tuple[str, str]:
    from slee.cli import EXIT_USAGE, CliError

    if "@" in name:
        user, _, dom = name.partition("@")
        return user, dom
    dom = domain or _default_domain(cli.client)
    if not dom:
        raise CliError(f"give the domain: {name}@DOMAIN or --domain DOMAIN (no default domain is configured)",
                       EXIT_USAGE)
    return name, dom


def _password(args: argparse.Namespace) -> str:
    from slee.cli import EXIT_USAGE, CliError

    if args.password is not None:
        return args.password
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise CliError("no password on stdin", EXIT_USAGE)
        return line
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise CliError("the passwords differ", EXIT_USAGE)
    return first


def cmd_users(cli: Any) -> int:
    a = cli.args
    action = a.users_action or "list"
    if action == "list":
        r = cli.get("/v1/profiles", table=TABLE)
        rows = [{"user": n, "aors": v.get("addresses"), "enabled": v.get("enabled")}
                for n, v in r["profiles"].items()]
        from slee.cli import table

        cli.out({"users": rows}, lambda _r: table(rows, ["user", "aors", "enabled"]))
        return 0
    user, domain = _split(cli, a.user, a.domain)
    name = f"{user}@{domain}"
    if action == "add":
        values = subscriber_values(user, domain, _password(a))
        cli.post("/v1/profiles/create", {"table": TABLE, "profile": name, "values": values})
        cli.out({"added": name}, f"added {name}")
    elif action == "passwd":
        values = subscriber_values(user, domain, _password(a))
        cli.post("/v1/profiles/set", {"table": TABLE, "profile": name,
                                      "values": {k: values[k] for k in ("ha1_md5", "ha1_sha256")}})
        cli.out({"changed": name}, f"changed the password of {name}")
    elif action == "remove":
        cli.post("/v1/profiles/remove", {"table": TABLE, "profile": name})
        cli.out({"removed": name}, f"removed {name}")
    return 0


def register_commands(sub: Any, common: argparse.ArgumentParser | None = None) -> None:
    """Add ``users`` to the CLI's subparsers."""
    parents = [common] if common is not None else []
    p = sub.add_parser("users", parents=parents, help="SIP subscribers (digest credentials) of the registrar",
                       description="SIP subscribers: HA1 digests stored in profile table 'subscribers'")
    p.set_defaults(func=cmd_users)
    us = p.add_subparsers(dest="users_action", metavar="ACTION")
    us.add_parser("list", parents=parents, help="list subscribers")
    for action, text in (("add", "add a subscriber"), ("passwd", "change a subscriber's password")):
        q = us.add_parser(action, parents=parents, help=text)
        q.add_argument("user", help="USER or USER@DOMAIN")
        q.add_argument("--domain", help="SIP domain = digest realm (default: the first served domain)")
        q.add_argument("--password", help="the password (default: prompt, or one line on stdin)")
    q = us.add_parser("remove", parents=parents, help="remove a subscriber")
    q.add_argument("user", help="USER or USER@DOMAIN")
    q.add_argument("--domain")


__all__ = ["add_user", "cmd_users", "register_commands", "subscriber_values"]

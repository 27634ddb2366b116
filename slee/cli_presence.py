"""``bin/slee presence ...``: operate the presence service through the management API.

    slee presence show AOR             composed document, publications (ETag, expiry), watchers
    slee presence watchers AOR         who watches AOR, in which state
    slee presence allow OWNER WATCHER  authorization rule (policy ``rules``)
    slee presence block OWNER WATCHER
    slee presence list OWNER           the rules of OWNER

Rules are profiles ``OWNER>WATCHER`` of table ``presence_rules`` (generic profile endpoints).
``show``/``watchers`` read the presentity entity's ``snapshot()`` through
``GET /v1/entities/call`` (see docs/presence.md, "Operations").

Wiring (slee/cli.py): ``register_commands(sub, parents=[common])`` in ``build_parser``; the
"presence" command then runs ``args.presence_handler(cli)`` with the ``Cli`` object.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

RULES_TABLE = "presence_rules"
SERVICE = "presence"


def normalise_aor(text: str, default_domain: str | None = None) -> str:
    """``alice`` / ``alice@example.com`` / ``sip:alice@example.com`` -> ``sip:alice@example.com``."""
    value = text.strip().strip("<>")
    if ":" not in value.split("@", 1)[0]:
        value = f"sip:{value}"
    if "@" not in value and default_domain:
        value = f"{value}@{default_domain}"
    scheme, _, rest = value.partition(":")
    user, at, host = rest.rpartition("@")
    return f"{'sip' if scheme.lower() in ('sip', 'sips', 'pres') else scheme.lower()}:{user}{at}{host.lower()}"


def register_commands(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add ``presence`` and its actions to the ``slee`` parser."""
    p = subparsers.add_parser("presence", help="inspect presentities and manage watcher authorization",
                              description=__doc__.split("\n\n")[0], parents=list(parents))
    domain_help = "domain for bare user names (alice -> sip:alice@DOMAIN)"
    p.add_argument("--domain", default=None, help=domain_help)
    acts = p.add_subparsers(dest="presence_action", metavar="ACTION", required=True)
    parents = [*parents, _domain_parent(domain_help)]  # --domain before or after the action
    for name, text in (("show", "composed document, publications and watchers of AOR"),
                       ("watchers", "watchers of AOR and their subscription state")):
        q = acts.add_parser(name, help=text, parents=list(parents))
        q.add_argument("aor")
    for name, text in (("allow", "let WATCHER see OWNER's presence"), ("block", "refuse WATCHER (polite blocking)")):
        q = acts.add_parser(name, help=text, parents=list(parents))
        q.add_argument("owner")
        q.add_argument("watcher")
    q = acts.add_parser("list", help="authorization rules of OWNER", parents=list(parents))
    q.add_argument("owner")
    q = acts.add_parser("remove", help="forget the rule for OWNER and WATCHER (back to pending)",
                        parents=list(parents))
    q.add_argument("owner")
    q.add_argument("watcher")
    p.set_defaults(presence_handler=run)
    return p


def _domain_parent(text: str) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--domain", default=argparse.SUPPRESS, help=text)
    return parent


def run(cli: Any) -> int:
    """Execute the parsed ``presence`` command with the CLI's management helpers."""
    a = cli.args
    domain = getattr(a, "domain", None)
    action = a.presence_action
    if action in ("show", "watchers"):
        aor = normalise_aor(a.aor, domain)
        result = cli.post("/v1/services/op", {"service": SERVICE, "op": action, "args": {"aor": aor}})
        if action == "show":
            cli.out(result, lambda r: _show(r) if r.get("known") else f"{aor}: no presence state (nobody "
                                                                       "subscribed, published or registered)")
        else:
            cli.out(result, _watchers)
        return 0
    owner = normalise_aor(a.owner, domain)
    if action == "list":
        r = cli.get("/v1/profiles", table=RULES_TABLE)
        rows = [dict(v, profile=n) for n, v in r["profiles"].items() if v.get("owner") == owner]
        cli.out(rows, lambda rows: _table(rows, ["watcher", "decision"]) if rows else f"no rules for {owner}")
        return 0
    watcher = normalise_aor(a.watcher, domain)
    name = f"{owner}>{watcher}"
    if action == "remove":
        cli.out(cli.post("/v1/profiles/remove", {"table": RULES_TABLE, "profile": name}),
                lambda r: f"removed rule {name}")
        return 0
    values = {"owner": owner, "watcher": watcher, "decision": action}
    existing = cli.get("/v1/profiles", table=RULES_TABLE)["profiles"]
    verb = "set" if name in existing else "create"
    r = cli.post(f"/v1/profiles/{verb}", {"table": RULES_TABLE, "profile": name, "values": values})
    cli.out(r, lambda r: f"{watcher} {'may watch' if action == 'allow' else 'is blocked from'} {owner}")
    return 0


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _watchers(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no watchers"
    return _table(rows, ["watcher", "package", "state", "expires", "cseq", "dialog"])


def _show(s: dict[str, Any]) -> str:
    out = [f"{s['aor']}  registered={'yes' if s['registered'] else 'no'}", "", s["document"].rstrip(), ""]
    pubs = s.get("publications") or []
    out.append(_table(pubs, ["etag", "expires"]) if pubs else "no publications")
    out.append("")
    out.append(_watchers(s.get("watchers") or []))
    return "\n".join(out)

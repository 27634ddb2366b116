"""Authorization rules (policy ``rules``): who may watch whom, in a profile table.

One profile per (owner, watcher) pair, named ``OWNER>WATCHER`` with both as AORs, so the CLI
can create, change and remove single rules with the generic profile API.
"""

from __future__ import annotations

from slee import ProfileAttribute, ProfileSpec, ProfileSpecId

RULES_SPEC_ID = ProfileSpecId("PresenceRule", "slee.presence", "1.0")
DECISIONS = ("allow", "block")


class PresenceRuleSpec(ProfileSpec):
    """``decision`` is ``allow`` or ``block`` for ``watcher`` watching ``owner``."""

    spec_id = RULES_SPEC_ID
    owner = ProfileAttribute(str, indexed=True, description="presentity AOR (sip:alice@example.com)")
    watcher = ProfileAttribute(str, indexed=True, description="watcher AOR")
    decision = ProfileAttribute(str, default="allow", description="allow | block")


def rule_name(owner: str, watcher: str) -> str:
    return f"{owner}>{watcher}"


def decide(table: object | None, owner: str, watcher: str) -> str:
    """``allow``, ``block`` or ``pending`` (no rule yet). The owner always sees itself."""
    if owner == watcher:
        return "allow"
    if table is None:
        return "pending"
    values = table.get(rule_name(owner, watcher))  # type: ignore[attr-defined]
    if not values:
        return "pending"
    decision = values.get("decision")
    return decision if decision in DECISIONS else "pending"


SETTINGS_SPEC_ID = ProfileSpecId("PresenceSettings", "slee.presence", "1.0")


class PresenceSettingsSpec(ProfileSpec):
    """Run-time overrides of the service config (profile ``default`` of ``presence-settings``):
    recipes and ``bin/slee profiles set presence-settings default authorization=rules``."""

    spec_id = SETTINGS_SPEC_ID
    authorization = ProfileAttribute(str, description="open | rules")
    blocked_mode = ProfileAttribute(str, description="terminate | neutral")
    close_publications_on_deregister = ProfileAttribute(bool, description="log off closes publications")
    default_expires = ProfileAttribute(int, description="SUBSCRIBE Expires when absent")
    min_expires = ProfileAttribute(int, description="423 below this")
    max_expires = ProfileAttribute(int, description="longer subscriptions are shortened")
    publish_default_expires = ProfileAttribute(int, description="PUBLISH Expires when absent")

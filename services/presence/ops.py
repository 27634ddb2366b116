"""Management operations of the presence service (``bin/slee presence show|watchers``)."""

from __future__ import annotations

from typing import Any

from slee.events import Address


def _presentity(ctx: Any, aor: str) -> Any:
    """The presentity's root entity: its convergence name is its AOR (select_presentity)."""
    return ctx.root_for_address(Address("sip", aor))


def show(ctx: Any, aor: str) -> dict[str, Any]:
    """The composed document, live publications and watchers of a presentity."""
    entity = _presentity(ctx, aor)
    if entity is None:
        return {"aor": aor, "registered": None, "document": "", "publications": [], "watchers": [],
                "known": False}
    return {**ctx.local_object(entity).snapshot(), "known": True}


def watchers(ctx: Any, aor: str) -> list[dict[str, Any]]:
    """Who watches a presentity, with each subscription's state."""
    return show(ctx, aor)["watchers"]

"""Service configuration: a dataclass built once from the service's ``config`` mapping."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

PIDF = "application/pidf+xml"
WATCHERINFO = "application/watcherinfo+xml"
PACKAGES = {"presence": PIDF, "presence.winfo": WATCHERINFO}


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """Knobs of the presence service (see docs/presence.md, "Configuration")."""

    default_expires: int = 3600  # RFC 6665 §7.2 / RFC 3856 §6.4: 3600 when Expires is absent
    min_expires: int = 60  # below: 423 Interval Too Brief with Min-Expires (RFC 6665 §4.2.1.1)
    max_expires: int = 86400  # longer requests are shortened in the 200's Expires
    publish_default_expires: int = 3600  # RFC 3903 §6: pjsua2 sends no Expires
    publish_min_expires: int = 60
    publish_max_expires: int = 86400
    close_publications_on_deregister: bool = True  # the seed's demo: log off -> offline
    authorization: str = "open"  # "open" | "rules"
    blocked_mode: str = "terminate"  # "terminate" (polite: terminated;reason=rejected) | "neutral"
    rules_table: str = "presence_rules"
    max_body: int = 65536  # bytes of PIDF accepted in one PUBLISH
    # Digest authentication of PUBLISH and initial SUBSCRIBE from local users (docs/presence.md,
    # "Authentication"): "registrar" follows the registrar's sip-settings ``auth``; "on" | "off".
    authentication: str = "registrar"

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> PresenceConfig:
        """Unknown keys are ignored (other versions may add some); types are coerced."""
        data = data or {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data and data[f.name] is not None:
                default = f.default
                value = data[f.name]
                if isinstance(default, bool):
                    value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
                else:
                    value = str(value)
                kwargs[f.name] = value
        cfg = cls(**kwargs)
        if cfg.authorization not in ("open", "rules"):
            raise ValueError(f"authorization must be 'open' or 'rules', not {cfg.authorization!r}")
        if cfg.authentication not in ("registrar", "on", "off"):
            raise ValueError(f"authentication must be 'registrar', 'on' or 'off', not {cfg.authentication!r}")
        if cfg.blocked_mode not in ("terminate", "neutral"):
            raise ValueError(f"blocked_mode must be 'terminate' or 'neutral', not {cfg.blocked_mode!r}")
        return cfg

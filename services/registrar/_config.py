"""The registrar's configuration, read once from the service's recipe entries."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from slee.settings import SettingsCache


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    default_expires: int = 3600  # RFC 3261 §10.3 step 7: when the UA asks for none
    max_expires: int = 7200  # longer requests are shortened to this
    min_expires: int = 60  # shorter (non-zero) requests get 423 Interval Too Brief
    max_contacts: int = 32  # bindings per AOR; more get 403
    domains: tuple[str, ...] = ()  # served domains ('' / empty: any)
    auth: bool = False  # digest authentication of REGISTER (RFC 3261 §22)
    subscribers_table: str = "subscribers"
    nonce_lifetime: float = 300.0
    auth_failures: int = 5  # failed attempts per source IP ...
    auth_window: float = 60.0  # ... within this many seconds, then refused for the window
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # challenges offered, in this order

    @classmethod
    def from_service(cls, entries: dict[str, Any]) -> RegistrarConfig:
        """The config for these recipe/profile entries; the same entries give the same
        (immutable) config without parsing them again: REGISTER asks on every request."""
        return _BY_ENTRIES.get(entries)

    @classmethod
    def _parse(cls, entries: dict[str, Any]) -> RegistrarConfig:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in entries.items():
            name = key.replace("-", "_")
            if name not in known:
                continue
            values[name] = value
        if "domains" in values:
            values["domains"] = _domains(values["domains"])
        if "auth_algorithms" in values:
            values["auth_algorithms"] = _algorithms(values["auth_algorithms"])
        if "auth" in values:
            values["auth"] = _flag(values["auth"])
        for name in ("default_expires", "max_expires", "min_expires", "max_contacts", "auth_failures"):
            if name in values:
                values[name] = int(values[name])
        for name in ("nonce_lifetime", "auth_window"):
            if name in values:
                values[name] = float(values[name])
        cfg = cls(**values)
        if not 0 < cfg.min_expires <= cfg.default_expires <= cfg.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires "
                             f"(got {cfg.min_expires}, {cfg.default_expires}, {cfg.max_expires})")
        return cfg


_BY_ENTRIES: SettingsCache[RegistrarConfig] = SettingsCache(RegistrarConfig._parse)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "on", "yes", "true", "digest")
    return bool(value)


def _domains(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(d.strip().lower() for d in value or () if d and d.strip())


def _algorithms(value: Any) -> tuple[str, ...]:
    """``"MD5"`` or ``"SHA-256,MD5"``: the digest algorithms to offer (RFC 8760 §2.4 order)."""
    if isinstance(value, str):
        value = value.split(",")
    out = tuple(a.strip().upper() for a in value or () if a and a.strip())
    unknown = set(out) - {"MD5", "SHA-256"}
    if unknown:
        raise ValueError(f"unsupported digest algorithm(s): {', '.join(sorted(unknown))}")
    return out or ("SHA-256", "MD5")

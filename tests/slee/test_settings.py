"""SettingsCache: services parse their settings once per distinct entries."""

from __future__ import annotations

from slee.settings import SettingsCache


def test_the_same_entries_give_the_same_object_and_a_change_is_seen_at_once():
    parsed = []
    cache = SettingsCache(lambda entries: parsed.append(dict(entries)) or dict(entries), size=2)
    first = cache.get({"domains": ["a.test"], "auth": "off"})
    assert cache.get({"auth": "off", "domains": ["a.test"]}) is first  # order does not matter
    changed = cache.get({"domains": ["a.test"], "auth": "on"})
    assert changed == {"domains": ["a.test"], "auth": "on"} and len(parsed) == 2
    cache.get({"x": 1})
    cache.get({"y": 2})  # past size: it starts over
    assert len(cache._by_entries) <= 2
    cache.get({"map": {"k": "v"}})
    cache.get({"map": {"k": "v"}})  # unhashable: parsed every time, never kept
    assert parsed[-2:] == [{"map": {"k": "v"}}, {"map": {"k": "v"}}]

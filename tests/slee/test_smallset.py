"""SmallSet: set semantics on a list (entities' attachments, activities' names and timers)."""

from __future__ import annotations

import sys

from slee._smallset import SmallSet


def test_set_operations_keep_one_copy_and_order() -> None:
    items = SmallSet()
    items.add("a")
    items.add("b")
    items.add("a")
    assert items == ["a", "b"] and "a" in items and "c" not in items
    items.discard("c")  # absent: no error, like set.discard
    items.discard("a")
    assert items == ["b"]
    items.update(["b", "c", "d", "c"])
    assert items == ["b", "c", "d"]
    items.clear()
    assert not items


def test_smaller_than_a_set_for_the_usual_one_or_two_items() -> None:
    assert sys.getsizeof(SmallSet(("ac-1",))) < sys.getsizeof({"ac-1"}) / 2
    assert sys.getsizeof(SmallSet(("ac-1", "ac-2"))) < sys.getsizeof({"ac-1", "ac-2"}) / 2

"""Two versions of one unit are loaded side by side, each under its own module namespace."""

from __future__ import annotations

import sys

from slee import DeployableUnitId
from slee.deploy import namespace_name

from .conftest import write_unit


def test_v1_and_v2_coexist_with_separate_modules(manager, tmp_path):
    v1 = manager.install(write_unit(tmp_path, version="1.0", tag="one"))
    v2 = manager.install(write_unit(tmp_path, version="2.0", tag="two"))
    services = manager.container.services
    cls1 = services[v1.services[0]].root.cls
    cls2 = services[v2.services[0]].root.cls
    assert cls1 is not cls2
    assert cls1.__module__ != cls2.__module__
    # each version's relative import found its own sibling module
    helpers1 = sys.modules[f"{v1.namespace.package}.helpers"]
    helpers2 = sys.modules[f"{v2.namespace.package}.helpers"]
    assert (helpers1.TAG, helpers2.TAG) == ("one", "two")
    assert sys.modules[cls1.__module__].TAG == "one"
    assert sys.modules[cls2.__module__].TAG == "two"
    assert v1.namespace.owns(cls1) and not v1.namespace.owns(cls2)


def test_uninstall_unloads_only_that_version(manager, tmp_path):
    v1 = manager.install(write_unit(tmp_path, version="1.0", tag="one"))
    v2 = manager.install(write_unit(tmp_path, version="2.0", tag="two"))
    manager.uninstall(str(v1.id))
    assert not [m for m in sys.modules if m.startswith(v1.namespace.package)]
    assert f"{v2.namespace.package}.helpers" in sys.modules
    assert [str(s) for s in manager.container.services] == ["demo/test/2.0"]


def test_reinstall_after_uninstall_sees_changed_code(manager, tmp_path):
    folder = write_unit(tmp_path, tag="before")
    unit = manager.install(folder)
    manager.uninstall(str(unit.id))
    (folder / "helpers.py").write_text("TAG = 'after'\n")
    unit = manager.install(folder)
    assert sys.modules[f"{unit.namespace.package}.helpers"].TAG == "after"


def test_namespace_names_are_identifiers():
    name = namespace_name(DeployableUnitId("example-counter", "slee.examples", "1.0-rc.1"))
    assert name == "slee_du.example_counter__slee_examples__1_0_rc_1"
    assert all(part.isidentifier() for part in name.split("."))

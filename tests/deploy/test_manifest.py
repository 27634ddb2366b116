"""A bad unit is refused before anything changes, with the file, the line and the reason."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from slee.deploy import DeployError, read_manifest
from slee.deploy._namespace import ROOT

from .conftest import SBB_CODE, write_unit


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _refused(manager, folder: Path) -> DeployError:
    before_services = dict(manager.container.services)
    before_events = {t.id for t in manager.container.event_types.all()}
    before_modules = {m for m in sys.modules if m.startswith(ROOT + ".")}
    with pytest.raises(DeployError) as info:
        manager.install(folder)
    assert manager.container.services == before_services
    assert {t.id for t in manager.container.event_types.all()} == before_events
    assert {m for m in sys.modules if m.startswith(ROOT + ".")} == before_modules
    assert manager.units == {} or all(u.manifest.location != str(folder) for u in manager.units.values())
    return info.value


def test_good_unit_installs_inactive(manager, tmp_path):
    unit = manager.install(write_unit(tmp_path))
    service = manager.container.services[unit.services[0]]
    assert str(service.id) == "demo/test/1.0"
    assert service.state.value == "INACTIVE"
    assert str(service.root.id) == "CounterSbb/test/1.0"
    assert service.ra_links == {"datagram": "dgram"}


def test_yaml_syntax_error_names_the_line(manager, tmp_path):
    folder = write_unit(tmp_path, manifest='name: demo\nvendor: test\nversion: "1.0"\nservices:\n  - name: [demo\n')
    err = _refused(manager, folder)
    assert err.file == str(folder / "deployable-unit.yaml")
    assert err.line is not None and err.line >= 5
    assert "YAML syntax error" in err.reason
    assert str(err).startswith(f"{folder / 'deployable-unit.yaml'}:{err.line}: ")


def test_unknown_key_names_the_line(manager, tmp_path):
    folder = write_unit(tmp_path, extra="servicez: []\n")
    err = _refused(manager, folder)
    assert err.line == _line_of(folder / "deployable-unit.yaml", "servicez")
    assert "unknown key 'servicez'" in err.reason


def test_unknown_event_type_points_at_the_handler(manager, tmp_path):
    code = SBB_CODE.replace("from slee.ra.datagram import DATAGRAM_RECEIVED, FLOW_STARTED",
                            "from slee import EventTypeId\nfrom slee.ra.datagram import FLOW_STARTED\n"
                            "DATAGRAM_RECEIVED = EventTypeId('no.Such', 'nobody', '9')")
    folder = write_unit(tmp_path, code=code)
    err = _refused(manager, folder)
    assert err.file == str(folder / "sbb.py")
    assert err.line == _line_of(folder / "sbb.py", "@event_handler(DATAGRAM_RECEIVED)")
    assert "no.Such/nobody/9" in err.reason and "not installed" in err.reason


def test_missing_module_points_at_the_manifest_line(manager, tmp_path):
    folder = write_unit(tmp_path)
    (folder / "deployable-unit.yaml").write_text(
        (folder / "deployable-unit.yaml").read_text().replace("sbb:CounterSbb", "nosuch:CounterSbb"))
    err = _refused(manager, folder)
    assert err.line == _line_of(folder / "deployable-unit.yaml", "root-sbb")
    assert "no module 'nosuch'" in err.reason


def test_missing_class_points_at_the_manifest_line(manager, tmp_path):
    folder = write_unit(tmp_path)
    (folder / "deployable-unit.yaml").write_text(
        (folder / "deployable-unit.yaml").read_text().replace("sbb:CounterSbb", "sbb:NoSuchSbb"))
    err = _refused(manager, folder)
    assert err.line == _line_of(folder / "deployable-unit.yaml", "root-sbb")
    assert "has no class 'NoSuchSbb'" in err.reason


def test_handler_with_wrong_signature_points_at_the_handler(manager, tmp_path):
    folder = write_unit(tmp_path, code=SBB_CODE.replace("def on_datagram(self, event, aci)",
                                                       "def on_datagram(self, event)"))
    err = _refused(manager, folder)
    assert err.file == str(folder / "sbb.py")
    assert err.line == _line_of(folder / "sbb.py", "@event_handler(DATAGRAM_RECEIVED)")
    assert "must take (self, event, aci)" in err.reason


def test_syntax_error_in_code_points_at_the_code(manager, tmp_path):
    folder = write_unit(tmp_path, code=SBB_CODE + "\ndef broken(:\n")
    err = _refused(manager, folder)
    assert err.file == str(folder / "sbb.py")
    assert err.line == _line_of(folder / "sbb.py", "def broken(")


def test_dangling_ra_link_is_refused(manager, tmp_path):
    folder = write_unit(tmp_path)
    path = folder / "deployable-unit.yaml"
    path.write_text(path.read_text().replace("datagram: dgram", "datagram: nowhere"))
    err = _refused(manager, folder)
    assert err.line == _line_of(path, "datagram: nowhere")
    assert "RA entity 'nowhere'" in err.reason and "does not exist" in err.reason


def test_unknown_dependency_is_refused(manager, tmp_path):
    folder = write_unit(tmp_path)
    path = folder / "deployable-unit.yaml"
    path.write_text(path.read_text().replace("depends-on:\n", "depends-on:\n  units: [base/test/1.0]\n"))
    err = _refused(manager, folder)
    assert err.line == _line_of(path, "base/test/1.0")
    assert "unit base/test/1.0, which is not installed" in err.reason


def test_unknown_ra_type_dependency_is_refused(manager, tmp_path):
    folder = write_unit(tmp_path)
    path = folder / "deployable-unit.yaml"
    path.write_text(path.read_text().replace("[datagram/slee/1.0]", "[sip/slee/9.9]"))
    err = _refused(manager, folder)
    assert err.line == _line_of(path, "sip/slee/9.9")
    assert "RA type sip/slee/9.9" in err.reason


def test_version_clash_is_refused(manager, tmp_path):
    manager.install(write_unit(tmp_path / "a"))
    folder = write_unit(tmp_path / "b")
    err = _refused(manager, folder)
    assert err.line == _line_of(folder / "deployable-unit.yaml", "version:")
    assert "already installed (version clash)" in err.reason
    assert len(manager.units) == 1


def test_event_type_defined_twice_is_a_clash(manager, tmp_path):
    extra = "event-types:\n  - id: demo.Tick/test/1.0\n    class: helpers:Tick\n"
    a = write_unit(tmp_path / "a", extra=extra)
    (a / "helpers.py").write_text("TAG = 'v1'\nclass Tick:\n    pass\n")
    manager.install(a)
    assert manager.container.event_types.get(__import__("slee").EventTypeId("demo.Tick", "test", "1.0")) is not None
    b = write_unit(tmp_path / "b", name="other", extra=extra)
    (b / "helpers.py").write_text("TAG = 'v1'\nclass Tick:\n    pass\n")
    err = _refused(manager, b)
    assert err.line == _line_of(b / "deployable-unit.yaml", "- id: demo.Tick")
    assert "already installed by demo/test/1.0" in err.reason


def test_root_sbb_without_initial_event_is_refused(manager, tmp_path):
    folder = write_unit(tmp_path, code=SBB_CODE.replace("initial=True, ", ""))
    err = _refused(manager, folder)
    assert err.file == str(folder / "sbb.py")
    assert "declares no initial event" in err.reason


def test_zip_unit_reads_and_installs(manager, tmp_path):
    import shutil

    folder = write_unit(tmp_path / "src")
    archive = Path(shutil.make_archive(str(tmp_path / "demo"), "zip", folder.parent, folder.name))
    m = read_manifest(archive)
    assert str(m.id) == "demo/test/1.0"
    unit = manager.install(archive)
    cls = manager.container.services[unit.services[0]].root.cls
    assert cls.__module__.startswith(unit.namespace.package)
    assert ".zip" in sys.modules[cls.__module__].__file__

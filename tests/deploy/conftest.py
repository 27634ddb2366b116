"""Helpers for the deployment tests: write small deployable units into a temp folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slee.container import Container
from slee.deploy import DeploymentManager
from slee.ra.datagram import DatagramResourceAdaptor

SBB_CODE = '''\
from slee import CmpField, Sbb, event_handler
from slee.ra.datagram import DATAGRAM_RECEIVED, FLOW_STARTED

from .helpers import TAG


class CounterSbb(Sbb):
    count = CmpField(int, default=0)

    @event_handler(FLOW_STARTED, initial=True, select=("activity_context",))
    def on_start(self, event, aci):
        self.count += 1

    @event_handler(DATAGRAM_RECEIVED)
    def on_datagram(self, event, aci):
        self.count += 1
'''


def write_unit(root: Path, *, name: str = "demo", version: str = "1.0", manifest: str | None = None,
               code: str = SBB_CODE, tag: str = "v1", extra: str = "") -> Path:
    """A unit folder: manifest, sbb.py (relative import) and helpers.py (a version tag)."""
    folder = root / f"{name}-{version}"
    folder.mkdir(parents=True)
    if manifest is None:
        manifest = f"""\
            name: {name}
            vendor: test
            version: "{version}"
            depends-on:
              ra-types: [datagram/slee/1.0]
            services:
              - name: {name}
                root-sbb: sbb:CounterSbb
            ra-links:
              datagram: dgram
            """
    (folder / "deployable-unit.yaml").write_text(textwrap.dedent(manifest) + extra)
    (folder / "sbb.py").write_text(code)
    (folder / "helpers.py").write_text(f"TAG = {tag!r}\n")
    return folder


@pytest.fixture
def container() -> Container:
    c = Container()
    c.install_ra(DatagramResourceAdaptor)
    c.create_ra_entity("dgram", DatagramResourceAdaptor.ra_id, {})
    return c


@pytest.fixture
def manager(container: Container, tmp_path: Path):
    m = DeploymentManager(container, units_dir=tmp_path / "units-copy")
    yield m
    for unit in list(m.units.values()):
        unit.namespace.unload()

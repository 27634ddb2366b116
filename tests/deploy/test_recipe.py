"""Recipes: variables, validation with line numbers, and idempotency."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from slee.container import Container
from slee.deploy import DeployError, DeploymentManager, read_recipe
from slee.ra.datagram import DatagramResourceAdaptor

from .conftest import write_unit


def _recipe(tmp_path, body: str):
    deploy = tmp_path / "deploy"
    deploy.mkdir(exist_ok=True)
    path = deploy / "demo.yaml"
    path.write_text(textwrap.dedent(body))
    return path


RECIPE = """\
    description: demo
    ra-entities:
      - name: dgram
        ra: datagram/slee/1.0
        config:
          host: ${host:-127.0.0.1}
          port: ${port}
          idle_timeout: 30
    units:
      - units/demo-1.0
    activate:
      - demo
    """


@pytest.fixture
def fresh(tmp_path):
    c = Container()
    c.install_ra(DatagramResourceAdaptor)
    m = DeploymentManager(c, recipes_dir=tmp_path / "deploy", variables={"port": "0"})
    write_unit(tmp_path / "units")
    yield m
    for unit in list(m.units.values()):
        unit.namespace.unload()


def test_recipe_is_idempotent(fresh, tmp_path):
    _recipe(tmp_path, RECIPE)

    async def run():
        await fresh.container.start()
        first = await fresh.deploy("demo")
        lines: list[str] = []
        second = await fresh.deploy("demo", progress=lines.append)
        await fresh.container.stop()
        return first, second, lines

    first, second, lines = asyncio.run(run())
    assert first.changed == ["created RA entity dgram (datagram/slee/1.0)", "activated RA entity dgram",
                             "installed unit demo/test/1.0", "activated service demo/test/1.0"]
    assert second.changed == []
    assert second.unchanged == ["RA entity dgram", "unit demo/test/1.0", "service demo/test/1.0 ACTIVE"]
    assert lines[-1] == "nothing to do: demo is already deployed"
    assert fresh.container.ra_entities["dgram"].config["idle_timeout"] == 30.0


def test_variables_are_substituted_and_missing_ones_named(tmp_path):
    path = _recipe(tmp_path, RECIPE)
    write_unit(tmp_path / "units")
    recipe = read_recipe(path, {"port": "5070"})
    assert recipe.ra_entities[0].config == {"host": "127.0.0.1", "port": "5070", "idle_timeout": 30}
    with pytest.raises(DeployError) as info:
        read_recipe(path, {})
    assert info.value.line == 7 and "${port} is not set" in info.value.reason


def test_missing_unit_path_names_the_line(tmp_path):
    path = _recipe(tmp_path, RECIPE.replace("units/demo-1.0", "units/nothere"))
    with pytest.raises(DeployError) as info:
        read_recipe(path, {"port": "1"})
    assert info.value.line == 10 and "not found" in info.value.reason


def test_bad_ra_config_is_refused_before_any_change(fresh, tmp_path):
    _recipe(tmp_path, RECIPE.replace("idle_timeout: 30", "idle_timeout: 30\n          colour: red"))
    with pytest.raises(DeployError, match="no configuration property colour"):
        asyncio.run(fresh.deploy("demo"))
    assert fresh.container.ra_entities == {} and fresh.units == {}

"""Per-version module namespaces: v1 and v2 of one unit live side by side in one process.

Each installed unit version gets a package ``slee_du.<name>__<version>`` whose search path
is the unit folder (or ``archive.zip/folder``; zipimport handles that form). The manifest's
``module:Class`` references resolve inside that package, so ``counter:CounterSbb`` of v1 is
``slee_du.example_counter__1_0.counter`` and v2's is a different module object. Code inside
a unit imports its siblings relatively (``from .events import Tick``); absolute imports
reach installed libraries (``slee``) only, never another unit's copy by accident.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from slee._ids import DeployableUnitId
from slee.deploy._errors import DeployError
from slee.deploy._manifest import Ref

ROOT = "slee_du"


def namespace_name(unit: DeployableUnitId) -> str:
    """The package name of one unit version (vendor included: two vendors may reuse a name)."""

    def clean(text: str) -> str:
        return re.sub(r"\W", "_", text).strip("_") or "x"

    return f"{ROOT}.{clean(unit.name)}__{clean(unit.vendor)}__{clean(unit.version)}"


class UnitNamespace:
    """The package holding one unit version's modules; ``unload`` forgets all of them."""

    def __init__(self, unit: DeployableUnitId, location: str, manifest_file: str) -> None:
        self.unit = unit
        self.location = location
        self.manifest_file = manifest_file
        base = self.package = namespace_name(unit)
        n = 1
        while self.package in sys.modules:  # another container in this process (tests) has it
            n += 1
            self.package = f"{base}_{n}"
        root = sys.modules.get(ROOT)
        if root is None:
            root = types.ModuleType(ROOT, "Code of installed deployable units, one package per unit version.")
            root.__path__ = []
            root.__spec__ = importlib.machinery.ModuleSpec(ROOT, None, is_package=True)
            sys.modules[ROOT] = root
        spec = importlib.machinery.ModuleSpec(self.package, None, is_package=True)
        spec.submodule_search_locations = [location]
        pkg = importlib.util.module_from_spec(spec)
        pkg.__path__ = [location]
        sys.modules[self.package] = pkg
        setattr(root, self.package.rpartition(".")[2], pkg)

    def resolve(self, ref: Ref, what: str) -> Any:
        """Import ``ref.module`` inside the unit and return ``ref.attr``; errors name file:line."""
        fullname = f"{self.package}.{ref.module}"
        try:
            module = importlib.import_module(fullname)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == fullname or fullname.startswith(exc.name + ".")):
                raise DeployError(self.manifest_file, ref.line,
                                  f"{what} {ref}: no module {ref.module!r} in the unit folder {self.location}") from None
            raise self._import_failed(ref, exc) from None
        except Exception as exc:
            raise self._import_failed(ref, exc) from None
        try:
            return getattr(module, ref.attr)
        except AttributeError:
            raise DeployError(self.manifest_file, ref.line,
                              f"{what} {ref}: module {ref.module!r} has no class {ref.attr!r}") from None

    def _import_failed(self, ref: Ref, exc: BaseException) -> DeployError:
        if isinstance(exc, SyntaxError) and exc.filename:
            return DeployError(exc.filename, exc.lineno, f"syntax error: {exc.msg}")
        frames = traceback.extract_tb(exc.__traceback__)
        inside = [f for f in frames if f.filename.startswith(self.location)]
        if inside:
            frame = inside[-1]
            return DeployError(frame.filename, frame.lineno, f"importing {ref.module} failed: {exc!r}")
        return DeployError(self.manifest_file, ref.line, f"importing {ref.module} failed: {exc!r}")

    def unload(self) -> None:
        prefix = self.package + "."
        for name in [n for n in sys.modules if n == self.package or n.startswith(prefix)]:
            del sys.modules[name]
        root = sys.modules.get(ROOT)
        if root is not None:
            root.__dict__.pop(self.package.rpartition(".")[2], None)
        for key in [k for k in sys.path_importer_cache if str(k).startswith(self.location)]:
            del sys.path_importer_cache[key]
        importlib.invalidate_caches()

    def owns(self, obj: Any) -> bool:
        """Whether a class or function was defined by this unit version's code."""
        module = getattr(obj, "__module__", "") or ""
        return module == self.package or module.startswith(self.package + ".")

    @property
    def path(self) -> Path:
        return Path(self.location)


__all__ = ["ROOT", "UnitNamespace", "namespace_name"]

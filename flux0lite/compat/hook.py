"""``install_as_flux0_client()``: let code that imports ``flux0_client`` get this layer instead.

For programs you cannot edit (the flux0 CLI, scripts written for the SDK). It is an import
hook, a finder on ``sys.meta_path`` that answers for ``flux0_client`` and each of its
submodules with the matching ``flux0lite.compat`` module object (the very same object, so
``isinstance`` checks agree); no file named ``flux0_client`` is ever put on ``sys.path``.
Nothing changes until it is called.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Optional, Sequence

from flux0lite import ConfigError

__all__ = ["install_as_flux0_client", "uninstall_as_flux0_client", "ALIAS", "TARGET"]

ALIAS = "flux0_client"
TARGET = "flux0lite.compat"


def _target_name(fullname: str) -> Optional[str]:
    if fullname == ALIAS:
        return TARGET
    if fullname.startswith(ALIAS + "."):
        return TARGET + fullname[len(ALIAS) :]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self._real_spec: Optional[importlib.machinery.ModuleSpec] = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec on the shared module; give it back its own.
        if self._real_spec is not None:
            module.__spec__ = self._real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        real_name = _target_name(fullname)
        if real_name is None:
            return None
        real = importlib.util.find_spec(real_name)
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(real_name), is_package=real.submodule_search_locations is not None
        )


def _installed() -> Optional[_AliasFinder]:
    return next((f for f in sys.meta_path if isinstance(f, _AliasFinder)), None)


def install_as_flux0_client() -> None:
    """Make ``import flux0_client`` (and ``flux0_client.models...``) resolve to this layer.

    Call it before the code that imports ``flux0_client`` runs. Calling it again does nothing.
    If a real ``flux0_client`` was already imported, this raises ConfigError rather than mix
    the two.
    """
    if _installed() is not None:
        return
    loaded = sys.modules.get(ALIAS)
    if loaded is not None and loaded is not sys.modules.get(TARGET):
        raise ConfigError("a real flux0_client is already imported; install the alias before importing it")
    sys.meta_path.insert(0, _AliasFinder())


def uninstall_as_flux0_client() -> None:
    """Undo :func:`install_as_flux0_client`: remove the finder and the aliased modules."""
    finder = _installed()
    if finder is not None:
        sys.meta_path.remove(finder)
    for name in [n for n in sys.modules if _target_name(n) is not None]:
        del sys.modules[name]

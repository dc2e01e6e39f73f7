"""Import ccxt with its exchange classes loaded on first use, not all at once.

``import ccxt.pro`` runs three package ``__init__`` files (``ccxt``, ``ccxt.async_support``,
``ccxt.pro``) that import every exchange ccxt has, each in its sync, async and pro
flavour: ~330 modules, ~88 MB resident (measured: ``import ccxt.pro`` 109 MB RSS, the
same with only Binance's three modules 55 MB), held for the daemon's whole life although
it talks to one venue.

:func:`install` puts an import finder in front: those three packages then execute their own
``__init__`` source with the ``from <package>.<id> import <id>`` lines taken out, and
``<package>.<id>`` imports that exchange's module the first time it is asked for. Everything
else in the packages (errors, ``Exchange``, ``exchanges``, version, decimal helpers) runs
as written, so ``ccxt.NetworkError``, ``getattr(ccxt.pro, "binance")`` and
``ccxt.exchanges`` read as ever. Nothing is imported by :func:`install` itself (a
``--help`` still loads no ccxt). A ccxt release that spells its ``__init__`` differently
leaves nothing to defer: the packages then import everything, as they always did.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
import types
from typing import Any

PACKAGES = ("ccxt", "ccxt.async_support", "ccxt.pro")
_EXCHANGE_LINE = re.compile(r"^from (?P<pkg>[\w.]+)\.(?P<mod>\w+) import (?P<name>\w+)\s+# noqa: F401\s*$")


class _DeferringPackage(types.ModuleType):
    """A ccxt package whose exchange classes (``_lazy``: name -> module) load on first use."""

    _lazy: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        target = self.__dict__.get("_lazy", {}).get(name)
        if target is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        importlib.import_module(target)  # binds the class through __setattr__
        return self.__dict__[name]

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing ``<package>.<id>`` (here or anywhere) binds the *module* as the
        # package's attribute; the eager __init__ bound the class of that name instead.
        if isinstance(value, types.ModuleType) and self.__dict__.get("_lazy", {}).get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self._lazy})


class _Loader(importlib.abc.Loader):
    """Executes a ccxt package's ``__init__`` without its exchange imports."""

    def __init__(self, name: str, origin: str):
        self.name, self.origin = name, origin

    def exec_module(self, module: types.ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as fh:
            source = fh.read()
        kept, lazy = [], {}
        for line in source.splitlines():
            m = _EXCHANGE_LINE.match(line)
            if m and m["pkg"] == self.name and m["mod"] == m["name"]:  # <id> from <id>
                lazy[m["name"]] = f"{self.name}.{m['mod']}"
            else:
                kept.append(line)
        module.__class__ = _DeferringPackage
        module._lazy = lazy
        exec(compile("\n".join(kept), self.origin, "exec"), module.__dict__)  # noqa: S102


class _Finder(importlib.abc.MetaPathFinder):
    """Finds :data:`PACKAGES` as the path finder does, then loads them with :class:`_Loader`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
            return None  # not the package as we know it: import it as usual
        spec.loader = _Loader(name, spec.origin)
        return spec


def install() -> None:
    """From now on, :data:`PACKAGES` import with their exchanges deferred (idempotent; a
    ccxt imported already stays as it is)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())

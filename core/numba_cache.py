"""Where numba keeps its compiled kernels, keyed by the core's source.

numba invalidates a cached kernel only when *its own* file changes. Our kernels call kernels
in other modules (the MTF step inlines the rating step, the rating step the indicators), so
after an upgrade a cached caller can silently keep a stale callee, with a different state
layout. We therefore key the whole cache by a hash of every source file in ``core/``: any
change to the core gets a fresh sub-folder, and an unchanged core reuses its compiled code.

The folder must be set before the first ``@njit(cache=True)`` decorator of the core runs.
Kernel modules import numba's decorators through :mod:`tandem.core.jit`, which sets the default
folder on first import (:func:`numba_cache_folder`) — so numba itself, ~0.6 s to import, loads
only in processes that use a kernel, never for ``--help`` or a manifest check. The settings
choose another root (``TANDEM_NUMBA_CACHE_DIR``) and a warm-up worker the parent's exact
folder, both before any kernel module is imported.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

_CORE_DIR = Path(__file__).resolve().parent
_folder: Path | None = None  # where numba's cache points, once configured


@cache
def core_source_hash() -> str:
    """Short sha256 over the core's Python sources (path and content, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(_CORE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(_CORE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def default_cache_root() -> Path:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/tandem/numba`` (``~/.cache``)."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tandem" / "numba"


def configure_numba_cache(root: str | os.PathLike[str] | None = None) -> Path:
    """Point numba's cache at ``<root>/core-<source hash>`` and return that folder."""
    folder = Path(root) if root is not None else default_cache_root()
    return use_numba_cache_folder(folder / f"core-{core_source_hash()}")


def use_numba_cache_folder(folder: str | os.PathLike[str]) -> Path:
    """Point numba's cache at exactly ``folder`` (a warm-up worker takes its parent's)."""
    global _folder
    from numba.core import config

    # numba reads CACHE_DIR when a cached dispatcher is created (at decoration time).
    config.CACHE_DIR = str(folder)
    _folder = Path(folder)
    return _folder


def numba_cache_folder() -> Path:
    """The folder numba caches the core's kernels in; the default one unless configured."""
    return _folder if _folder is not None else configure_numba_cache()

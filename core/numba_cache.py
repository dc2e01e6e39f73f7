"""Where numba keeps its compiled kernels, keyed by the core's source.

numba invalidates a cached kernel only when *its own* file changes. Our kernels call kernels
in other modules (the MTF step inlines the rating step, the rating step the indicators), so
after an upgrade a cached caller can silently keep a stale callee, with a different state
layout. We therefore key the whole cache by a hash of every source file in ``core/``: any
change to the core gets a fresh sub-folder, and an unchanged core reuses its compiled code.

``configure_numba_cache`` must run before the first ``@njit(cache=True)`` decorator of the
core executes; ``core/__init__`` calls it on import, and the settings call it again when
``TANDEM_NUMBA_CACHE_DIR`` names another folder (before any kernel module is imported).
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

_CORE_DIR = Path(__file__).resolve().parent


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
    from numba.core import config

    folder = Path(root) if root is not None else default_cache_root()
    target = folder / f"core-{core_source_hash()}"
    # numba reads CACHE_DIR when a cached dispatcher is created (at decoration time).
    config.CACHE_DIR = str(target)
    return target

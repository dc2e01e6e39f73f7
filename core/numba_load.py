"""Load the core's cached kernels without first setting up numba's whole compiler.

Before numba loads a kernel from its cache it calls ``target_context.refresh()``, which
imports and registers every typing and lowering rule numba has (numpy, linear algebra,
random, typed containers, …; with SciPy installed, ``numba.np.arraymath`` imports SciPy
just to probe for BLAS). A *compile* needs all that. A cached kernel is finished machine
code: loading it needs numba's code generator and its runtime (NRT, which allocates
arrays), nothing more. Measured on the 2-core machine, the refresh was 0.35 s of every warm
``tandem-backtest run`` (0.18 s without SciPy): a third of a 10-asset run, and paid again
by every daemon start and sweep worker.

So for the core's own kernels (functions defined in ``tandem.*`` modules) we initialise only
the runtime and load. Nothing else changes:

* a cache miss compiles through numba's pipeline, which refreshes the context itself first
  (``numba.core.compiler.CompilerBase``);
* a kernel compiled in object mode or with lifted loops (none of ours) is reloaded through
  numba's own path, which refreshes first;
* kernels of other libraries (vectorbt, …) load exactly as numba loads them.

A ``parallel=True`` kernel would also need numba's threading layer launched before its
cached code runs; the core has none (:mod:`tandem.core.mtf` says why), and a test keeps it so.

numba's maintainers weighed the same deferral upstream (numba pull request #9806).
"""

from __future__ import annotations

from typing import Any

from numba.core import caching
from numba.core.runtime import rtsys

_numba_load_overload = caching.Cache.load_overload


def _is_ours(cache: caching.Cache) -> bool:
    module = getattr(getattr(cache, "_py_func", None), "__module__", None) or ""
    return module.startswith("tandem.")


def _load_overload(self: caching.Cache, sig: Any, target_context: Any) -> Any:
    if not _is_ours(self):
        return _numba_load_overload(self, sig, target_context)
    rtsys.initialize(target_context)  # NRT: what compiled code calls to allocate
    with self._guard_against_spurious_io_errors():
        result = self._load_overload(sig, target_context)
        if result is not None and (result.objectmode or result.lifted):
            return _numba_load_overload(self, sig, target_context)
        return result
    return None  # numba's guard swallowed a spurious I/O error: compile instead


def install() -> None:
    """Route cache loads of ``tandem.*`` kernels through :func:`_load_overload` (idempotent)."""
    caching.Cache.load_overload = _load_overload

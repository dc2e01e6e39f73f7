"""numba's decorators for the core's kernel modules, with the cache folder set first.

Every kernel module takes ``njit``/``cfunc``/... from here rather than from numba, so that
numba's cache points at the core's folder (:mod:`tandem.core.numba_cache`) before the module's first
``@njit(cache=True)`` runs, and so that importing ``core`` alone (settings, manifest, a
``--help``) never loads numba; and so that a warm process loads the cached kernels without
setting up numba's whole compiler first (:mod:`tandem.core.numba_load`).
"""

from numba import carray, cfunc, njit, prange, types
from tandem.core import numba_load
from tandem.core.numba_cache import numba_cache_folder

numba_cache_folder()
numba_load.install()

__all__ = ["carray", "cfunc", "njit", "prange", "types"]

"""Tandem's shared core: numba kernels, contracts, candle store and fills journal."""

from core.numba_cache import configure_numba_cache

configure_numba_cache()

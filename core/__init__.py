"""Tandem's shared core: numba kernels, contracts, candle store and fills journal.

Importing ``core`` loads nothing heavy: numba comes with the first kernel module
(:mod:`tandem.core.jit` configures its cache folder then).
"""

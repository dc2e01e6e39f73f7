"""Numba input scans for the batch driver (one pass over large arrays, no temporaries)."""

from __future__ import annotations

import numpy as np
from numba import njit

BAD_NONE = 0
BAD_OPEN = 1  # open/high/low not finite where close is present
BAD_PRICE = 2  # a price <= 0 or inf
BAD_SIGNAL = 3  # discrete signal not in {-1, 0, +1, NaN}
BAD_WEIGHT = 4  # portfolio weight < 0 or inf
BAD_WEIGHT_SUM = 5  # row of capped weights sums > 1 + tol


@njit(cache=True)
def scan_bars_nb(o, h, lo, c):
    """First problem in ``n_bars x n_assets`` bars as ``(code, bar, asset)``."""
    n, m = c.shape
    for t in range(n):
        for j in range(m):
            cj = c[t, j]
            if np.isnan(cj):
                continue
            if not (np.isfinite(o[t, j]) and np.isfinite(h[t, j]) and np.isfinite(lo[t, j])):
                return BAD_OPEN, t, j
            # `not (x > 0)` also rejects NaN; inf is caught by the finiteness checks.
            if not (cj > 0.0 and o[t, j] > 0.0 and lo[t, j] > 0.0) or np.isinf(cj):
                return BAD_PRICE, t, j
    return BAD_NONE, -1, -1


@njit(cache=True)
def scan_signals_nb(sig, portfolio, max_weight, tol):
    """First problem in signals (discrete) or target weights (portfolio)."""
    n, m = sig.shape
    for t in range(n):
        total = 0.0
        for j in range(m):
            s = sig[t, j]
            if np.isnan(s):
                continue
            if portfolio:
                if s < 0.0 or np.isinf(s):
                    return BAD_WEIGHT, t, j
                total += min(s, max_weight)
            elif not (s == 1.0 or s == 0.0 or s == -1.0):
                return BAD_SIGNAL, t, j
        if total > 1.0 + tol:
            return BAD_WEIGHT_SUM, t, -1
    return BAD_NONE, -1, -1

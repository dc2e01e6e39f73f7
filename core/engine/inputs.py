"""Validation and coercion of engine inputs (before any fill is produced)."""

from __future__ import annotations

import math

import numpy as np

BAD_NONE = 0
BAD_OPEN = 1  # open/high/low not finite where close is present
BAD_PRICE = 2  # a price <= 0 or inf
BAD_SIGNAL = 3  # discrete signal not in {-1, 0, +1, NaN}
BAD_WEIGHT = 4  # portfolio weight < 0 or inf
BAD_WEIGHT_SUM = 5  # row of capped weights sums > 1 + tol

# Weights may sum to 1 up to float rounding of the producer's normalisation.
WEIGHT_SUM_TOL = 1e-9


def as_matrix(name: str, a: object, shape: tuple[int, ...]) -> np.ndarray:
    """C-contiguous float64 copy-or-view of ``a``, which must have exactly ``shape``."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def _2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(1, -1) if a.ndim == 1 else a


def _first(mask: np.ndarray) -> tuple[int, int] | None:
    """``(bar, asset)`` of the first True cell in row-major order, or None."""
    if mask.size == 0:
        return None
    k = int(np.argmax(mask))  # a flat argmax over a bool array is the first True
    if not mask.flat[k]:
        return None
    t, j = divmod(k, mask.shape[1])
    return t, j


# The scans are NumPy, not numba: a few ms on a year of 100 assets, while two more kernels
# would add ~0.7 s to every cold start. Each first tries a short "all is well" test (the
# daemon scans one small slice per step, where every NumPy call costs ~1 us) and only
# then, if that fails, locates the first problem cell by cell.
# NumPy comparisons with NaN are False, without a warning: `not (x > 0)` also rejects NaN.
def scan_bars(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> tuple[int, int, int]:
    """First problem in ``n_bars x n_assets`` bars as ``(code, bar, asset)`` (row-major
    order; at one cell the open/high/low finiteness is checked before the prices)."""
    if c.size:
        with np.errstate(over="ignore", invalid="ignore"):
            # All bars present and fine: the grand sum is finite only if every price is (an
            # overflow merely sends us the long way), and a NaN fails the minimum's test.
            total = float((o + h + lo + c).sum())
            low = float(np.minimum(np.minimum(c, o), lo).min())
        if math.isfinite(total) and low > 0.0:
            return BAD_NONE, -1, -1
    present = ~np.isnan(c)
    bad_open = present & ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo))
    bad_price = present & ~((np.minimum(np.minimum(c, o), lo) > 0.0) & ~np.isinf(c))
    first = _first(bad_open | bad_price)
    if first is None:
        return BAD_NONE, -1, -1
    return (BAD_OPEN if bad_open[first] else BAD_PRICE), first[0], first[1]


def scan_signals(sig: np.ndarray, portfolio: bool, max_weight: float, tol: float
                 ) -> tuple[int, int, int]:
    """First problem in signals (discrete) or target weights (portfolio): the first bar
    with one, and within it a bad weight before a bad row sum."""
    if sig.size == 0:
        return BAD_NONE, -1, -1
    if not portfolio:
        if ((sig == 0.0) | (np.abs(sig) == 1.0)).all():
            return BAD_NONE, -1, -1
        bad = ~((np.abs(sig) == 1.0) | (sig == 0.0) | np.isnan(sig))
        first = _first(bad)
        return (BAD_NONE, -1, -1) if first is None else (BAD_SIGNAL, first[0], first[1])
    given = ~np.isnan(sig)
    if not given.any():
        return BAD_NONE, -1, -1  # no weights at all: not a rebalance slice
    bad = given & ((sig < 0.0) | np.isinf(sig))
    # Left-to-right running sums (cumsum is sequential), as the engine's own row sum.
    capped = np.where(given, np.minimum(sig, max_weight), 0.0)
    over = capped.cumsum(axis=1)[:, -1] > 1.0 + tol
    rows = bad.any(axis=1) | over
    if not rows.any():
        return BAD_NONE, -1, -1
    t = int(np.argmax(rows))
    if bad[t].any():
        return BAD_WEIGHT, t, int(np.argmax(bad[t]))
    return BAD_WEIGHT_SUM, t, -1


def check_bars(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray) -> None:
    """A bar is present iff its close is not NaN; then all four prices must be finite, > 0."""
    code, t, j = scan_bars(_2d(o), _2d(h), _2d(low), _2d(c))
    if code == BAD_OPEN:
        raise ValueError(f"open/high/low is not finite where close is present (bar {t}, asset {j})")
    if code == BAD_PRICE:
        raise ValueError(f"prices must be finite and > 0 (bar {t}, asset {j})")
    assert code == BAD_NONE


def check_signals(sig: np.ndarray, mode: str, max_weight: float) -> None:
    """Discrete: values in {-1, 0, +1} (NaN = neutral). Portfolio: weights >= 0 whose
    row sum after the ``max_weight`` cap is <= 1."""
    code, t, j = scan_signals(_2d(sig), mode == "portfolio", max_weight, WEIGHT_SUM_TOL)
    if code == BAD_SIGNAL:
        raise ValueError(f"discrete signals must be -1, 0 or +1 (bar {t}, asset {j})")
    if code == BAD_WEIGHT:
        raise ValueError(f"target weights must be >= 0 and finite (bar {t}, asset {j})")
    if code == BAD_WEIGHT_SUM:
        row = _2d(sig)[t]
        total = float(np.nansum(np.minimum(row, max_weight)))
        raise ValueError(
            f"target weights sum to more than 1 (after the max_weight cap) at row {t}: {total}"
        )
    assert code == BAD_NONE

"""Validation and coercion of engine inputs (before any fill is produced)."""

from __future__ import annotations

import numpy as np

# Weights may sum to 1 up to float rounding of the producer's normalisation.
WEIGHT_SUM_TOL = 1e-9


def as_matrix(name: str, a: object, shape: tuple[int, ...]) -> np.ndarray:
    """C-contiguous float64 copy-or-view of ``a``, which must have exactly ``shape``."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def check_bars(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray) -> None:
    """A bar is present iff its close is finite; then open/high/low must be finite too."""
    present = ~np.isnan(c)
    if np.isinf(c).any():
        raise ValueError("close contains inf")
    for name, a in (("open", o), ("high", h), ("low", low)):
        bad = present & ~np.isfinite(a)
        if bad.any():
            idx = tuple(int(x[0]) for x in np.nonzero(bad))
            raise ValueError(f"{name} is not finite where close is present (first at {idx})")
    if (c[present] <= 0).any() or (o[present] <= 0).any() or (low[present] <= 0).any():
        raise ValueError("prices must be > 0")


def check_signals(sig: np.ndarray, mode: str, max_weight: float) -> None:
    """Discrete: values in {-1, 0, +1} (NaN = neutral). Portfolio: weights in [0, 1], rows ≤ 1."""
    if mode == "discrete":
        finite = sig[~np.isnan(sig)]
        if not np.isin(finite, (-1.0, 0.0, 1.0)).all():
            raise ValueError("discrete signals must be -1, 0 or +1")
        return
    if np.isinf(sig).any():
        raise ValueError("target weights contain inf")
    if (sig < 0).any():
        raise ValueError("target weights must be >= 0 (portfolio mode is long-only)")
    capped = np.minimum(sig, max_weight)
    sums = np.nansum(capped, axis=-1)
    if (sums > 1.0 + WEIGHT_SUM_TOL).any():
        where = np.nonzero(np.atleast_1d(sums > 1.0 + WEIGHT_SUM_TOL))[0]
        raise ValueError(
            f"target weights sum to more than 1 (after the max_weight cap) at row {int(where[0])}: "
            f"{float(np.atleast_1d(sums)[where[0]])}"
        )

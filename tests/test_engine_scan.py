"""The engine's NumPy input scans agree with a plain cell-by-cell loop (the rule as written).

``tandem.core.engine.inputs.scan_bars`` / ``scan_signals`` are vectorised (no numba compile at cold
start); the reference below walks the cells in row-major order exactly as the rule reads.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.engine.inputs import (
    BAD_NONE,
    BAD_OPEN,
    BAD_PRICE,
    BAD_SIGNAL,
    BAD_WEIGHT,
    BAD_WEIGHT_SUM,
    scan_bars,
    scan_signals,
)


def ref_scan_bars(o, h, lo, c):  # noqa: ANN001, ANN201
    for t in range(c.shape[0]):
        for j in range(c.shape[1]):
            if math.isnan(c[t, j]):
                continue
            if not all(math.isfinite(x[t, j]) for x in (o, h, lo)):
                return BAD_OPEN, t, j
            if not (c[t, j] > 0 and o[t, j] > 0 and lo[t, j] > 0) or math.isinf(c[t, j]):
                return BAD_PRICE, t, j
    return BAD_NONE, -1, -1


def ref_scan_signals(sig, portfolio, max_weight, tol):  # noqa: ANN001, ANN201
    for t in range(sig.shape[0]):
        total = 0.0
        for j in range(sig.shape[1]):
            s = float(sig[t, j])
            if math.isnan(s):
                continue
            if portfolio:
                if s < 0 or math.isinf(s):
                    return BAD_WEIGHT, t, j
                total += min(s, max_weight)
            elif s not in (-1.0, 0.0, 1.0):
                return BAD_SIGNAL, t, j
        if total > 1.0 + tol:
            return BAD_WEIGHT_SUM, t, -1
    return BAD_NONE, -1, -1


PRICES = st.sampled_from([100.0, 1.0, 0.0, -1.0, math.nan, math.inf, -math.inf, 1e-300])
WEIGHTS = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 0.3333333333333333, math.nan, -0.1,
                           math.inf, 1.0 + 1e-10, 2.0])
SIGNALS = st.sampled_from([-1.0, 0.0, 1.0, -0.0, math.nan, 0.5, 2.0, math.inf])


@st.composite
def grids(draw, values, n_arrays):  # noqa: ANN001, ANN201
    n = draw(st.integers(0, 6))
    m = draw(st.integers(1, 5))
    # Mostly clean cells, so that "no problem" and late problems occur too.
    clean = draw(st.booleans())
    cell = st.just(1.0) if clean else values
    return [
        np.array(draw(st.lists(st.lists(st.one_of(st.just(1.0), cell), min_size=m, max_size=m),
                               min_size=n, max_size=n)), dtype=np.float64).reshape(n, m)
        for _ in range(n_arrays)
    ]


@settings(max_examples=300, deadline=None)
@given(grids(PRICES, 4))
def test_scan_bars_matches_loop(arrs) -> None:  # noqa: ANN001
    o, h, lo, c = arrs
    assert scan_bars(o, h, lo, c) == ref_scan_bars(o, h, lo, c)


@settings(max_examples=300, deadline=None)
@given(grids(SIGNALS, 1))
def test_scan_discrete_signals_matches_loop(arrs) -> None:  # noqa: ANN001
    (sig,) = arrs
    assert scan_signals(sig, False, 1.0, 1e-9) == ref_scan_signals(sig, False, 1.0, 1e-9)


@settings(max_examples=300, deadline=None)
@given(grids(WEIGHTS, 1), st.sampled_from([1.0, 0.3, 0.5]))
def test_scan_weights_matches_loop(arrs, max_weight: float) -> None:  # noqa: ANN001
    (sig,) = arrs
    sig = sig * 0.3  # rows of clean cells (1.0) become 0.3 each: some rows sum over 1
    assert scan_signals(sig, True, max_weight, 1e-9) == ref_scan_signals(sig, True, max_weight,
                                                                         1e-9)


def test_row_sum_is_sequential() -> None:
    """The row sum adds left to right (as the loop); pairwise summation could round the
    other way at the tolerance's edge."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = rng.random((3, 40))
        w = w / w.sum(axis=1, keepdims=True) * (1.0 + rng.choice([0.0, 1e-9, -1e-9, 2e-9], 3))[:, None]
        assert scan_signals(w, True, 1.0, 1e-9) == ref_scan_signals(w, True, 1.0, 1e-9)

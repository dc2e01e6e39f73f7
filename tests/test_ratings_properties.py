"""Hypothesis properties of the rating kernel on generated candles (no data files needed):
stepping == batch bit for bit, no look-ahead, and flat / zero-volume / constant stretches
never give inf or NaN ratings after warm-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.ratings import (
    N_RATING_OUT,
    RATING_WARMUP_BARS,
    RatingState,
    compute_ratings,
    new_rating_state,
    rating_step_nb,
    ratings_nb,
)


def _candles(
    seed: int, n: int, flat_rate: float, zero_vol_rate: float, runs: int
) -> list[np.ndarray]:
    """A random walk with flat bars, zero-volume bars and constant stretches mixed in."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = np.concatenate([[c[0]], c[:-1]])
    h = np.maximum(o, c) * (1 + rng.random(n) * 0.005)
    lo = np.minimum(o, c) * (1 - rng.random(n) * 0.005)
    v = rng.random(n) * 10.0
    flat = rng.random(n) < flat_rate
    o[flat] = h[flat] = lo[flat] = c[flat]
    v[rng.random(n) < zero_vol_rate] = 0.0
    for _ in range(runs):  # constant stretches: price frozen, nothing traded
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(5, 80)))
        o[a:b] = h[a:b] = lo[a:b] = c[a:b] = c[a]
        v[a:b] = 0.0
    return [o, h, lo, c, v]


candle_params = {
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(RATING_WARMUP_BARS + 1, 420),
    "flat_rate": st.sampled_from([0.0, 0.05, 0.5]),
    "zero_vol_rate": st.sampled_from([0.0, 0.1, 1.0]),
    "runs": st.integers(0, 3),
}


@settings(max_examples=20, deadline=None)
@given(**candle_params)
def test_stepping_equals_batch_bit_for_bit(seed, n, flat_rate, zero_vol_rate, runs) -> None:
    o, h, lo, c, v = _candles(seed, n, flat_rate, zero_vol_rate, runs)
    batch = ratings_nb(o, h, lo, c, v, new_rating_state())
    state = new_rating_state()
    out = np.empty(N_RATING_OUT)
    for i in range(n):
        rating_step_nb(state, o[i], h[i], lo[i], c[i], v[i], out)
        np.testing.assert_array_equal(out, batch[i])


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(1, 419), **candle_params)
def test_cutting_the_series_never_changes_earlier_values(
    cut, seed, n, flat_rate, zero_vol_rate, runs
) -> None:
    cols = _candles(seed, n, flat_rate, zero_vol_rate, runs)
    cut = min(cut, n)
    full = ratings_nb(*cols, new_rating_state())
    part = ratings_nb(*[x[:cut] for x in cols], new_rating_state())
    np.testing.assert_array_equal(full[:cut], part)


@settings(max_examples=20, deadline=None)
@given(**candle_params)
def test_ratings_finite_after_warmup(seed, n, flat_rate, zero_vol_rate, runs) -> None:
    out = ratings_nb(*_candles(seed, n, flat_rate, zero_vol_rate, runs), new_rating_state())
    ratings = out[RATING_WARMUP_BARS - 1 :, :3]
    assert np.isfinite(ratings).all()
    assert (np.abs(ratings) <= 1.0).all()
    votes = out[:, 3:]
    assert np.isin(votes[~np.isnan(votes)], (-1.0, 0.0, 1.0)).all()


def test_constant_market_from_the_start() -> None:
    """A market that never moves: every MA equals the price (vote 0 or within rounding),
    oscillators without a range are excluded, ratings stay finite and in [-1, 1]."""
    n = 400
    p = np.full(n, 123.45)
    out = ratings_nb(p, p, p, p, np.zeros(n), new_rating_state())
    assert np.isfinite(out[RATING_WARMUP_BARS - 1 :, :3]).all()
    assert (np.abs(out[RATING_WARMUP_BARS - 1 :, :3]) <= 1).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 300))
def test_checkpoint_anywhere_resumes_identically(seed: int, k: int) -> None:
    o, h, lo, c, v = _candles(seed, 301, 0.05, 0.1, 1)
    ts = np.arange(301, dtype=np.int64) * 60_000
    ref = compute_ratings(
        pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": v})
    )
    rs = RatingState()
    for i in range(k):
        rs.step(ts[i], o[i], h[i], lo[i], c[i], v[i])
    rs = RatingState.from_bytes(rs.to_bytes())
    for i in range(k, 301):
        r = rs.step(ts[i], o[i], h[i], lo[i], c[i], v[i])
    assert r.rating_all == ref["rating_all"].iloc[-1] or (
        np.isnan(r.rating_all) and np.isnan(ref["rating_all"].iloc[-1])
    )

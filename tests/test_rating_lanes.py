"""The rating in lanes (many assets per step) against the scalar kernel, bit for bit.

``ratings_batch_nb`` runs blocks of assets side by side (core.indicators.rating_lanes);
the scalar kernel (``ratings_nb``, what the daemon steps) is itself checked against the
standalone indicators and TA-Lib. Every output and every state slot must be identical:
same arithmetic per asset, lanes or not. The awkward inputs are mixed in on purpose:
assets listed late (leading missing bars), gaps, a delisting (trailing missing bars), flat
and constant stretches, missing and zero volume, states at different bar counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.indicators.rating import _RSI_COUNT
from core.ratings import (
    N_RATING_OUT,
    OUT_ALL,
    OUT_MA,
    OUT_OSC,
    OUT_VOTES,
    VOTE_NAMES,
    new_rating_state,
    new_rating_states,
    ratings_batch_into_nb,
    ratings_batch_nb,
    ratings_nb,
)
from tests.conftest import read_shared_csv
from tests.test_rating_kernel import _mean, reference_votes


def _universe(seed: int, n_bars: int, n_assets: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * (1 + rng.random((n_bars, n_assets)) * 0.005)
    lo = np.minimum(o, c) * (1 - rng.random((n_bars, n_assets)) * 0.005)
    v = rng.random((n_bars, n_assets)) * 100.0
    return [o, h, lo, c, v]


def _awkward(n_bars: int = 700, n_assets: int = 11) -> list[np.ndarray]:
    o, h, lo, c, v = _universe(7, n_bars, n_assets)
    for x in (h, lo, c):
        x[:250, 1] = np.nan  # listed late
        x[-90:, 2] = np.nan  # delisted
    c[300, 3] = np.nan  # one missing bar (close only)
    h[400:410, 4] = np.nan  # a gap
    v[100:160, 5] = np.nan  # volume missing: VWMA restarts
    v[200:260, 6] = 0.0  # nothing traded: VWMA reads NaN
    for x in (o, h, lo, c):
        x[300:380, 7] = 50.0  # frozen price: zero ranges, flat true range
    flat = np.random.default_rng(3).random(n_bars) < 0.3
    h[flat, 8] = lo[flat, 8] = c[flat, 8]  # many flat bars
    for x in (h, lo, c):
        x[:, 9] = np.nan  # never traded
    return [o, h, lo, c, v]


def _scalar(cols: list[np.ndarray], states: np.ndarray) -> np.ndarray:
    """The reference: the scalar kernel asset by asset (states stepped in place)."""
    n_bars, n_assets = cols[0].shape
    out = np.empty((n_bars, n_assets, N_RATING_OUT))
    for a in range(n_assets):
        out[:, a] = ratings_nb(*[np.ascontiguousarray(x[:, a]) for x in cols], states[a])
    return out


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a, b, strict=True)  # NaN == NaN, bit-equal numbers


@pytest.mark.parametrize("lanes", [4, 8, 128])
def test_lanes_equal_the_scalar_kernel_on_awkward_assets(lanes: int) -> None:
    cols = _awkward()
    ref_states = new_rating_states(11)
    ref = _scalar(cols, ref_states)
    states = new_rating_states(11)
    out = np.empty_like(ref)
    ratings_batch_into_nb(*cols, states, out, lanes=lanes)
    _same(out, ref)
    _same(states, ref_states)
    assert np.isnan(out[:250, 1]).all() and not np.isnan(out[250:, 1, 2]).all()
    assert np.isnan(out[-90:, 2]).all() and np.isnan(out[:, 9]).all()


def test_continuing_states_at_different_bar_counts() -> None:
    """A second chunk continues from states whose bar counts differ (the late listing,
    the gaps), so the assets run in several blocks; the result is still the scalar one."""
    cols = _awkward()
    first = [x[:500] for x in cols]
    rest = [x[500:] for x in cols]
    states = new_rating_states(11)
    ratings_batch_nb(*first, states)
    assert len(set(states[:, 0])) > 3  # the bar count is the state's first slot
    ref_states = states.copy()
    ref = _scalar(rest, ref_states)
    out = ratings_batch_nb(*rest, states)
    _same(out, ref)
    _same(states, ref_states)


def test_only_the_ratings_columns_and_a_strided_input() -> None:
    cols = _universe(11, 400, 6)
    ref = _scalar(cols, new_rating_states(6))
    out3 = np.empty((400, 6, 3))
    ratings_batch_into_nb(*[np.asfortranarray(x) for x in cols], new_rating_states(6), out3)
    _same(out3, ref[:, :, :3])


def test_lanes_whose_rsi_counts_disagree_take_the_per_lane_path() -> None:
    """With finite prices every lane of a block has counted the same RSI values; a state
    made otherwise (here by hand) goes lane by lane, still as the scalar kernel does."""
    cols = _universe(5, 300, 5)
    states = new_rating_states(5)
    ratings_batch_nb(*[x[:100] for x in cols], states)
    states[2, _RSI_COUNT] += 5.0
    ref_states = states.copy()
    ref = _scalar([x[100:] for x in cols], ref_states)
    out = ratings_batch_nb(*[x[100:] for x in cols], states)
    _same(out, ref)
    _same(states, ref_states)


def test_bad_output_shapes_are_refused() -> None:
    cols = _universe(1, 50, 3)
    with pytest.raises(ValueError, match="out must be"):
        ratings_batch_into_nb(*cols, new_rating_states(3), np.empty((50, 3, N_RATING_OUT + 1)))
    with pytest.raises(ValueError, match="out must be"):
        ratings_batch_into_nb(*cols, new_rating_states(3), np.empty((50, 2, 3)))
    with pytest.raises(ValueError, match="states"):
        ratings_batch_into_nb(*cols, new_rating_states(2), np.empty((50, 3, 3)))
    with pytest.raises(ValueError, match="must all be"):
        ratings_batch_into_nb(*cols[:4], cols[4][:40], new_rating_states(3), np.empty((50, 3, 3)))
    with pytest.raises(ValueError, match="out must be"):
        ratings_batch_into_nb(*cols, new_rating_states(3), np.empty((50, 3, 3), np.float32))
    with pytest.raises(ValueError, match="lanes"):
        ratings_batch_into_nb(*cols, new_rating_states(3), np.empty((50, 3, 3)), lanes=0)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(1, 320),
    n_assets=st.integers(1, 9),
    hole_rate=st.sampled_from([0.0, 0.02, 0.3]),
    flat_rate=st.sampled_from([0.0, 0.2]),
)
def test_lanes_equal_scalar_on_generated_universes(seed, n_bars, n_assets, hole_rate, flat_rate) -> None:
    cols = _universe(seed, n_bars, n_assets)
    rng = np.random.default_rng(seed)
    holes = rng.random((n_bars, n_assets)) < hole_rate
    cols[3][holes] = np.nan
    flat = rng.random((n_bars, n_assets)) < flat_rate
    cols[1][flat] = cols[2][flat] = cols[3][flat]
    cols[4][rng.random((n_bars, n_assets)) < hole_rate] = np.nan
    ref = _scalar(cols, new_rating_states(n_assets))
    _same(ratings_batch_nb(*cols, new_rating_states(n_assets)), ref)


def test_one_asset_one_bar() -> None:
    out = ratings_batch_nb(*[np.full((1, 1), 1.0) for _ in range(5)], new_rating_states(1))
    ref = ratings_nb(*[np.full(1, 1.0) for _ in range(5)], new_rating_state())
    _same(out[:, 0], ref)


def test_lanes_votes_equal_the_standalone_indicators_on_real_bars(shared_data) -> None:
    """An independent check, not through the scalar kernel: on real candles the lanes'
    votes equal the votes rebuilt in NumPy, rule by rule from RATINGS.md, on the
    standalone indicators (each checked against TA-Lib or a pandas reference)."""
    frames = [read_shared_csv(shared_data, f"binance_{s}-USDT_1h.csv") for s in ("BTC", "ETH", "SOL", "XRP")]
    n = min(len(f) for f in frames)
    cols = [
        np.stack([f[k].to_numpy(np.float64)[-n:] for f in frames], axis=1)
        for k in ("open", "high", "low", "close", "volume")
    ]
    out = ratings_batch_nb(*cols, new_rating_states(len(frames)))
    for a in range(len(frames)):
        ref = reference_votes(*[np.ascontiguousarray(x[:, a]) for x in cols])
        for j, name in enumerate(VOTE_NAMES):
            np.testing.assert_array_equal(out[:, a, OUT_VOTES + j], ref[name], err_msg=name)
        ma = _mean([ref[name] for name in VOTE_NAMES[:15]])
        osc = _mean([ref[name] for name in VOTE_NAMES[15:]])
        np.testing.assert_array_equal(out[:, a, OUT_MA], ma)
        np.testing.assert_array_equal(out[:, a, OUT_OSC], osc)
        both = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
        np.testing.assert_array_equal(out[:, a, OUT_ALL], both)

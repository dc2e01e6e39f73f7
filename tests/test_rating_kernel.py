"""The fused rating kernel against the standalone indicator kernels.

``rating_step_nb`` computes all 26 indicators in one pass with shared rings and fixed
lengths (for speed and compile time); the standalone kernels in ``tandem.core.indicators`` are
the ones checked against TA-Lib and pandas references in ``test_indicators.py``. Here the
votes are rebuilt in NumPy, rule by rule from RATINGS.md, on the standalone kernels'
outputs, and must equal the fused kernel's votes and ratings exactly: same arithmetic,
same bits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tandem.core.indicators import (
    ao_nb,
    bbp_nb,
    cci_nb,
    dmi_nb,
    ema_nb,
    hma_nb,
    ichimoku_nb,
    macd_nb,
    mom_nb,
    rsi_nb,
    sma_nb,
    stoch_nb,
    stochrsi_nb,
    uo_nb,
    vwma_nb,
    wpr_nb,
)
from tandem.core.ratings import (
    OUT_ALL,
    OUT_MA,
    OUT_OSC,
    OUT_VOTES,
    VOTE_NAMES,
    new_rating_state,
    rating_step_nb,
    ratings_nb,
)

from tests.conftest import read_shared_csv


def _prev(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _vote(guard: np.ndarray, bull: np.ndarray, bear: np.ndarray) -> np.ndarray:
    """calcRating: NaN only while the guard is NaN; a NaN value makes the tests false (0)."""
    with np.errstate(invalid="ignore"):
        v = np.where(bull, 1.0, np.where(bear, -1.0, 0.0))
    return np.where(np.isnan(guard), np.nan, v)


def reference_votes(o, h, lo, c, v) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The 26 votes from the standalone kernels, as RATINGS.md states them."""
    votes: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for n in (10, 20, 30, 50, 100, 200):
            votes[f"sma{n}"] = np.where(np.isnan(sma_nb(c, n)), np.nan, np.sign(c - sma_nb(c, n)))
            votes[f"ema{n}"] = np.where(np.isnan(ema_nb(c, n)), np.nan, np.sign(c - ema_nb(c, n)))
        hull = hma_nb(c, 9)
        votes["hma9"] = np.where(np.isnan(hull), np.nan, np.sign(c - hull))
        vw = vwma_nb(c, v, 20)
        votes["vwma20"] = np.where(np.isnan(vw), np.nan, np.sign(c - vw))
        ich = ichimoku_nb(h, lo)
        conv, base, lead2, l1x, l2x = ich[:, 0], ich[:, 1], ich[:, 3], ich[:, 4], ich[:, 5]
        votes["ichimoku"] = _vote(
            lead2,
            (l1x > l2x) & (base > l1x) & (conv > base) & (c > conv),
            (l1x < l2x) & (base < l1x) & (conv < base) & (c < conv),
        )
        r = rsi_nb(c, 14)
        r1 = _prev(r)
        votes["rsi"] = _vote(r1, (r < 30) & (r > r1), (r > 70) & (r < r1))
        k, d = stoch_nb(h, lo, c, 14, 3, 3)
        votes["stoch"] = _vote(
            _prev(d), (k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d)
        )
        cc = cci_nb(c, 20)
        cc1 = _prev(cc)
        votes["cci"] = _vote(cc1, (cc < -100) & (cc > cc1), (cc > 100) & (cc < cc1))
        dmi = dmi_nb(h, lo, c, 14, 14)
        pdi, mdi, adx = dmi[:, 0], dmi[:, 1], dmi[:, 2]
        adx1 = _prev(adx)
        votes["adx"] = _vote(
            adx,
            (adx > 20) & (adx > adx1) & (pdi > mdi),
            (adx > 20) & (adx > adx1) & (pdi < mdi),
        )
        ao = ao_nb(h, lo, 5, 34)
        ao1, ao2 = _prev(ao), _prev(ao, 2)
        votes["ao"] = _vote(
            ao1,
            ((ao > 0) & (ao1 <= 0)) | ((ao > 0) & (ao1 > 0) & (ao > ao1) & (ao2 > ao1)),
            ((ao < 0) & (ao1 >= 0)) | ((ao < 0) & (ao1 < 0) & (ao < ao1) & (ao2 < ao1)),
        )
        mo = mom_nb(c, 10)
        mo1 = _prev(mo)
        votes["mom"] = _vote(mo1, mo > mo1, mo < mo1)
        m, sig = macd_nb(c, 12, 26, 9)
        votes["macd"] = _vote(sig, m > sig, m < sig)
        ema50 = ema_nb(c, 50)
        sk, sd = stochrsi_nb(c, 14, 14, 3, 3)
        votes["stochrsi"] = _vote(
            ema50,
            (c < ema50) & (sk < 20) & (sd < 20) & (sk > sd),
            (c > ema50) & (sk > 80) & (sd > 80) & (sk < sd),
        )
        wr = wpr_nb(h, lo, c, 14)
        wr1 = _prev(wr)
        votes["wpr"] = _vote(wr1, (wr < -80) & (wr > wr1), (wr > -20) & (wr < wr1))
        bull, bear = bbp_nb(h, lo, c, 13)
        votes["bbp"] = _vote(
            ema50,
            (c > ema50) & (bear < 0) & (bear > _prev(bear)),
            (c < ema50) & (bull > 0) & (bull < _prev(bull)),
        )
        u = uo_nb(h, lo, c, 7, 14, 28)
        votes["uo"] = _vote(u, u > 70, u < 30)
    return votes


def _mean(cols: list[np.ndarray]) -> np.ndarray:
    m = np.vstack(cols)
    n = (~np.isnan(m)).sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.nansum(m, axis=0) / np.maximum(n, 1), np.nan)


def _check(o, h, lo, c, v) -> None:  # noqa: ANN001
    got = ratings_nb(o, h, lo, c, v, new_rating_state())
    ref = reference_votes(o, h, lo, c, v)
    for j, name in enumerate(VOTE_NAMES):
        np.testing.assert_array_equal(got[:, OUT_VOTES + j], ref[name], err_msg=f"vote {name}")
    ma = _mean([ref[n] for n in VOTE_NAMES[:15]])
    osc = _mean([ref[n] for n in VOTE_NAMES[15:]])
    np.testing.assert_array_equal(got[:, OUT_MA], ma)
    np.testing.assert_array_equal(got[:, OUT_OSC], osc)
    both = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
    np.testing.assert_array_equal(got[:, OUT_ALL], both)


@pytest.mark.parametrize("symbol", ["BTC", "ETH", "SOL", "XRP"])
def test_fused_kernel_equals_standalone_indicators_on_real_bars(shared_data, symbol: str) -> None:
    df: pd.DataFrame = read_shared_csv(shared_data, f"binance_{symbol}-USDT_1h.csv")
    _check(*[df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")])


def test_fused_kernel_equals_standalone_indicators_on_awkward_bars() -> None:
    """Flat bars (high == low), zero-volume stretches (VWMA's NaN), constant runs (zero
    ranges and deviations), long trends (the high/low windows' extremes always oldest)."""
    rng = np.random.default_rng(11)
    n = 3000
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    c[1200:1500] = 100.0 * np.exp(np.linspace(0.0, 0.8, 300))  # a steady climb
    c[1500:1800] = c[1499] * np.exp(np.linspace(0.0, -0.9, 300))  # a steady fall
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1 + rng.random(n) * 0.004)
    lo = np.minimum(o, c) * (1 - rng.random(n) * 0.004)
    v = rng.random(n) * 50.0
    flat = rng.choice(n, 150, replace=False)
    o[flat] = h[flat] = lo[flat] = c[flat]
    v[400:460] = 0.0
    for a, b in ((2000, 2090), (2500, 2530)):
        o[a:b] = h[a:b] = lo[a:b] = c[a:b] = c[a]
    _check(o, h, lo, c, v)


def test_the_kernel_is_called_by_address_within_bounds() -> None:
    """The loops get the kernel as an address (an int: typed in nanoseconds, and the loops'
    machine code does not depend on the kernel, which lets tandem.core.warmup compile them with a
    stand-in); an out-of-range offset is refused before the kernel writes through a
    pointer."""
    from tandem.core.indicators.rating import N_RATING_OUT, rating_kernel, rating_step_at_nb

    kern = rating_kernel()
    assert isinstance(kern, int) and kern == rating_kernel()
    state = new_rating_state()
    out = np.empty(N_RATING_OUT)
    with pytest.raises(IndexError):
        rating_step_at_nb(kern, state, np.int64(1), 1.0, 1.0, 1.0, 1.0, 1.0, out, np.int64(0))
    with pytest.raises(IndexError):
        rating_step_at_nb(kern, state, np.int64(0), 1.0, 1.0, 1.0, 1.0, 1.0, out, np.int64(-1))
    assert np.array_equal(state, new_rating_state(), equal_nan=True)  # untouched
    rating_step_at_nb(kern, state, np.int64(0), 1.0, 2.0, 0.5, 1.5, 10.0, out, np.int64(0))
    expect_state, expect_out = new_rating_state(), np.empty(N_RATING_OUT)
    rating_step_nb(expect_state, 1.0, 2.0, 0.5, 1.5, 10.0, expect_out)
    assert np.array_equal(state, expect_state, equal_nan=True)
    assert np.array_equal(out, expect_out, equal_nan=True)

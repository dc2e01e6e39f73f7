"""Indicator kernels against TA-Lib and independent pandas code, on real candles.

Where TradingView's definition and TA-Lib's agree (SMA, EMA, WMA, RSI, STOCH, CCI on close,
ADX/+DI/-DI, MOM, MACD, WILLR, ULTOSC, MAX/MIN) we compare with TA-Lib after warm-up
(exponential seeds differ slightly and converge: we compare from bar 600). Where they
differ or TA-Lib has nothing (Hull MA, VWMA, Ichimoku, Awesome Oscillator, Bull/Bear Power,
TradingView's Stochastic RSI, Pine's RMA seeding) the reference is plain pandas written
here from RATINGS.md, independently of the kernels.

Tolerance: 1e-9 relative; series that cross zero (MACD, AO, momentum, %R, DI differences)
are compared with an absolute floor of 1e-9 x the series' median magnitude, since a
relative error is meaningless at a zero crossing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
import tandem.core.indicators as ind
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import read_shared_csv

START = 600  # compare after every seed has converged far below 1e-9
FILES = ["binance_BTC-USDT_1h.csv", "binance_ETH-USDT_1h.csv", "coinbase_BTC-USD_4h.csv"]


@pytest.fixture(scope="module", params=FILES)
def ohlcv(request: pytest.FixtureRequest, shared_data) -> dict[str, np.ndarray]:
    df = read_shared_csv(shared_data, request.param)
    return {k: df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")}


def close_enough(ours: np.ndarray, ref: np.ndarray, start: int = START) -> None:
    a = np.asarray(ours, dtype=float)[start:]
    b = np.asarray(ref, dtype=float)[start:]
    assert not np.isnan(b).all(), "reference is all NaN: wrong alignment"
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = float(np.nanmedian(np.abs(b)))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * scale)


# ------------------------------------------------------------------ TA-Lib, same definition
@pytest.mark.parametrize("n", [10, 20, 30, 50, 100, 200])
def test_sma_ema_match_talib(ohlcv, n: int) -> None:
    c = ohlcv["close"]
    close_enough(ind.sma_nb(c, n), talib.SMA(c, n), start=n - 1)
    close_enough(ind.ema_nb(c, n), talib.EMA(c, n), start=n - 1)  # same SMA seed


@pytest.mark.parametrize("n", [3, 4, 9])
def test_wma_matches_talib(ohlcv, n: int) -> None:
    c = ohlcv["close"]
    close_enough(ind.wma_nb(c, n), talib.WMA(c, n), start=n - 1)


def test_rsi_mom_macd_match_talib(ohlcv) -> None:
    c = ohlcv["close"]
    close_enough(ind.rsi_nb(c, 14), talib.RSI(c, 14))
    close_enough(ind.mom_nb(c, 10), talib.MOM(c, 10), start=10)
    m, s = ind.macd_nb(c, 12, 26, 9)
    tm, ts, _ = talib.MACD(c, 12, 26, 9)  # TA-Lib aligns the EMA seeds differently
    close_enough(m, tm)
    close_enough(s, ts)


def test_stoch_willr_ultosc_cci_match_talib(ohlcv) -> None:
    h, lo, c = ohlcv["high"], ohlcv["low"], ohlcv["close"]
    k, d = ind.stoch_nb(h, lo, c, 14, 3, 3)
    tk, td = talib.STOCH(h, lo, c, 14, 3, talib.MA_Type.SMA, 3, talib.MA_Type.SMA)
    close_enough(k, tk, start=20)
    close_enough(d, td, start=20)
    close_enough(ind.wpr_nb(h, lo, c, 14), talib.WILLR(h, lo, c, 14), start=13)
    close_enough(ind.uo_nb(h, lo, c, 7, 14, 28), talib.ULTOSC(h, lo, c, 7, 14, 28), start=28)
    # TradingView rates CCI on close; TA-Lib uses the typical price: feed close thrice
    close_enough(ind.cci_nb(c, 20), talib.CCI(c, c, c, 20), start=19)


def test_dmi_matches_talib(ohlcv) -> None:
    h, lo, c = ohlcv["high"], ohlcv["low"], ohlcv["close"]
    dmi = ind.dmi_nb(h, lo, c, 14, 14)
    close_enough(dmi[:, 0], talib.PLUS_DI(h, lo, c, 14))
    close_enough(dmi[:, 1], talib.MINUS_DI(h, lo, c, 14))
    close_enough(dmi[:, 2], talib.ADX(h, lo, c, 14))


@pytest.mark.parametrize("n", [9, 14, 26, 52])
def test_highest_lowest_match_talib_exactly(ohlcv, n: int) -> None:
    hi, lo = ind.highlow_nb(ohlcv["high"], ohlcv["low"], n)
    np.testing.assert_array_equal(hi[n - 1 :], talib.MAX(ohlcv["high"], n)[n - 1 :])
    np.testing.assert_array_equal(lo[n - 1 :], talib.MIN(ohlcv["low"], n)[n - 1 :])
    assert np.isnan(hi[: n - 1]).all()


# ------------------------------------------------------------------ where TradingView differs
def test_stochrsi_is_tradingviews(ohlcv) -> None:
    """TV: k = sma(stoch(rsi), 3), d = sma(k, 3). TA-Lib's STOCHRSI returns the raw %K and
    its SMA 3, so TV's k is TA-Lib's fastd; TV's d has no TA-Lib output: pandas builds it."""
    c = ohlcv["close"]
    k, d = ind.stochrsi_nb(c, 14, 14, 3, 3)
    _, fastd = talib.STOCHRSI(c, 14, 14, 3, talib.MA_Type.SMA)
    close_enough(k, fastd)
    r = pd.Series(talib.RSI(c, 14))
    lo, hi = r.rolling(14).min(), r.rolling(14).max()
    k_ref = (100 * (r - lo) / (hi - lo)).rolling(3).mean()
    close_enough(k, k_ref.to_numpy())
    close_enough(d, k_ref.rolling(3).mean().to_numpy())


def _wma_ref(x: pd.Series, n: int) -> pd.Series:
    w = np.arange(1, n + 1, dtype=float)  # oldest weight 1 ... newest weight n
    return x.rolling(n).apply(lambda a: np.dot(a, w) / w.sum(), raw=True)


def test_hma_vwma_ao_bbp_against_pandas(ohlcv) -> None:
    h, lo, c, v = (pd.Series(ohlcv[k]) for k in ("high", "low", "close", "volume"))
    hma_ref = _wma_ref(2 * _wma_ref(c, 4) - _wma_ref(c, 9), 3)
    close_enough(ind.hma_nb(c.to_numpy(), 9), hma_ref.to_numpy(), start=10)
    vwma_ref = (c * v).rolling(20).sum() / v.rolling(20).sum()
    close_enough(ind.vwma_nb(c.to_numpy(), v.to_numpy(), 20), vwma_ref.to_numpy(), start=19)
    hl2 = (h + lo) / 2
    ao_ref = hl2.rolling(5).mean() - hl2.rolling(34).mean()
    close_enough(ind.ao_nb(h.to_numpy(), lo.to_numpy(), 5, 34), ao_ref.to_numpy(), start=33)
    e13 = c.ewm(alpha=2 / 14, adjust=False).mean()  # pandas EMA, seeded on the first value
    bull, bear = ind.bbp_nb(h.to_numpy(), lo.to_numpy(), c.to_numpy(), 13)
    close_enough(bull, (h - e13).to_numpy())  # seeds differ: converged by START
    close_enough(bear, (lo - e13).to_numpy())


def test_ichimoku_against_pandas(ohlcv) -> None:
    h, lo = pd.Series(ohlcv["high"]), pd.Series(ohlcv["low"])

    def mid(n: int) -> pd.Series:
        return (h.rolling(n).max() + lo.rolling(n).min()) / 2

    conv, base, lead2 = mid(9), mid(26), mid(52)
    lead1 = (conv + base) / 2
    got = ind.ichimoku_nb(h.to_numpy(), lo.to_numpy())
    for j, ref in enumerate([conv, base, lead1, lead2, lead1.shift(26), lead2.shift(26)]):
        np.testing.assert_array_equal(got[77:, j], ref.to_numpy()[77:])  # exact: max/min/2
        assert np.isnan(got[:8, j]).all()


def test_rma_is_pine_seeded() -> None:
    """Pine's rma: first value = SMA of the first n; then alpha*x + (1-alpha)*prev."""
    x = np.random.default_rng(7).normal(100, 5, 300)
    ref = np.full(300, np.nan)
    ref[13] = x[:14].mean()
    for i in range(14, 300):
        ref[i] = (1 / 14) * x[i] + (1 - 1 / 14) * ref[i - 1]
    close_enough(ind.rma_nb(x, 14), ref, start=0)


# ------------------------------------------------------------------ edge rules and properties
def test_zero_range_gives_nan_not_zero() -> None:
    """Pine divides by a zero range to NaN (TA-Lib returns 0): flat window -> NaN."""
    flat = np.full(40, 5.0)
    k, _ = ind.stoch_nb(flat, flat, flat, 14, 3, 3)
    assert np.isnan(k).all()
    assert np.isnan(ind.wpr_nb(flat, flat, flat, 14)).all()
    assert np.isnan(ind.cci_nb(flat, 20)).all()
    assert np.isnan(ind.uo_nb(flat, flat, flat)).all()
    assert np.isnan(ind.vwma_nb(flat, np.zeros(40), 20)).all()
    r = ind.rsi_nb(flat, 14)
    assert (r[14:] == 100.0).all()  # Pine: down == 0 -> 100
    adx = ind.dmi_nb(flat, flat, flat)[:, 2]
    assert np.isnan(adx).all()  # no range ever: DIs never defined


def test_uo_flat_stretch_inside_real_moves_is_nan_then_recovers() -> None:
    rng = np.random.default_rng(3)
    c = 100 + np.cumsum(rng.normal(0, 1, 200))
    c[80:120] = c[79]
    h, lo = c + 0.5, c - 0.5
    h[80:120] = lo[80:120] = c[79]
    u = ind.uo_nb(h, lo, c)
    assert np.isnan(u[108:120]).all()  # 28 flat bars in the window
    assert np.isfinite(u[120:]).all()
    np.testing.assert_allclose(u[150:], talib.ULTOSC(h, lo, c)[150:], rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    nan_rate=st.sampled_from([0.0, 0.02, 0.2]),
    tie=st.booleans(),
)
def test_highlow_deque_equals_pandas_rolling(n: int, seed: int, nan_rate: float, tie: bool) -> None:
    """Monotonic deque vs pandas rolling max/min, with NaN gaps (window restarts) and ties."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, 300).astype(float) if tie else rng.normal(0, 1, 300).cumsum()
    x[rng.random(300) < nan_rate] = np.nan
    hi, lo = ind.highlow_nb(x, x, n)
    s = pd.Series(x)
    np.testing.assert_array_equal(hi, s.rolling(n).max().to_numpy())
    np.testing.assert_array_equal(lo, s.rolling(n).min().to_numpy())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(1, 299))
def test_indicator_batch_equals_stepping_and_never_looks_ahead(seed: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    h, lo = c * (1 + rng.random(300) * 0.01), c * (1 - rng.random(300) * 0.01)
    s = ind.new_stoch_state(14, 3, 3)
    stepped = np.array([ind.stoch_step_nb(s, h[i], lo[i], c[i]) for i in range(300)])
    k, _ = ind.stoch_nb(h, lo, c)
    np.testing.assert_array_equal(stepped, k)
    for full, part in [
        (ind.dmi_nb(h, lo, c), ind.dmi_nb(h[:cut], lo[:cut], c[:cut])),
        (ind.uo_nb(h, lo, c), ind.uo_nb(h[:cut], lo[:cut], c[:cut])),
        (ind.hma_nb(c, 9), ind.hma_nb(c[:cut], 9)),
        (ind.ichimoku_nb(h, lo), ind.ichimoku_nb(h[:cut], lo[:cut])),
    ]:
        np.testing.assert_array_equal(full[:cut], part)


def test_short_sma_exact_and_independent_of_the_start() -> None:
    """k and d of the stochastics are SMA 3s compared with each other: when %K sits at 100
    for three bars they must be exactly 100 whatever history preceded (no running-sum drift)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(50, 30, 300), [100.0, 100.0, 100.0, 0.1, 0.2, 0.7]])
    for start in range(0, 60, 7):
        out = ind.sma_nb(x[start:], 3)
        assert out[-4] == 100.0
        assert out[-1] == ((0.1 + 0.2) + 0.7) / 3  # oldest-first sum
        np.testing.assert_array_equal(out[-6:], ind.sma_nb(x[-8:], 3)[-6:])


def test_cci_of_equal_closes_is_nan_whatever_the_price() -> None:
    """20 equal closes have a zero mean deviation (Pine: NaN). For about one price in ten the
    rounded mean of 20 equal values misses them by an ulp, which left a tiny deviation and a
    CCI of +-66.7 instead of NaN."""
    rng = np.random.default_rng(0)
    for x in rng.uniform(1e-4, 1e5, 300):
        c = np.r_[rng.uniform(0.5 * x, 1.5 * x, 30), np.full(25, x)]
        cc = ind.cci_nb(c, 20)
        assert np.isnan(cc[49:]).all(), x  # closes 30..54 are equal: 20 of them from bar 49
        assert np.isfinite(cc[19:49]).all(), x

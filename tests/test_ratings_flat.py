"""Flat stretches (open = high = low = close) against TradingView's vote rule, rebuilt here
from TA-Lib.

TradingView's ``calcRating(guard, bull, bear) = na(guard) ? na : bull ? 1 : bear ? -1 : 0``
(RATINGS.md, "Ratings and labels"): a vote is NaN only while its guard is NaN. When the guard
exists but a value the buy/sell test reads is NaN (a flat 14-bar range makes the stochastic
and %R NaN, 20 equal closes make CCI NaN, a flat RSI window makes Stoch RSI's raw stochastic
NaN), both tests are false: the vote is 0 and counts in the mean. Pine's ``sma`` skips a NaN
input (the window does not move, the output repeats), so on a flat stretch the stochastics'
k holds its last value and d keeps averaging it.

The reference: indicator values from TA-Lib (MAX/MIN, SMA, EMA, WMA, SUM, CCI, ADX, DI,
MOM, MACD, ULTOSC); TA-Lib returns 0 or carries a value where Pine divides by zero, so the
NaN is built here per RATINGS.md from exact tests (a window's highest == lowest, a zero
true-range sum); Pine's ``sma`` over those NaNs and the calcRating rule are plain NumPy.
The RSI is written out from RATINGS.md's definition (cross-checked against TA-Lib's): on a
flat stretch it is constant but for rounding, and Stoch RSI reads its rounding, so the
reference must round as the definition does.

Prices are put on a binary grid (multiples of 1/64; real BTC closes moved by at most 1/128):
every window sum is then exact, so a close equal to its SMA / HMA / VWMA / midpoint on a
flat stretch is an exact tie (vote 0) in any summation order, TA-Lib's or ours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from tandem.core.ratings import (
    OUT_ALL,
    OUT_MA,
    OUT_OSC,
    OUT_VOTES,
    VOTE_NAMES,
    new_rating_state,
    ratings_nb,
)

from tests.conftest import read_shared_csv

START = 300  # TA-Lib's exponential seeds have converged by then (RATINGS.md)
FLAT = 30  # bars in each inserted flat stretch


def _grid(x: np.ndarray) -> np.ndarray:
    return np.round(x * 64.0) / 64.0


def _prev(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _pine_sma(x: np.ndarray, n: int) -> np.ndarray:
    """Pine's sma: mean of the last n non-NaN inputs (summed oldest first from 0.0); a NaN
    input leaves the window as it is and repeats the previous output."""
    out = np.full(x.shape[0], np.nan)
    window: list[float] = []
    last = np.nan
    for i, xi in enumerate(x):
        if not np.isnan(xi):
            window = (window + [float(xi)])[-n:]
            if len(window) == n:
                tot = 0.0
                for w in window:
                    tot += w
                last = tot / n
        out[i] = last
    return out


def _flat_nan(num: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """100 * num / (hi - lo), NaN where the range is zero (Pine), not TA-Lib's 0."""
    rng = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rng == 0.0, np.nan, 100.0 * num / rng)


def _spec_rsi(c: np.ndarray) -> np.ndarray:
    """rsi(close, 14) as RATINGS.md defines it (Wilder rma seeded with the mean of the first
    14 changes; 100 when rma(down) = 0, 0 when rma(up) = 0)."""
    n = c.shape[0]
    r = np.full(n, np.nan)
    a, b = 1.0 / 14, 1.0 - 1.0 / 14
    su = sd = 0.0
    up = dn = np.nan
    for i in range(1, n):
        ch = c[i] - c[i - 1]
        g = ch if ch > 0.0 else 0.0
        lo = -ch if ch < 0.0 else 0.0
        if i > 14:
            up, dn = a * g + b * up, a * lo + b * dn
        else:
            su += g
            sd += lo
            if i == 14:
                up, dn = su / 14.0, sd / 14.0
        if i >= 14:
            r[i] = 100.0 if dn == 0.0 else 0.0 if up == 0.0 else 100.0 - 100.0 / (1.0 + up / dn)
    return r


def _wma(x: np.ndarray, n: int) -> np.ndarray:
    """Weighted MA, weights n..1 newest first, each window summed afresh. TA-Lib's WMA keeps
    running sums that carry earlier roundings, so it misses the exact ties of a flat stretch
    (close == HMA) by an ulp."""
    acc = np.zeros(x.shape[0])
    for w in range(n, 0, -1):
        acc = acc + w * _prev(x, n - w) if w < n else acc + w * x
    return acc / (n * (n + 1) / 2)


def _calc_rating(guard: np.ndarray, bull: np.ndarray, bear: np.ndarray) -> np.ndarray:
    """na(guard) ? na : bull ? 1 : bear ? -1 : 0 (a comparison with NaN is false)."""
    return np.where(np.isnan(guard), np.nan, np.where(bull, 1.0, np.where(bear, -1.0, 0.0)))


def _ma_vote(c: np.ndarray, ma: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(ma), np.nan, np.sign(c - ma))


def tv_votes(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """The 26 votes of RATINGS.md from TA-Lib indicator values (NaN per Pine built here)."""
    votes: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for n in (10, 20, 30, 50, 100, 200):
            votes[f"sma{n}"] = _ma_vote(c, talib.SMA(c, n))
        for n in (10, 20, 30, 50, 100, 200):
            votes[f"ema{n}"] = _ma_vote(c, talib.EMA(c, n))
        votes["hma9"] = _ma_vote(c, _wma(2 * _wma(c, 4) - _wma(c, 9), 3))
        vsum = talib.SUM(v, 20)
        votes["vwma20"] = _ma_vote(c, np.where(vsum == 0.0, np.nan, talib.SUM(c * v, 20) / vsum))
        conv = (talib.MAX(h, 9) + talib.MIN(lo, 9)) / 2
        base = (talib.MAX(h, 26) + talib.MIN(lo, 26)) / 2
        lead1 = (conv + base) / 2
        lead2 = (talib.MAX(h, 52) + talib.MIN(lo, 52)) / 2
        l1x, l2x = _prev(lead1, 26), _prev(lead2, 26)
        votes["ichimoku"] = _calc_rating(
            lead2,
            (l1x > l2x) & (base > l1x) & (conv > base) & (c > conv),
            (l1x < l2x) & (base < l1x) & (conv < base) & (c < conv),
        )

        r = _spec_rsi(c)
        r1 = _prev(r)
        votes["rsi"] = _calc_rating(r1, (r < 30) & (r > r1), (r > 70) & (r < r1))
        hh, ll = talib.MAX(h, 14), talib.MIN(lo, 14)
        k = _pine_sma(_flat_nan(c - ll, hh, ll), 3)
        d = _pine_sma(k, 3)
        votes["stoch"] = _calc_rating(
            _prev(d), (k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d)
        )
        flat20 = talib.MAX(c, 20) == talib.MIN(c, 20)
        cc = np.where(flat20, np.nan, talib.CCI(c, c, c, 20))
        cc1 = _prev(cc)
        votes["cci"] = _calc_rating(cc1, (cc < -100) & (cc > cc1), (cc > 100) & (cc < cc1))
        adx = talib.ADX(h, lo, c, 14)
        pdi, mdi = talib.PLUS_DI(h, lo, c, 14), talib.MINUS_DI(h, lo, c, 14)
        rising = (adx > 20) & (adx > _prev(adx))
        votes["adx"] = _calc_rating(adx, rising & (pdi > mdi), rising & (pdi < mdi))
        hl2 = (h + lo) / 2
        ao = talib.SMA(hl2, 5) - talib.SMA(hl2, 34)
        ao1, ao2 = _prev(ao), _prev(ao, 2)
        votes["ao"] = _calc_rating(
            ao1,
            ((ao > 0) & (ao1 <= 0)) | ((ao > 0) & (ao1 > 0) & (ao > ao1) & (ao2 > ao1)),
            ((ao < 0) & (ao1 >= 0)) | ((ao < 0) & (ao1 < 0) & (ao < ao1) & (ao2 < ao1)),
        )
        mo = talib.MOM(c, 10)
        mo1 = _prev(mo)
        votes["mom"] = _calc_rating(mo1, mo > mo1, mo < mo1)
        m, sig, _ = talib.MACD(c, 12, 26, 9)
        votes["macd"] = _calc_rating(sig, m > sig, m < sig)
        ema50 = talib.EMA(c, 50)
        rh, rl = talib.MAX(r, 14), talib.MIN(r, 14)
        sk = _pine_sma(_flat_nan(r - rl, rh, rl), 3)
        sd = _pine_sma(sk, 3)
        votes["stochrsi"] = _calc_rating(
            ema50,
            (c < ema50) & (sk < 20) & (sd < 20) & (sk > sd),
            (c > ema50) & (sk > 80) & (sd > 80) & (sk < sd),
        )
        wr = _flat_nan(c - hh, hh, ll)
        wr1 = _prev(wr)
        votes["wpr"] = _calc_rating(wr1, (wr < -80) & (wr > wr1), (wr > -20) & (wr < wr1))
        e13 = talib.EMA(c, 13)
        bull, bear = h - e13, lo - e13
        votes["bbp"] = _calc_rating(
            ema50,
            (c > ema50) & (bear < 0) & (bear > _prev(bear)),
            (c < ema50) & (bull > 0) & (bull < _prev(bull)),
        )
        pc = _prev(c)
        tr = np.maximum(h, pc) - np.minimum(lo, pc)
        zero = pd.Series((tr == 0.0).astype(float))
        dead = np.zeros(c.shape[0], bool)  # a window whose true ranges sum to 0: Pine's NaN
        for n in (7, 14, 28):
            dead |= (zero.rolling(n).sum() == n).to_numpy()
        u = np.where(dead, np.nan, talib.ULTOSC(h, lo, c, 7, 14, 28))
        votes["uo"] = _calc_rating(u, u > 70, u < 30)
    return votes


def _mean(cols: list[np.ndarray]) -> np.ndarray:
    m = np.vstack(cols)
    n = (~np.isnan(m)).sum(axis=0)
    return np.where(n > 0, np.nansum(m, axis=0) / np.maximum(n, 1), np.nan)


def _compare(o, h, lo, c, v, start: int = START) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # noqa: ANN001
    """The kernel's ratings equal the rebuilt ones bar by bar from ``start`` on."""
    got = ratings_nb(o, h, lo, c, v, new_rating_state())
    ref = tv_votes(h, lo, c, v)
    # the spec RSI is TA-Lib's after its seed has converged
    np.testing.assert_allclose(_spec_rsi(c)[start:], talib.RSI(c, 14)[start:], rtol=1e-9)
    sl = slice(start, None)
    for j, name in enumerate(VOTE_NAMES):
        np.testing.assert_array_equal(got[sl, OUT_VOTES + j], ref[name][sl], err_msg=f"vote {name}")
    ma = _mean([ref[n] for n in VOTE_NAMES[:15]])
    osc = _mean([ref[n] for n in VOTE_NAMES[15:]])
    both = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
    np.testing.assert_allclose(got[sl, OUT_MA], ma[sl], rtol=1e-15, atol=0)
    np.testing.assert_allclose(got[sl, OUT_OSC], osc[sl], rtol=1e-15, atol=0)
    np.testing.assert_allclose(got[sl, OUT_ALL], both[sl], rtol=1e-15, atol=0)
    return got, ref


def _insert_flat(cols: list[np.ndarray], at: int, n: int = FLAT) -> list[np.ndarray]:
    """n bars at the previous close with no volume (an exchange outage filled flat)."""
    o, h, lo, c, v = cols
    px = c[at - 1]
    ins = [np.full(n, px)] * 4 + [np.zeros(n)]
    return [np.concatenate([x[:at], y, x[at:]]) for x, y in zip(cols, ins, strict=True)]


@pytest.fixture(scope="module")
def btc(shared_data) -> list[np.ndarray]:  # noqa: ANN001
    df = read_shared_csv(shared_data, "binance_BTC-USDT_1h.csv").iloc[:2500]
    o, h, lo, c = (_grid(df[k].to_numpy(np.float64)) for k in ("open", "high", "low", "close"))
    return [o, h, lo, c, _grid(df["volume"].to_numpy(np.float64))]


def test_flat_stretches_in_real_btc_follow_calc_rating(btc: list[np.ndarray]) -> None:
    cols = btc
    for at in (2100, 1500, 900, 600):  # later first: earlier indices stay valid
        cols = _insert_flat(cols, at)
    o, h, lo, c, v = cols
    got, ref = _compare(o, h, lo, c, v)
    # the rule is exercised: on the flat stretches %R, the stochastic and CCI read NaN with
    # their guard present, and those 0 votes count
    for name in ("stoch", "wpr", "cci"):
        j = OUT_VOTES + VOTE_NAMES.index(name)
        flat = np.zeros(c.shape[0], bool)
        for at in (600, 900 + FLAT, 1500 + 2 * FLAT, 2100 + 3 * FLAT):
            flat[at : at + FLAT] = True
        assert (got[flat, j] == 0.0).any(), name


def test_stoch_k_holds_and_d_converges_on_a_flat_stretch(btc: list[np.ndarray]) -> None:
    """RATINGS.md: on a flat stretch the raw stochastic is NaN, k holds its last value and d
    keeps averaging k; the Stoch vote stays available (its guard d[1] exists)."""
    at = 1200
    o, h, lo, c, v = _insert_flat(btc, at)
    got = ratings_nb(o, h, lo, c, v, new_rating_state())
    hh, ll = talib.MAX(h, 14), talib.MIN(lo, 14)
    raw = _flat_nan(c - ll, hh, ll)
    k = _pine_sma(raw, 3)
    d = _pine_sma(k, 3)
    nan_bars = np.flatnonzero(np.isnan(raw[at : at + FLAT])) + at
    assert nan_bars.size == FLAT - 13  # the 14th flat bar on: a zero range
    assert (k[nan_bars] == k[nan_bars[0] - 1]).all()
    assert abs(d[nan_bars[-1]] - k[nan_bars[-1]]) < 1e-12
    stoch = got[:, OUT_VOTES + VOTE_NAMES.index("stoch")]
    assert not np.isnan(stoch[at - 5 : at + FLAT + 10]).any()


def _walk(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    c = _grid(1000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))
    o = np.r_[c[0], c[:-1]]
    h = _grid(np.maximum(o, c) * (1 + rng.random(n) * 0.004))
    lo = _grid(np.minimum(o, c) * (1 - rng.random(n) * 0.004))
    v = _grid(rng.random(n) * 50.0)
    return [o, h, lo, c, v]


def test_generated_flat_stretches_and_equal_closes() -> None:
    """Flat stretches with and without volume, 20 equal closes under moving highs and lows
    (CCI NaN alone), single flat bars."""
    o, h, lo, c, v = _walk(5, 2000)
    for a in (400, 800):  # outage bars: nothing traded
        o[a : a + FLAT] = h[a : a + FLAT] = lo[a : a + FLAT] = c[a : a + FLAT] = c[a - 1]
        v[a : a + FLAT] = 0.0
    a = 1100  # a quiet market: flat, but trading
    o[a : a + FLAT] = h[a : a + FLAT] = lo[a : a + FLAT] = c[a : a + FLAT] = c[a - 1]
    a = 1400  # the close pinned for 25 bars while highs and lows move: only CCI is NaN
    c[a : a + 25] = c[a - 1]
    h[a : a + 25] = np.maximum(h[a : a + 25], c[a - 1])
    lo[a : a + 25] = np.minimum(lo[a : a + 25], c[a - 1])
    single = np.arange(1600, 1900, 7)
    h[single] = lo[single] = c[single]
    got, _ = _compare(o, h, lo, c, v)
    cci = got[:, OUT_VOTES + VOTE_NAMES.index("cci")]
    # closes a-1 .. a+18 are the first 20 equal ones: CCI NaN there, its vote 0, then NaN
    assert cci[a + 18] == 0.0 and np.isnan(cci[a + 19 : a + 25]).all()


def test_flat_rsi_window_from_the_start_gives_a_zero_stoch_rsi_vote() -> None:
    """A pair that only climbs at first: RSI is 100 (no loss yet) over whole windows, Stoch
    RSI's raw stochastic is NaN, k never forms; once ema(close, 50), its guard, exists, the
    vote is 0 and counts."""
    o, h, lo, c, v = _walk(9, 900)
    c[:120] = _grid(500.0 + 2.0 * np.arange(120))
    o[:120] = np.r_[c[0], c[:119]]
    h[:120] = c[:120] + 1.0
    lo[:120] = o[:120] - 1.0
    got, ref = _compare(o, h, lo, c, v)
    j = OUT_VOTES + VOTE_NAMES.index("stochrsi")
    assert (ref["stochrsi"][49:120] == 0.0).all()  # TA-Lib's ema(50) exists from bar 49
    np.testing.assert_array_equal(got[:START, j], ref["stochrsi"][:START])


def test_equal_closes_make_cci_nan_at_any_price() -> None:
    """20 equal closes: CCI is NaN (zero mean deviation) whatever the price's last bits, so
    its vote is 0 on the first such bar (guard cci[1] exists) and NaN after. Off the binary
    grid the rounded mean of 20 equal closes can miss them by an ulp (about one price in
    ten), which used to leave CCI at +-66.7 and its vote at 0 throughout."""
    rng = np.random.default_rng(4)
    o, h, lo, c, v = _walk(3, 400)
    j = OUT_VOTES + VOTE_NAMES.index("cci")
    a = 300
    for x in rng.uniform(1e-3, 1e5, 120):
        cc, hh, ll = c.copy() * x / c[a - 1], h * x / c[a - 1], lo * x / c[a - 1]
        cc[a : a + 30] = x
        cc[a - 1] = x  # closes a-1 .. a+29 are equal: the 20th is bar a+18
        hh, ll = np.maximum(hh, cc), np.minimum(ll, cc)
        got = ratings_nb(cc, hh, ll, cc, v, new_rating_state())
        assert got[a + 18, j] == 0.0, x
        assert np.isnan(got[a + 19 : a + 30, j]).all(), x

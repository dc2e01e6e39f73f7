"""TradingView Technical Ratings as one streaming numba kernel per asset.

One asset's whole rating state (25 indicator states, since Williams %R reads the
Stochastic's 14-bar high/low tracker; their ring buffers; the previous values the votes
compare against) is a single flat float64 array of ``RATING_STATE_SIZE``:
it checkpoints as raw bytes and many assets stack as the rows of a 2-D array.

``rating_step_nb(state, o, h, l, c, v, out)`` consumes one closed bar and writes
``out[0] = rating_ma``, ``out[1] = rating_osc``, ``out[2] = rating_all`` and ``out[3:]`` the
26 votes in ``VOTE_NAMES`` order. The batch forms are loops over that same step, so batch
and streaming are bit-identical by construction.

Vote rules are ``../shared/RATINGS.md``. Our NaN rules, stated once:
* a vote is NaN while its guard is NaN (warm-up) *or* while the indicator value it reads is
  NaN (e.g. a zero high-low range makes the stochastic NaN for that bar): NaN votes are
  excluded from the means;
* ``rating_ma`` / ``rating_osc`` = mean of the available votes, NaN when none is;
  ``rating_all`` = mean of the two when both exist, the one that exists otherwise, else NaN;
* a bar whose high, low or close is NaN is a *missing bar*: state untouched, outputs NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from core.indicators.extremes import (
    ICHI_BASE,
    ICHI_CONV,
    ICHI_LEAD1_LAG,
    ICHI_LEAD2,
    ICHI_LEAD2_LAG,
    ichimoku_step_at_nb,
    new_ichimoku_state,
)
from core.indicators.moving import (
    ema_step_at_nb,
    hma_step_at_nb,
    new_ema_state,
    new_hma_state,
    new_sma_state,
    new_vwma_state,
    sma_step_at_nb,
    vwma_step_at_nb,
)
from core.indicators.oscillators import (
    BBP_BEAR,
    BBP_BULL,
    DMI_MDI,
    DMI_PDI,
    MACD_SIGNAL,
    STOCH_D,
    ao_step_at_nb,
    bbp_step_at_nb,
    cci_step_at_nb,
    dmi_step_at_nb,
    macd_step_at_nb,
    mom_step_at_nb,
    new_ao_state,
    new_bbp_state,
    new_cci_state,
    new_dmi_state,
    new_macd_state,
    new_mom_state,
    new_rsi_state,
    new_stoch_state,
    new_stochrsi_state,
    new_uo_state,
    rsi_step_at_nb,
    stoch_step_at_nb,
    stochrsi_step_at_nb,
    uo_step_at_nb,
    wpr_from_highlow_nb,
)

MA_LENGTHS = (10, 20, 30, 50, 100, 200)
MA_VOTE_NAMES = (
    tuple(f"sma{n}" for n in MA_LENGTHS)
    + tuple(f"ema{n}" for n in MA_LENGTHS)
    + (
        "hma9",
        "vwma20",
        "ichimoku",
    )
)
OSC_VOTE_NAMES = (
    "rsi",
    "stoch",
    "cci",
    "adx",
    "ao",
    "mom",
    "macd",
    "stochrsi",
    "wpr",
    "bbp",
    "uo",
)
VOTE_NAMES: tuple[str, ...] = MA_VOTE_NAMES + OSC_VOTE_NAMES
N_MA_VOTES = len(MA_VOTE_NAMES)
N_OSC_VOTES = len(OSC_VOTE_NAMES)
OUT_MA = 0
OUT_OSC = 1
OUT_ALL = 2
OUT_VOTES = 3
N_RATING_OUT = OUT_VOTES + len(VOTE_NAMES)

# Bars of history until every vote can be available: SMA/EMA 200 need 200 bars (the
# Ichimoku vote needs 52 + 26, MACD's signal 34, the oscillators' [1] lookbacks fewer).
RATING_WARMUP_BARS = 200

LABELS = ("Strong Sell", "Sell", "Neutral", "Buy", "Strong Buy")
LABEL_NONE = -1

# ---------------------------------------------------------------- state layout
# Memory of previous indicator values the votes compare against (x[1], ao[2]).
_MEM = ("rsi1", "d1", "cci1", "adx1", "ao1", "ao2", "mom1", "wr1", "bull1", "bear1")
_MEM_SIZE = len(_MEM)


def _layout() -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Concatenate every sub-state into one template; return it and the (start, end) of each.

    The constructors run as plain Python (``.py_func``): loading each one's compiled code
    from the numba cache at import would cost more than the arithmetic (warm start < 2 s).
    """
    parts: list[tuple[str, np.ndarray]] = [("mem", np.full(_MEM_SIZE, np.nan))]
    parts += [(f"sma{n}", new_sma_state.py_func(n)) for n in MA_LENGTHS]
    parts += [(f"ema{n}", new_ema_state.py_func(n)) for n in MA_LENGTHS]
    parts += [
        ("hma", new_hma_state.py_func(9)),
        ("vwma", new_vwma_state.py_func(20)),
        ("ichimoku", new_ichimoku_state.py_func(9, 26, 52, 26)),
        ("rsi", new_rsi_state.py_func(14)),
        ("stoch", new_stoch_state.py_func(14, 3, 3)),
        ("cci", new_cci_state.py_func(20)),
        ("dmi", new_dmi_state.py_func(14, 14)),
        ("ao", new_ao_state.py_func(5, 34)),
        ("mom", new_mom_state.py_func(10)),
        ("macd", new_macd_state.py_func(12, 26, 9)),
        ("stochrsi", new_stochrsi_state.py_func(14, 14, 3, 3)),
        ("bbp", new_bbp_state.py_func(13)),
        ("uo", new_uo_state.py_func(7, 14, 28)),
    ]
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, arr in parts:
        spans[name] = (pos, pos + arr.shape[0])
        pos += arr.shape[0]
    return np.concatenate([a for _, a in parts]), spans


_TEMPLATE, _SPANS = _layout()
RATING_STATE_SIZE: int = int(_TEMPLATE.shape[0])

# Module-level ints/arrays are frozen into the compiled kernel as constants.
_SMA_OFF = np.array([_SPANS[f"sma{n}"][0] for n in MA_LENGTHS], np.int64)
_EMA_OFF = np.array([_SPANS[f"ema{n}"][0] for n in MA_LENGTHS], np.int64)
_HMA = _SPANS["hma"][0]
_VWMA = _SPANS["vwma"][0]
_ICHI = _SPANS["ichimoku"][0]
_RSI = _SPANS["rsi"][0]
_STOCH = _SPANS["stoch"][0]
_CCI = _SPANS["cci"][0]
_DMI = _SPANS["dmi"][0]
_AO = _SPANS["ao"][0]
_MOM = _SPANS["mom"][0]
_MACD = _SPANS["macd"][0]
_SRSI = _SPANS["stochrsi"][0]
# Williams %R (14) reads the Stochastic's 14-bar high/low tracker: same window, same bars
# (both skip only missing bars), so one tracker serves both.
_STOCH_HL = _STOCH + int(_TEMPLATE[_STOCH + 2])
_BBP = _SPANS["bbp"][0]
_UO = _SPANS["uo"][0]
# the vote memory sits at offset 0
(_M_RSI1, _M_D1, _M_CCI1, _M_ADX1, _M_AO1, _M_AO2, _M_MOM1, _M_WR1, _M_BULL1, _M_BEAR1) = range(
    _MEM_SIZE
)


@njit(cache=True)
def new_rating_state() -> np.ndarray:
    """A fresh rating state for one asset (float64[RATING_STATE_SIZE])."""
    return _TEMPLATE.copy()


@njit(cache=True)
def new_rating_states(n_assets: int) -> np.ndarray:
    """Fresh states for ``n_assets`` assets, one per row."""
    out = np.empty((n_assets, _TEMPLATE.shape[0]))
    for a in range(n_assets):
        out[a, :] = _TEMPLATE
    return out


# ---------------------------------------------------------------- votes
@njit(cache=True, inline="always")
def ma_vote_nb(close: float, ma: float) -> float:
    """sign(close - ma); NaN when the MA is NaN."""
    if math.isnan(ma):
        return np.nan
    if close > ma:
        return 1.0
    if close < ma:
        return -1.0
    return 0.0


@njit(cache=True, inline="always")
def vote_nb(guard: float, value: float, bull: bool, bear: bool) -> float:
    """NaN if ``guard`` or ``value`` is NaN, else +1 if bull, -1 if bear, else 0."""
    if math.isnan(guard) or math.isnan(value):
        return np.nan
    if bull:
        return 1.0
    if bear:
        return -1.0
    return 0.0


@njit(cache=True, inline="always")
def _mean_nan(out: np.ndarray, start: int, stop: int) -> float:
    tot = 0.0
    cnt = 0
    for i in range(start, stop):
        x = out[i]
        if not math.isnan(x):
            tot += x
            cnt += 1
    return tot / cnt if cnt > 0 else np.nan


@njit(cache=True)
def rating_step_nb(
    state: np.ndarray, o: float, h: float, lo: float, c: float, v: float, out: np.ndarray
) -> None:
    """Consume one closed bar of one asset: update every indicator and write the ratings and
    votes into ``out`` (float64[N_RATING_OUT]). A bar with NaN high/low/close is a missing
    bar: ``state`` untouched, ``out`` all NaN. ``o`` is unused by the ratings (kept so the
    signature is the candle)."""
    if math.isnan(c) or math.isnan(h) or math.isnan(lo):
        out[:] = np.nan
        return
    st = state
    ov = OUT_VOTES
    # ---- MA group
    for k in range(6):
        out[ov + k] = ma_vote_nb(c, sma_step_at_nb(st, _SMA_OFF[k], c))
    ema50 = np.nan
    for k in range(6):
        e = ema_step_at_nb(st, _EMA_OFF[k], c)
        if k == 3:
            ema50 = e  # priceAvg = ema(close, 50) of the trend filters
        out[ov + 6 + k] = ma_vote_nb(c, e)
    out[ov + 12] = ma_vote_nb(c, hma_step_at_nb(st, _HMA, c))
    out[ov + 13] = ma_vote_nb(c, vwma_step_at_nb(st, _VWMA, c, v))
    lead2 = ichimoku_step_at_nb(st, _ICHI, h, lo)
    con = st[_ICHI + ICHI_CONV]
    base = st[_ICHI + ICHI_BASE]
    l1x = st[_ICHI + ICHI_LEAD1_LAG]
    l2x = st[_ICHI + ICHI_LEAD2_LAG]
    out[ov + 14] = vote_nb(
        lead2,
        st[_ICHI + ICHI_LEAD2],
        l1x > l2x and base > l1x and con > base and c > con,
        l1x < l2x and base < l1x and con < base and c < con,
    )
    o2 = ov + N_MA_VOTES
    # ---- oscillator group
    r = rsi_step_at_nb(st, _RSI, c)
    r1 = st[_M_RSI1]
    out[o2 + 0] = vote_nb(r1, r, r < 30.0 and r > r1, r > 70.0 and r < r1)
    st[_M_RSI1] = r

    k_ = stoch_step_at_nb(st, _STOCH, h, lo, c)
    d_ = st[_STOCH + STOCH_D]
    d1 = st[_M_D1]
    out[o2 + 1] = vote_nb(
        d1,
        k_ + d_,
        k_ < 20.0 and d_ < 20.0 and k_ > d_,
        k_ > 80.0 and d_ > 80.0 and k_ < d_,
    )
    st[_M_D1] = d_

    cc = cci_step_at_nb(st, _CCI, c)
    cc1 = st[_M_CCI1]
    out[o2 + 2] = vote_nb(cc1, cc, cc < -100.0 and cc > cc1, cc > 100.0 and cc < cc1)
    st[_M_CCI1] = cc

    adx = dmi_step_at_nb(st, _DMI, h, lo, c)
    adx1 = st[_M_ADX1]
    pdi = st[_DMI + DMI_PDI]
    mdi = st[_DMI + DMI_MDI]
    out[o2 + 3] = vote_nb(
        adx,
        adx,
        adx > 20.0 and adx > adx1 and pdi > mdi,
        adx > 20.0 and adx > adx1 and pdi < mdi,
    )
    st[_M_ADX1] = adx

    ao = ao_step_at_nb(st, _AO, h, lo)
    ao1 = st[_M_AO1]
    ao2 = st[_M_AO2]
    out[o2 + 4] = vote_nb(
        ao1,
        ao,
        (ao > 0.0 and ao1 <= 0.0) or (ao > 0.0 and ao1 > 0.0 and ao > ao1 and ao2 > ao1),
        (ao < 0.0 and ao1 >= 0.0) or (ao < 0.0 and ao1 < 0.0 and ao < ao1 and ao2 < ao1),
    )
    st[_M_AO2] = ao1
    st[_M_AO1] = ao

    mo = mom_step_at_nb(st, _MOM, c)
    mo1 = st[_M_MOM1]
    out[o2 + 5] = vote_nb(mo1, mo, mo > mo1, mo < mo1)
    st[_M_MOM1] = mo

    m = macd_step_at_nb(st, _MACD, c)
    sig = st[_MACD + MACD_SIGNAL]
    out[o2 + 6] = vote_nb(sig, m, m > sig, m < sig)

    sk = stochrsi_step_at_nb(st, _SRSI, c)
    sd = st[_SRSI + STOCH_D]
    up_trend = c > ema50
    down_trend = c < ema50
    out[o2 + 7] = vote_nb(
        ema50,
        sk + sd,
        down_trend and sk < 20.0 and sd < 20.0 and sk > sd,
        up_trend and sk > 80.0 and sd > 80.0 and sk < sd,
    )

    wr = wpr_from_highlow_nb(st, _STOCH_HL, c)
    wr1 = st[_M_WR1]
    out[o2 + 8] = vote_nb(wr1, wr, wr < -80.0 and wr > wr1, wr > -20.0 and wr < wr1)
    st[_M_WR1] = wr

    bbp_step_at_nb(st, _BBP, h, lo, c)
    bull = st[_BBP + BBP_BULL]
    bear = st[_BBP + BBP_BEAR]
    bull1 = st[_M_BULL1]
    bear1 = st[_M_BEAR1]
    out[o2 + 9] = vote_nb(
        ema50,
        bull,
        up_trend and bear < 0.0 and bear > bear1,
        down_trend and bull > 0.0 and bull < bull1,
    )
    st[_M_BULL1] = bull
    st[_M_BEAR1] = bear

    u = uo_step_at_nb(st, _UO, h, lo, c)
    out[o2 + 10] = vote_nb(u, u, u > 70.0, u < 30.0)

    # ---- ratings
    rm = _mean_nan(out, ov, o2)
    ro = _mean_nan(out, o2, o2 + N_OSC_VOTES)
    out[OUT_MA] = rm
    out[OUT_OSC] = ro
    if math.isnan(rm):
        out[OUT_ALL] = ro
    elif math.isnan(ro):
        out[OUT_ALL] = rm
    else:
        out[OUT_ALL] = (rm + ro) / 2.0


@njit(cache=True)
def label_code_nb(v: float) -> int:
    """Index into ``LABELS`` (0 Strong Sell .. 4 Strong Buy), ``LABEL_NONE`` for NaN.

    v < -0.5 Strong Sell; -0.5 <= v < -0.1 Sell; -0.1 <= v <= 0.1 Neutral;
    0.1 < v <= 0.5 Buy; v > 0.5 Strong Buy.
    """
    if math.isnan(v):
        return LABEL_NONE
    if v < -0.5:
        return 0
    if v < -0.1:
        return 1
    if v <= 0.1:
        return 2
    if v <= 0.5:
        return 3
    return 4


# ---------------------------------------------------------------- batch forms
@njit(cache=True)
def ratings_nb(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, state: np.ndarray
) -> np.ndarray:
    """One asset over ``n_bars``: (n_bars, N_RATING_OUT), stepping ``state`` in place."""
    n = c.shape[0]
    out = np.empty((n, N_RATING_OUT))
    for i in range(n):
        rating_step_nb(state, o[i], h[i], lo[i], c[i], v[i], out[i])
    return out


@njit(cache=True, parallel=True)
def ratings_batch_nb(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    states: np.ndarray,
) -> np.ndarray:
    """``n_bars x n_assets`` inputs -> (n_bars, n_assets, N_RATING_OUT); assets in parallel.

    ``states`` (n_assets, RATING_STATE_SIZE) is stepped in place, so a driver can warm up
    with this and continue bar by bar with :func:`rating_step_nb`.
    """
    n_bars, n_assets = c.shape
    out = np.empty((n_bars, n_assets, N_RATING_OUT))
    for a in prange(n_assets):
        st = states[a]
        for i in range(n_bars):
            rating_step_nb(st, o[i, a], h[i, a], lo[i, a], c[i, a], v[i, a], out[i, a])
    return out

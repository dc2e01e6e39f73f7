"""Oscillators: RSI, Stochastic, CCI, DMI/ADX, Awesome, Momentum, MACD, Stochastic RSI,
Williams %R, Bull/Bear Power, Ultimate Oscillator.

Price-input kernels treat a NaN input as a *missing bar*: NaN out, state untouched.
Divisions by a zero range give NaN for that bar (Pine semantics; TA-Lib returns 0).
Composite states keep their sub-states' offsets in their header, so a state is one flat
float64 array however deep the composition goes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from core.indicators.extremes import HL_HI, HL_LO, highlow_step_nb, new_highlow_state
from core.indicators.moving import (
    ema_step_nb,
    new_ema_state,
    new_rma_state,
    new_sma_state,
    sma_step_nb,
)


@njit(cache=True)
def _pack2(hdr: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """hdr ++ a ++ b (offsets are the caller's job: len(hdr), len(hdr)+len(a), ...)."""
    s = np.empty(hdr.shape[0] + a.shape[0] + b.shape[0])
    s[: hdr.shape[0]] = hdr
    s[hdr.shape[0] : hdr.shape[0] + a.shape[0]] = a
    s[hdr.shape[0] + a.shape[0] :] = b
    return s


# ---------------------------------------------------------------- RSI
# layout: [prev, has_prev, value, <rma up>, <rma down>]
_RSI_HDR = 3
_RMA_SIZE = 7  # size of an EMA/RMA state


@njit(cache=True)
def new_rsi_state(n: int = 14) -> np.ndarray:
    """Wilder RSI of length ``n``."""
    hdr = np.zeros(_RSI_HDR)
    hdr[2] = np.nan
    return _pack2(hdr, new_rma_state(n), new_rma_state(n))


@njit(cache=True)
def rsi_step_nb(s: np.ndarray, x: float) -> float:
    """100 - 100/(1 + rma(up)/rma(down)); 100 when rma(down) = 0, 0 when rma(up) = 0
    (Pine's order: a flat run, where both are 0, reads 100)."""
    if math.isnan(x):
        return np.nan
    if s[1] == 0.0:
        s[0] = x
        s[1] = 1.0
        return np.nan
    ch = x - s[0]
    s[0] = x
    up = ema_step_nb(s[_RSI_HDR : _RSI_HDR + _RMA_SIZE], ch if ch > 0.0 else 0.0)
    dn = ema_step_nb(s[_RSI_HDR + _RMA_SIZE : _RSI_HDR + 2 * _RMA_SIZE], -ch if ch < 0.0 else 0.0)
    if math.isnan(up) or math.isnan(dn):
        r = np.nan
    elif dn == 0.0:
        r = 100.0
    elif up == 0.0:
        r = 0.0
    else:
        r = 100.0 - 100.0 / (1.0 + up / dn)
    s[2] = r
    return r


@njit(cache=True)
def rsi_nb(x: np.ndarray, n: int = 14) -> np.ndarray:
    """Batch RSI: a loop over :func:`rsi_step_nb`."""
    s = new_rsi_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = rsi_step_nb(s, x[i])
    return out


# ---------------------------------------------------------------- Stochastic
# layout: [k, d, off_hl, off_k, off_d, end, <highlow n>, <sma k>, <sma d>]
STOCH_K = 0
STOCH_D = 1
_STOCH_HDR = 6


@njit(cache=True)
def new_stoch_state(n: int = 14, k_smooth: int = 3, d_smooth: int = 3) -> np.ndarray:
    """Full stochastic: k = sma(stoch(close, high, low, n), k_smooth); d = sma(k, d_smooth)."""
    a = new_highlow_state(n)
    b = new_sma_state(k_smooth)
    c = new_sma_state(d_smooth)
    o1 = _STOCH_HDR
    o2 = o1 + a.shape[0]
    o3 = o2 + b.shape[0]
    end = o3 + c.shape[0]
    s = np.zeros(end)
    s[0] = np.nan
    s[1] = np.nan
    s[2] = o1
    s[3] = o2
    s[4] = o3
    s[5] = end
    s[o1:o2] = a
    s[o2:o3] = b
    s[o3:end] = c
    return s


@njit(cache=True)
def _stoch_core(s: np.ndarray, src: float, h: float, lo: float) -> float:
    """Shared by Stochastic and Stochastic RSI: push a bar, return k; d goes to s[1]."""
    o1 = int(s[2])
    o2 = int(s[3])
    o3 = int(s[4])
    end = int(s[5])
    hl = s[o1:o2]
    raw = np.nan
    if highlow_step_nb(hl, h, lo):
        rng = hl[HL_HI] - hl[HL_LO]
        if rng != 0.0:
            raw = 100.0 * (src - hl[HL_LO]) / rng
    k = sma_step_nb(s[o2:o3], raw)
    d = sma_step_nb(s[o3:end], k)
    s[STOCH_K] = k
    s[STOCH_D] = d
    return k


@njit(cache=True)
def stoch_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """Push one bar; returns k, d is in ``s[STOCH_D]``. NaN bar = missing bar."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    return _stoch_core(s, c, h, lo)


@njit(cache=True)
def stoch_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 14, k_smooth: int = 3, d_smooth: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Batch stochastic (k, d): a loop over :func:`stoch_step_nb`."""
    s = new_stoch_state(n, k_smooth, d_smooth)
    k = np.empty(c.shape[0])
    d = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        k[i] = stoch_step_nb(s, h[i], lo[i], c[i])
        d[i] = s[STOCH_D] if not math.isnan(c[i]) else np.nan
    return k, d


# ---------------------------------------------------------------- Stochastic RSI
# layout: [k, d, off_hl, off_k, off_d, off_rsi, end, <highlow>, <sma k>, <sma d>, <rsi>]
@njit(cache=True)
def new_stochrsi_state(
    rsi_n: int = 14, stoch_n: int = 14, k_smooth: int = 3, d_smooth: int = 3
) -> np.ndarray:
    """Stochastic RSI as TradingView defines it: r = rsi(close, rsi_n);
    k = sma(stoch(r, r, r, stoch_n), k_smooth); d = sma(k, d_smooth)."""
    st = new_stoch_state(stoch_n, k_smooth, d_smooth)
    r = new_rsi_state(rsi_n)
    s = np.empty(st.shape[0] + r.shape[0])
    s[: st.shape[0]] = st
    s[st.shape[0] :] = r
    return s


@njit(cache=True)
def stochrsi_step_nb(s: np.ndarray, x: float) -> float:
    """Push one close; returns k, d is in ``s[STOCH_D]``."""
    if math.isnan(x):
        return np.nan
    end = int(s[5])
    r = rsi_step_nb(s[end:], x)
    return _stoch_core(s, r, r, r)


@njit(cache=True)
def stochrsi_nb(
    x: np.ndarray, rsi_n: int = 14, stoch_n: int = 14, k_smooth: int = 3, d_smooth: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Batch Stochastic RSI (k, d): a loop over :func:`stochrsi_step_nb`."""
    s = new_stochrsi_state(rsi_n, stoch_n, k_smooth, d_smooth)
    k = np.empty(x.shape[0])
    d = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        k[i] = stochrsi_step_nb(s, x[i])
        d[i] = s[STOCH_D] if not math.isnan(x[i]) else np.nan
    return k, d


# ---------------------------------------------------------------- CCI
# layout: [n, run, pos, ring[n]]
_CCI_HDR = 3


@njit(cache=True)
def new_cci_state(n: int = 20) -> np.ndarray:
    """Commodity Channel Index of one source series (TradingView rates it on close)."""
    s = np.zeros(_CCI_HDR + n)
    s[0] = n
    return s


@njit(cache=True)
def cci_step_nb(s: np.ndarray, x: float) -> float:
    """(x - sma) / (0.015 * mean |x_i - sma|), recomputed from the ring (as TA-Lib does);
    NaN when the mean deviation is 0."""
    if math.isnan(x):
        return np.nan
    n = int(s[0])
    pos = int(s[2])
    s[_CCI_HDR + pos] = x
    run = int(s[1])
    if run < n:
        run += 1
        s[1] = run
    nxt = pos + 1
    s[2] = 0.0 if nxt == n else nxt
    if run < n:
        return np.nan
    tot = 0.0
    for j in range(n):
        tot += s[_CCI_HDR + j]
    mean = tot / n
    dev = 0.0
    for j in range(n):
        dev += abs(s[_CCI_HDR + j] - mean)
    dev /= n
    if dev == 0.0:
        return np.nan
    return (x - mean) / (0.015 * dev)


@njit(cache=True)
def cci_nb(x: np.ndarray, n: int = 20) -> np.ndarray:
    """Batch CCI: a loop over :func:`cci_step_nb`."""
    s = new_cci_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = cci_step_nb(s, x[i])
    return out


# ---------------------------------------------------------------- DMI / ADX
# layout: [+DI, -DI, ADX, prev_h, prev_l, prev_c, has_prev, <rma +DM>, <rma -DM>, <rma tr>,
#          <rma dx>]
DMI_PDI = 0
DMI_MDI = 1
DMI_ADX = 2
_DMI_HDR = 7


@njit(cache=True)
def new_dmi_state(di_n: int = 14, adx_n: int = 14) -> np.ndarray:
    """Directional movement index (Pine ``ta.dmi(di_n, adx_n)``)."""
    s = np.zeros(_DMI_HDR + 4 * _RMA_SIZE)
    s[0:3] = np.nan
    o = _DMI_HDR
    s[o : o + _RMA_SIZE] = new_rma_state(di_n)
    s[o + _RMA_SIZE : o + 2 * _RMA_SIZE] = new_rma_state(di_n)
    s[o + 2 * _RMA_SIZE : o + 3 * _RMA_SIZE] = new_rma_state(di_n)
    s[o + 3 * _RMA_SIZE : o + 4 * _RMA_SIZE] = new_rma_state(adx_n)
    return s


@njit(cache=True)
def dmi_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """Push one bar; returns ADX; +DI / -DI are in ``s[DMI_PDI]``, ``s[DMI_MDI]``.

    As Pine's ``ta.dmi``: the DIs are ``fixnan``-ed (a bar whose smoothed true range is 0
    keeps the previous DIs) and DX uses ``sum == 0 ? 1 : sum`` so ADX never turns NaN.
    """
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    if s[6] == 0.0:
        s[3] = h
        s[4] = lo
        s[5] = c
        s[6] = 1.0
        return np.nan
    up = h - s[3]
    dn = s[4] - lo
    pc = s[5]
    s[3] = h
    s[4] = lo
    s[5] = c
    pdm = up if (up > dn and up > 0.0) else 0.0
    mdm = dn if (dn > up and dn > 0.0) else 0.0
    tr = max(h - lo, abs(h - pc), abs(lo - pc))
    o = _DMI_HDR
    a = ema_step_nb(s[o : o + _RMA_SIZE], pdm)
    b = ema_step_nb(s[o + _RMA_SIZE : o + 2 * _RMA_SIZE], mdm)
    t = ema_step_nb(s[o + 2 * _RMA_SIZE : o + 3 * _RMA_SIZE], tr)
    if math.isnan(t):
        return np.nan
    if t != 0.0:  # fixnan: otherwise keep the previous DIs
        s[DMI_PDI] = 100.0 * a / t
        s[DMI_MDI] = 100.0 * b / t
    p = s[DMI_PDI]
    m = s[DMI_MDI]
    if math.isnan(p):
        return np.nan
    tot = p + m
    dx = abs(p - m) / (tot if tot != 0.0 else 1.0)
    adx = 100.0 * ema_step_nb(s[o + 3 * _RMA_SIZE : o + 4 * _RMA_SIZE], dx)
    s[DMI_ADX] = adx
    return adx


@njit(cache=True)
def dmi_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, di_n: int = 14, adx_n: int = 14
) -> np.ndarray:
    """Batch DMI: columns +DI, -DI, ADX; a loop over :func:`dmi_step_nb`."""
    s = new_dmi_state(di_n, adx_n)
    out = np.full((c.shape[0], 3), np.nan)
    for i in range(c.shape[0]):
        if math.isnan(dmi_step_nb(s, h[i], lo[i], c[i])) and math.isnan(s[DMI_PDI]):
            continue
        if math.isnan(c[i]):
            continue
        out[i, 0] = s[DMI_PDI]
        out[i, 1] = s[DMI_MDI]
        out[i, 2] = s[DMI_ADX]
    return out


# ---------------------------------------------------------------- Awesome Oscillator
@njit(cache=True)
def new_ao_state(fast: int = 5, slow: int = 34) -> np.ndarray:
    """Awesome Oscillator: sma(hl2, fast) - sma(hl2, slow). layout: [off_slow, <fast>, <slow>]"""
    a = new_sma_state(fast)
    hdr = np.zeros(1)
    hdr[0] = 1 + a.shape[0]
    return _pack2(hdr, a, new_sma_state(slow))


@njit(cache=True)
def ao_step_nb(s: np.ndarray, h: float, lo: float) -> float:
    """Push one bar's high/low; returns AO."""
    if math.isnan(h) or math.isnan(lo):
        return np.nan
    hl2 = (h + lo) / 2.0
    o = int(s[0])
    return sma_step_nb(s[1:o], hl2) - sma_step_nb(s[o:], hl2)


@njit(cache=True)
def ao_nb(h: np.ndarray, lo: np.ndarray, fast: int = 5, slow: int = 34) -> np.ndarray:
    """Batch AO: a loop over :func:`ao_step_nb`."""
    s = new_ao_state(fast, slow)
    out = np.empty(h.shape[0])
    for i in range(h.shape[0]):
        out[i] = ao_step_nb(s, h[i], lo[i])
    return out


# ---------------------------------------------------------------- Momentum
# layout: [n, run, pos, ring[n]]
@njit(cache=True)
def new_mom_state(n: int = 10) -> np.ndarray:
    """Momentum: x - x[n]."""
    s = np.zeros(3 + n)
    s[0] = n
    return s


@njit(cache=True)
def mom_step_nb(s: np.ndarray, x: float) -> float:
    """Push one value; returns x - x[n] (NaN until n earlier values exist)."""
    if math.isnan(x):
        return np.nan
    n = int(s[0])
    pos = int(s[2])
    run = int(s[1])
    out = x - s[3 + pos] if run >= n else np.nan  # the slot to overwrite is n bars old
    s[3 + pos] = x
    if run < n:
        s[1] = run + 1
    nxt = pos + 1
    s[2] = 0.0 if nxt == n else nxt
    return out


@njit(cache=True)
def mom_nb(x: np.ndarray, n: int = 10) -> np.ndarray:
    """Batch momentum: a loop over :func:`mom_step_nb`."""
    s = new_mom_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = mom_step_nb(s, x[i])
    return out


# ---------------------------------------------------------------- MACD
# layout: [macd, signal, <ema fast>, <ema slow>, <ema signal>]
MACD_MACD = 0
MACD_SIGNAL = 1
_MACD_HDR = 2
_EMA_SIZE = 7


@njit(cache=True)
def new_macd_state(fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """MACD = ema(x, fast) - ema(x, slow); signal = ema(MACD, signal)."""
    s = np.empty(_MACD_HDR + 3 * _EMA_SIZE)
    s[0] = np.nan
    s[1] = np.nan
    o = _MACD_HDR
    s[o : o + _EMA_SIZE] = new_ema_state(fast)
    s[o + _EMA_SIZE : o + 2 * _EMA_SIZE] = new_ema_state(slow)
    s[o + 2 * _EMA_SIZE : o + 3 * _EMA_SIZE] = new_ema_state(signal)
    return s


@njit(cache=True)
def macd_step_nb(s: np.ndarray, x: float) -> float:
    """Push one value; returns MACD, the signal line is in ``s[MACD_SIGNAL]``."""
    if math.isnan(x):
        return np.nan
    o = _MACD_HDR
    m = ema_step_nb(s[o : o + _EMA_SIZE], x) - ema_step_nb(s[o + _EMA_SIZE : o + 2 * _EMA_SIZE], x)
    s[MACD_MACD] = m
    s[MACD_SIGNAL] = ema_step_nb(s[o + 2 * _EMA_SIZE : o + 3 * _EMA_SIZE], m)
    return m


@njit(cache=True)
def macd_nb(
    x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """Batch MACD (macd, signal): a loop over :func:`macd_step_nb`."""
    s = new_macd_state(fast, slow, signal)
    m = np.empty(x.shape[0])
    sig = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        m[i] = macd_step_nb(s, x[i])
        sig[i] = s[MACD_SIGNAL] if not math.isnan(x[i]) else np.nan
    return m, sig


# ---------------------------------------------------------------- Williams %R
@njit(cache=True)
def new_wpr_state(n: int = 14) -> np.ndarray:
    """Williams %R over ``n`` bars (the state is just a high/low tracker)."""
    return new_highlow_state(n)


@njit(cache=True)
def wpr_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """100 * (c - highest) / (highest - lowest); NaN when the range is 0."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    if not highlow_step_nb(s, h, lo):
        return np.nan
    rng = s[HL_HI] - s[HL_LO]
    if rng == 0.0:
        return np.nan
    return 100.0 * (c - s[HL_HI]) / rng


@njit(cache=True)
def wpr_nb(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 14) -> np.ndarray:
    """Batch Williams %R: a loop over :func:`wpr_step_nb`."""
    s = new_wpr_state(n)
    out = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        out[i] = wpr_step_nb(s, h[i], lo[i], c[i])
    return out


# ---------------------------------------------------------------- Bull / Bear Power
# layout: [bull, bear, <ema>]
BBP_BULL = 0
BBP_BEAR = 1


@njit(cache=True)
def new_bbp_state(n: int = 13) -> np.ndarray:
    """Elder's Bull/Bear Power: bull = high - ema(close, n), bear = low - ema(close, n)."""
    s = np.empty(2 + _EMA_SIZE)
    s[0] = np.nan
    s[1] = np.nan
    s[2:] = new_ema_state(n)
    return s


@njit(cache=True)
def bbp_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """Push one bar; returns bull power (bear power is in ``s[BBP_BEAR]``)."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    e = ema_step_nb(s[2:], c)
    s[BBP_BULL] = h - e
    s[BBP_BEAR] = lo - e
    return s[BBP_BULL]


@njit(cache=True)
def bbp_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 13
) -> tuple[np.ndarray, np.ndarray]:
    """Batch Bull/Bear Power (bull, bear): a loop over :func:`bbp_step_nb`."""
    s = new_bbp_state(n)
    bull = np.empty(c.shape[0])
    bear = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        bull[i] = bbp_step_nb(s, h[i], lo[i], c[i])
        bear[i] = s[BBP_BEAR] if not math.isnan(c[i]) else np.nan
    return bull, bear


# ---------------------------------------------------------------- Ultimate Oscillator
# layout: [n1, n2, n3, run, pos, prev_close, has_prev, ring_bp[n3], ring_tr[n3]]
_UO_HDR = 7


@njit(cache=True)
def new_uo_state(n1: int = 7, n2: int = 14, n3: int = 28) -> np.ndarray:
    """Ultimate Oscillator with windows n1 < n2 < n3."""
    s = np.zeros(_UO_HDR + 2 * n3)
    s[0] = n1
    s[1] = n2
    s[2] = n3
    return s


@njit(cache=True)
def uo_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """100 * (4*avg1 + 2*avg2 + avg3) / 7 with avgN = sum(bp)/sum(tr) over N bars.

    The sums are recomputed from the ring in one newest-to-oldest pass (56 adds): exact,
    so a flat stretch gives sum(tr) == 0 exactly and the value is NaN, never noise.
    """
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    if s[6] == 0.0:
        s[5] = c
        s[6] = 1.0
        return np.nan
    pc = s[5]
    s[5] = c
    n1 = int(s[0])
    n2 = int(s[1])
    n3 = int(s[2])
    tmin = lo if lo < pc else pc
    tmax = h if h > pc else pc
    pos = int(s[4])
    s[_UO_HDR + pos] = c - tmin
    s[_UO_HDR + n3 + pos] = tmax - tmin
    run = int(s[3])
    if run < n3:
        run += 1
        s[3] = run
    nxt = pos + 1
    s[4] = 0.0 if nxt == n3 else nxt
    if run < n3:
        return np.nan
    bp = 0.0
    tr = 0.0
    bp1 = 0.0
    tr1 = 0.0
    bp2 = 0.0
    tr2 = 0.0
    j = pos
    for k in range(n3):
        bp += s[_UO_HDR + j]
        tr += s[_UO_HDR + n3 + j]
        if k == n1 - 1:
            bp1 = bp
            tr1 = tr
        if k == n2 - 1:
            bp2 = bp
            tr2 = tr
        j = j - 1 if j > 0 else n3 - 1
    if tr1 == 0.0 or tr2 == 0.0 or tr == 0.0:
        return np.nan
    return 100.0 * (4.0 * (bp1 / tr1) + 2.0 * (bp2 / tr2) + bp / tr) / 7.0


@njit(cache=True)
def uo_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n1: int = 7, n2: int = 14, n3: int = 28
) -> np.ndarray:
    """Batch Ultimate Oscillator: a loop over :func:`uo_step_nb`."""
    s = new_uo_state(n1, n2, n3)
    out = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        out[i] = uo_step_nb(s, h[i], lo[i], c[i])
    return out

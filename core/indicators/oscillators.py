"""Oscillators: RSI, Stochastic, CCI, DMI/ADX, Awesome, Momentum, MACD, Stochastic RSI,
Williams %R, Bull/Bear Power, Ultimate Oscillator.

Price-input kernels treat a NaN input as a *missing bar*: NaN out, state untouched.
Divisions by a zero range give NaN for that bar (Pine semantics; TA-Lib returns 0).
Composite states embed their parts at offsets kept in their own header (relative to the
state's start), and call the parts' ``*_step_at_nb(s, o, ...)``: one flat float64 array,
however deep the composition, and no array views in the hot loop.
"""

from __future__ import annotations

import math

import numpy as np
from tandem.core.indicators.extremes import HL_HI, HL_LO, highlow_step_at_nb, new_highlow_state
from tandem.core.indicators.moving import (
    EMA_SIZE,
    chrono_absdev4_nb,
    chrono_sum4_nb,
    ema_step_at_nb,
    new_ema_state,
    new_rma_state,
    new_sma_state,
    ring_push_nb,
    sma_step_at_nb,
)
from tandem.core.jit import njit


@njit(cache=True)
def _concat(hdr: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = np.empty(hdr.shape[0] + a.shape[0] + b.shape[0])
    s[: hdr.shape[0]] = hdr
    s[hdr.shape[0] : hdr.shape[0] + a.shape[0]] = a
    s[hdr.shape[0] + a.shape[0] :] = b
    return s


# ---------------------------------------------------------------- RSI
# layout: [prev, has_prev, value, <rma up>, <rma down>]
_RSI_HDR = 3


@njit(cache=True)
def new_rsi_state(n: int = 14) -> np.ndarray:
    """Wilder RSI of length ``n``."""
    hdr = np.zeros(_RSI_HDR)
    hdr[2] = np.nan
    return _concat(hdr, new_rma_state(n), new_rma_state(n))


@njit(cache=True, inline="always")
def rsi_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """100 - 100/(1 + rma(up)/rma(down)); 100 when rma(down) = 0, else 0 when rma(up) = 0
    (Pine's order: a flat run, where both are 0, reads 100)."""
    if math.isnan(x):
        return np.nan
    if s[o + 1] == 0.0:
        s[o] = x
        s[o + 1] = 1.0
        return np.nan
    ch = x - s[o]
    s[o] = x
    up = ema_step_at_nb(s, o + _RSI_HDR, ch if ch > 0.0 else 0.0)
    dn = ema_step_at_nb(s, o + _RSI_HDR + EMA_SIZE, -ch if ch < 0.0 else 0.0)
    if math.isnan(up) or math.isnan(dn):
        r = np.nan
    elif dn == 0.0:
        r = 100.0
    elif up == 0.0:
        r = 0.0
    else:
        r = 100.0 - 100.0 / (1.0 + up / dn)
    s[o + 2] = r
    return r


@njit(cache=True)
def rsi_step_nb(s: np.ndarray, x: float) -> float:
    """One RSI step on a standalone state."""
    return rsi_step_at_nb(s, 0, x)


@njit(cache=True)
def rsi_nb(x: np.ndarray, n: int = 14) -> np.ndarray:
    """Batch RSI: a loop over the step."""
    s = new_rsi_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = rsi_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- Stochastic
# layout: [k, d, off_hl, off_k, off_d, <highlow n>, <sma k>, <sma d>]
STOCH_K = 0
STOCH_D = 1
_STOCH_HDR = 5


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
    s[o1:o2] = a
    s[o2:o3] = b
    s[o3:end] = c
    return s


@njit(cache=True, inline="always")
def _stoch_core(s: np.ndarray, o: int, src: float, h: float, lo: float) -> float:
    """Shared by Stochastic and Stochastic RSI: push a bar, return k; d goes to s[o+1]."""
    hl = o + int(s[o + 2])
    raw = np.nan
    if highlow_step_at_nb(s, hl, h, lo):
        rng = s[hl + HL_HI] - s[hl + HL_LO]
        if rng != 0.0:
            raw = 100.0 * (src - s[hl + HL_LO]) / rng
    k = sma_step_at_nb(s, o + int(s[o + 3]), raw)
    d = sma_step_at_nb(s, o + int(s[o + 4]), k)
    s[o + STOCH_K] = k
    s[o + STOCH_D] = d
    return k


@njit(cache=True, inline="always")
def stoch_step_at_nb(s: np.ndarray, o: int, h: float, lo: float, c: float) -> float:
    """Push one bar; returns k, d is in ``s[o + STOCH_D]``. NaN bar = missing bar."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    return _stoch_core(s, o, c, h, lo)


@njit(cache=True)
def stoch_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """One stochastic step on a standalone state."""
    return stoch_step_at_nb(s, 0, h, lo, c)


@njit(cache=True)
def stoch_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 14, k_smooth: int = 3, d_smooth: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Batch stochastic (k, d): a loop over the step."""
    s = new_stoch_state(n, k_smooth, d_smooth)
    k = np.empty(c.shape[0])
    d = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        k[i] = stoch_step_at_nb(s, 0, h[i], lo[i], c[i])
        d[i] = s[STOCH_D] if not math.isnan(c[i]) else np.nan
    return k, d


# ---------------------------------------------------------------- Stochastic RSI
# layout: <stochastic state (its header's offsets stay valid)>, <rsi state>
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


@njit(cache=True, inline="always")
def stochrsi_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """Push one close; returns k, d is in ``s[o + STOCH_D]``."""
    if math.isnan(x):
        return np.nan
    # the RSI sits right after the stochastic's last part (the d SMA), whose length is
    # its own header size + its n
    d_off = o + int(s[o + 4])
    r = rsi_step_at_nb(s, d_off + 4 + int(s[d_off]), x)
    return _stoch_core(s, o, r, r, r)


@njit(cache=True)
def stochrsi_step_nb(s: np.ndarray, x: float) -> float:
    """One Stochastic RSI step on a standalone state."""
    return stochrsi_step_at_nb(s, 0, x)


@njit(cache=True)
def stochrsi_nb(
    x: np.ndarray, rsi_n: int = 14, stoch_n: int = 14, k_smooth: int = 3, d_smooth: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Batch Stochastic RSI (k, d): a loop over the step."""
    s = new_stochrsi_state(rsi_n, stoch_n, k_smooth, d_smooth)
    k = np.empty(x.shape[0])
    d = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        k[i] = stochrsi_step_at_nb(s, 0, x[i])
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


@njit(cache=True, inline="always")
def cci_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """(x - sma) / (0.015 * mean |x_i - sma|), recomputed from the ring (as TA-Lib does);
    NaN when the mean deviation is 0, i.e. when the n values are equal (tested on the
    window: their rounded mean can miss them by an ulp and leave a tiny nonzero deviation)."""
    if math.isnan(x):
        return np.nan
    n = int(s[o])
    b = o + _CCI_HDR
    pos = ring_push_nb(s, o, b, x)
    if s[o + 1] < n:
        return np.nan
    # oldest-first sums (four interleaved partials): the rounding depends on the window
    # only, not on the ring's rotation
    mean = chrono_sum4_nb(s, b, n, pos) / n
    dev = chrono_absdev4_nb(s, b, n, pos, mean)
    dev /= n
    if dev == 0.0:
        return np.nan
    for j in range(n):
        if s[b + j] != x:
            return (x - mean) / (0.015 * dev)
    return np.nan


@njit(cache=True)
def cci_step_nb(s: np.ndarray, x: float) -> float:
    """One CCI step on a standalone state."""
    return cci_step_at_nb(s, 0, x)


@njit(cache=True)
def cci_nb(x: np.ndarray, n: int = 20) -> np.ndarray:
    """Batch CCI: a loop over the step."""
    s = new_cci_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = cci_step_at_nb(s, 0, x[i])
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
    s = np.zeros(_DMI_HDR + 4 * EMA_SIZE)
    s[0:3] = np.nan
    o = _DMI_HDR
    s[o : o + EMA_SIZE] = new_rma_state(di_n)
    s[o + EMA_SIZE : o + 2 * EMA_SIZE] = new_rma_state(di_n)
    s[o + 2 * EMA_SIZE : o + 3 * EMA_SIZE] = new_rma_state(di_n)
    s[o + 3 * EMA_SIZE : o + 4 * EMA_SIZE] = new_rma_state(adx_n)
    return s


@njit(cache=True, inline="always")
def dmi_step_at_nb(s: np.ndarray, o: int, h: float, lo: float, c: float) -> float:
    """Push one bar; returns ADX; +DI / -DI are in ``s[o + DMI_PDI]``, ``s[o + DMI_MDI]``.

    As Pine's ``ta.dmi``: the DIs are ``fixnan``-ed (a bar whose smoothed true range is 0
    keeps the previous DIs) and DX uses ``sum == 0 ? 1 : sum`` so ADX never turns NaN.
    """
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    if s[o + 6] == 0.0:
        s[o + 3] = h
        s[o + 4] = lo
        s[o + 5] = c
        s[o + 6] = 1.0
        return np.nan
    up = h - s[o + 3]
    dn = s[o + 4] - lo
    pc = s[o + 5]
    s[o + 3] = h
    s[o + 4] = lo
    s[o + 5] = c
    pdm = up if (up > dn and up > 0.0) else 0.0
    mdm = dn if (dn > up and dn > 0.0) else 0.0
    tr = max(h - lo, abs(h - pc), abs(lo - pc))
    r = o + _DMI_HDR
    a = ema_step_at_nb(s, r, pdm)
    b = ema_step_at_nb(s, r + EMA_SIZE, mdm)
    t = ema_step_at_nb(s, r + 2 * EMA_SIZE, tr)
    if math.isnan(t):
        return np.nan
    if t != 0.0:  # fixnan: otherwise keep the previous DIs
        s[o + DMI_PDI] = 100.0 * a / t
        s[o + DMI_MDI] = 100.0 * b / t
    p = s[o + DMI_PDI]
    m = s[o + DMI_MDI]
    if math.isnan(p):
        return np.nan
    tot = p + m
    dx = abs(p - m) / (tot if tot != 0.0 else 1.0)
    adx = 100.0 * ema_step_at_nb(s, r + 3 * EMA_SIZE, dx)
    s[o + DMI_ADX] = adx
    return adx


@njit(cache=True)
def dmi_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """One DMI step on a standalone state."""
    return dmi_step_at_nb(s, 0, h, lo, c)


@njit(cache=True)
def dmi_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, di_n: int = 14, adx_n: int = 14
) -> np.ndarray:
    """Batch DMI: columns +DI, -DI, ADX; a loop over the step."""
    s = new_dmi_state(di_n, adx_n)
    out = np.full((c.shape[0], 3), np.nan)
    for i in range(c.shape[0]):
        dmi_step_at_nb(s, 0, h[i], lo[i], c[i])
        if math.isnan(h[i]) or math.isnan(lo[i]) or math.isnan(c[i]):
            continue
        out[i, 0] = s[DMI_PDI]
        out[i, 1] = s[DMI_MDI]
        out[i, 2] = s[DMI_ADX]
    return out


# ---------------------------------------------------------------- Awesome Oscillator
# layout: [off_slow, <sma fast>, <sma slow>]
@njit(cache=True)
def new_ao_state(fast: int = 5, slow: int = 34) -> np.ndarray:
    """Awesome Oscillator: sma(hl2, fast) - sma(hl2, slow)."""
    a = new_sma_state(fast)
    hdr = np.zeros(1)
    hdr[0] = 1 + a.shape[0]
    return _concat(hdr, a, new_sma_state(slow))


@njit(cache=True, inline="always")
def ao_step_at_nb(s: np.ndarray, o: int, h: float, lo: float) -> float:
    """Push one bar's high/low; returns AO."""
    if math.isnan(h) or math.isnan(lo):
        return np.nan
    hl2 = (h + lo) / 2.0
    return sma_step_at_nb(s, o + 1, hl2) - sma_step_at_nb(s, o + int(s[o]), hl2)


@njit(cache=True)
def ao_step_nb(s: np.ndarray, h: float, lo: float) -> float:
    """One AO step on a standalone state."""
    return ao_step_at_nb(s, 0, h, lo)


@njit(cache=True)
def ao_nb(h: np.ndarray, lo: np.ndarray, fast: int = 5, slow: int = 34) -> np.ndarray:
    """Batch AO: a loop over the step."""
    s = new_ao_state(fast, slow)
    out = np.empty(h.shape[0])
    for i in range(h.shape[0]):
        out[i] = ao_step_at_nb(s, 0, h[i], lo[i])
    return out


# ---------------------------------------------------------------- Momentum
# layout: [n, run, pos, ring[n]]
@njit(cache=True)
def new_mom_state(n: int = 10) -> np.ndarray:
    """Momentum: x - x[n]."""
    s = np.zeros(3 + n)
    s[0] = n
    return s


@njit(cache=True, inline="always")
def mom_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """Push one value; returns x - x[n] (NaN until n earlier values exist)."""
    if math.isnan(x):
        return np.nan
    # the slot about to be overwritten holds the value from n bars ago
    out = x - s[o + 3 + int(s[o + 2])] if s[o + 1] >= s[o] else np.nan
    ring_push_nb(s, o, o + 3, x)
    return out


@njit(cache=True)
def mom_step_nb(s: np.ndarray, x: float) -> float:
    """One momentum step on a standalone state."""
    return mom_step_at_nb(s, 0, x)


@njit(cache=True)
def mom_nb(x: np.ndarray, n: int = 10) -> np.ndarray:
    """Batch momentum: a loop over the step."""
    s = new_mom_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = mom_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- MACD
# layout: [macd, signal, <ema fast>, <ema slow>, <ema signal>]
MACD_MACD = 0
MACD_SIGNAL = 1
_MACD_HDR = 2


@njit(cache=True)
def new_macd_state(fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """MACD = ema(x, fast) - ema(x, slow); signal = ema(MACD, signal)."""
    s = np.empty(_MACD_HDR + 3 * EMA_SIZE)
    s[0] = np.nan
    s[1] = np.nan
    o = _MACD_HDR
    s[o : o + EMA_SIZE] = new_ema_state(fast)
    s[o + EMA_SIZE : o + 2 * EMA_SIZE] = new_ema_state(slow)
    s[o + 2 * EMA_SIZE : o + 3 * EMA_SIZE] = new_ema_state(signal)
    return s


@njit(cache=True, inline="always")
def macd_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """Push one value; returns MACD, the signal line is in ``s[o + MACD_SIGNAL]``."""
    if math.isnan(x):
        return np.nan
    r = o + _MACD_HDR
    m = ema_step_at_nb(s, r, x) - ema_step_at_nb(s, r + EMA_SIZE, x)
    s[o + MACD_MACD] = m
    s[o + MACD_SIGNAL] = ema_step_at_nb(s, r + 2 * EMA_SIZE, m)
    return m


@njit(cache=True)
def macd_step_nb(s: np.ndarray, x: float) -> float:
    """One MACD step on a standalone state."""
    return macd_step_at_nb(s, 0, x)


@njit(cache=True)
def macd_nb(
    x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """Batch MACD (macd, signal): a loop over the step."""
    s = new_macd_state(fast, slow, signal)
    m = np.empty(x.shape[0])
    sig = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        m[i] = macd_step_at_nb(s, 0, x[i])
        sig[i] = s[MACD_SIGNAL] if not math.isnan(x[i]) else np.nan
    return m, sig


# ---------------------------------------------------------------- Williams %R
@njit(cache=True)
def new_wpr_state(n: int = 14) -> np.ndarray:
    """Williams %R over ``n`` bars (the state is just a high/low tracker)."""
    return new_highlow_state(n)


@njit(cache=True, inline="always")
def wpr_step_at_nb(s: np.ndarray, o: int, h: float, lo: float, c: float) -> float:
    """100 * (c - highest) / (highest - lowest); NaN when the range is 0."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    highlow_step_at_nb(s, o, h, lo)
    return wpr_from_highlow_nb(s, o, c)


@njit(cache=True, inline="always")
def wpr_from_highlow_nb(s: np.ndarray, hl: int, c: float) -> float:
    """Williams %R of close ``c`` from a high/low tracker at ``hl`` that has already taken
    this bar (NaN until its window is full): lets the rating reuse the Stochastic's
    14-bar tracker instead of keeping a second one fed the very same bars."""
    if s[hl + 1] < s[hl]:
        return np.nan
    rng = s[hl + HL_HI] - s[hl + HL_LO]
    if rng == 0.0:
        return np.nan
    return 100.0 * (c - s[hl + HL_HI]) / rng


@njit(cache=True)
def wpr_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """One Williams %R step on a standalone state."""
    return wpr_step_at_nb(s, 0, h, lo, c)


@njit(cache=True)
def wpr_nb(h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 14) -> np.ndarray:
    """Batch Williams %R: a loop over the step."""
    s = new_wpr_state(n)
    out = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        out[i] = wpr_step_at_nb(s, 0, h[i], lo[i], c[i])
    return out


# ---------------------------------------------------------------- Bull / Bear Power
# layout: [bull, bear, <ema>]
BBP_BULL = 0
BBP_BEAR = 1


@njit(cache=True)
def new_bbp_state(n: int = 13) -> np.ndarray:
    """Elder's Bull/Bear Power: bull = high - ema(close, n), bear = low - ema(close, n)."""
    s = np.empty(2 + EMA_SIZE)
    s[0] = np.nan
    s[1] = np.nan
    s[2:] = new_ema_state(n)
    return s


@njit(cache=True, inline="always")
def bbp_step_at_nb(s: np.ndarray, o: int, h: float, lo: float, c: float) -> float:
    """Push one bar; returns bull power (bear power is in ``s[o + BBP_BEAR]``)."""
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    e = ema_step_at_nb(s, o + 2, c)
    s[o + BBP_BULL] = h - e
    s[o + BBP_BEAR] = lo - e
    return h - e


@njit(cache=True)
def bbp_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """One Bull/Bear Power step on a standalone state."""
    return bbp_step_at_nb(s, 0, h, lo, c)


@njit(cache=True)
def bbp_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n: int = 13
) -> tuple[np.ndarray, np.ndarray]:
    """Batch Bull/Bear Power (bull, bear): a loop over the step."""
    s = new_bbp_state(n)
    bull = np.empty(c.shape[0])
    bear = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        bull[i] = bbp_step_at_nb(s, 0, h[i], lo[i], c[i])
        bear[i] = s[BBP_BEAR] if not math.isnan(c[i]) else np.nan
    return bull, bear


# ---------------------------------------------------------------- Ultimate Oscillator
# layout: [n1, n2, n3, run, pos, prev_close, has_prev, flat_run,
#          sum_bp1, sum_bp2, sum_bp3, sum_tr1, sum_tr2, sum_tr3, ring_bp[n3], ring_tr[n3]]
_UO_HDR = 14


@njit(cache=True)
def new_uo_state(n1: int = 7, n2: int = 14, n3: int = 28) -> np.ndarray:
    """Ultimate Oscillator with windows n1 < n2 < n3."""
    s = np.zeros(_UO_HDR + 2 * n3)
    s[0] = n1
    s[1] = n2
    s[2] = n3
    return s


@njit(cache=True, inline="always")
def uo_step_at_nb(s: np.ndarray, o: int, h: float, lo: float, c: float) -> float:
    """100 * (4*avg1 + 2*avg2 + avg3) / 7 with avgN = sum(bp)/sum(tr) over N bars.

    Running sums (O(1), as TA-Lib). A flat stretch (true range exactly 0) must read NaN,
    not the noise a drifted running sum leaves, so a window that holds only flat bars
    has its sums reset to exactly 0 (bp is 0 whenever tr is: 0 <= bp <= tr).
    """
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        return np.nan
    if s[o + 6] == 0.0:
        s[o + 5] = c
        s[o + 6] = 1.0
        return np.nan
    pc = s[o + 5]
    s[o + 5] = c
    n3 = int(s[o + 2])
    tmin = lo if lo < pc else pc
    tmax = h if h > pc else pc
    bp = c - tmin
    tr = tmax - tmin
    flat = s[o + 7] + 1.0 if tr == 0.0 else 0.0
    s[o + 7] = flat
    pos = int(s[o + 4])
    run = int(s[o + 3])  # values already in the ring
    rb = o + _UO_HDR
    for k in range(3):
        nk = int(s[o + k])
        if run >= nk:
            j = pos - nk
            if j < 0:
                j += n3
            s[o + 8 + k] += bp - s[rb + j]
            s[o + 11 + k] += tr - s[rb + n3 + j]
        else:
            s[o + 8 + k] += bp
            s[o + 11 + k] += tr
        if flat >= nk:
            s[o + 8 + k] = 0.0
            s[o + 11 + k] = 0.0
    ring_push_nb(s, o + 2, rb, bp)  # header [n3, run, pos] at o + 2
    s[rb + n3 + pos] = tr  # the true-range ring, same slot
    if s[o + 3] < n3:
        return np.nan
    t1 = s[o + 11]
    t2 = s[o + 12]
    t3 = s[o + 13]
    if t1 == 0.0 or t2 == 0.0 or t3 == 0.0:
        return np.nan
    return 100.0 * (4.0 * (s[o + 8] / t1) + 2.0 * (s[o + 9] / t2) + s[o + 10] / t3) / 7.0


@njit(cache=True)
def uo_step_nb(s: np.ndarray, h: float, lo: float, c: float) -> float:
    """One Ultimate Oscillator step on a standalone state."""
    return uo_step_at_nb(s, 0, h, lo, c)


@njit(cache=True)
def uo_nb(
    h: np.ndarray, lo: np.ndarray, c: np.ndarray, n1: int = 7, n2: int = 14, n3: int = 28
) -> np.ndarray:
    """Batch Ultimate Oscillator: a loop over the step."""
    s = new_uo_state(n1, n2, n3)
    out = np.empty(c.shape[0])
    for i in range(c.shape[0]):
        out[i] = uo_step_at_nb(s, 0, h[i], lo[i], c[i])
    return out

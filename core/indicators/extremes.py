"""Rolling highest/lowest (one tracker for both) and the Ichimoku lines built from them."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---------------------------------------------------------------- highest / lowest
# layout: [n, run, pos, t, hi, hi_t, lo, lo_t, ring_hi[n], ring_lo[n]]
HL_HI = 4
HL_LO = 6
_HL_HDR = 8


@njit(cache=True)
def new_highlow_state(n: int) -> np.ndarray:
    """Rolling max of ``hi`` and min of ``lo`` over the last ``n`` bars (current included)."""
    s = np.zeros(_HL_HDR + 2 * n)
    s[0] = n
    s[HL_HI] = np.nan
    s[HL_LO] = np.nan
    return s


@njit(cache=True)
def highlow_step_nb(s: np.ndarray, hi: float, lo: float) -> bool:
    """Push one bar; True when the window is full. Results are in ``s[HL_HI]``, ``s[HL_LO]``.

    Amortised O(1), exact (max/min never round): the extreme and the bar index where it
    occurred are kept; the ring is rescanned only when that bar leaves the window (TA-Lib's
    MAX/MIN do the same). Ties keep the newest bar so it lives longest.
    """
    n = int(s[0])
    if math.isnan(hi) or math.isnan(lo):
        s[1] = 0.0
        s[HL_HI] = np.nan
        s[HL_LO] = np.nan
        return False
    pos = int(s[2])
    s[_HL_HDR + pos] = hi
    s[_HL_HDR + n + pos] = lo
    t = s[3] + 1.0
    s[3] = t
    run = int(s[1])
    if run < n:
        run += 1
        s[1] = run
    if run == 1:
        s[HL_HI] = hi
        s[5] = t
        s[HL_LO] = lo
        s[7] = t
    else:
        if hi >= s[HL_HI]:
            s[HL_HI] = hi
            s[5] = t
        elif s[5] <= t - n:
            _rescan(s, n, pos, run, t, 0)
        if lo <= s[HL_LO]:
            s[HL_LO] = lo
            s[7] = t
        elif s[7] <= t - n:
            _rescan(s, n, pos, run, t, 1)
    nxt = pos + 1
    s[2] = 0.0 if nxt == n else nxt
    return run >= n


@njit(cache=True)
def _rescan(s: np.ndarray, n: int, pos: int, run: int, t: float, which: int) -> None:
    """Find the extreme of the last ``run`` entries, oldest to newest (newest wins ties)."""
    base = _HL_HDR + which * n
    j = pos - run + 1
    if j < 0:
        j += n
    best = s[base + j]
    best_t = t - run + 1
    for k in range(1, run):
        j = j + 1 if j + 1 < n else 0
        val = s[base + j]
        if (which == 0 and val >= best) or (which == 1 and val <= best):
            best = val
            best_t = t - run + 1 + k
    if which == 0:
        s[HL_HI] = best
        s[5] = best_t
    else:
        s[HL_LO] = best
        s[7] = best_t


@njit(cache=True)
def highlow_nb(hi: np.ndarray, lo: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch highest(hi, n), lowest(lo, n): a loop over :func:`highlow_step_nb`."""
    s = new_highlow_state(n)
    out_hi = np.empty(hi.shape[0])
    out_lo = np.empty(hi.shape[0])
    for i in range(hi.shape[0]):
        if highlow_step_nb(s, hi[i], lo[i]):
            out_hi[i] = s[HL_HI]
            out_lo[i] = s[HL_LO]
        else:
            out_hi[i] = np.nan
            out_lo[i] = np.nan
    return out_hi, out_lo


# ---------------------------------------------------------------- Ichimoku
# layout: [conv, base, lead1, lead2, lead1[lag], lead2[lag], lag, run, pos,
#          off9, off26, off52, off_ring, end, <hl conv>, <hl base>, <hl span>,
#          ring_lead1[lag], ring_lead2[lag]]
ICHI_CONV = 0
ICHI_BASE = 1
ICHI_LEAD1 = 2
ICHI_LEAD2 = 3
ICHI_LEAD1_LAG = 4
ICHI_LEAD2_LAG = 5
_ICHI_HDR = 14


@njit(cache=True)
def new_ichimoku_state(conv: int = 9, base: int = 26, span: int = 52, lag: int = 26) -> np.ndarray:
    """Ichimoku: conversion = midpoint(conv), base = midpoint(base), lead1 = their mean,
    lead2 = midpoint(span); plus lead1/lead2 as of ``lag`` bars ago (what the cloud shows
    under the current bar)."""
    a = new_highlow_state(conv)
    b = new_highlow_state(base)
    c = new_highlow_state(span)
    o1 = _ICHI_HDR
    o2 = o1 + a.shape[0]
    o3 = o2 + b.shape[0]
    o4 = o3 + c.shape[0]
    end = o4 + 2 * lag
    s = np.zeros(end)
    s[0:6] = np.nan
    s[6] = lag
    s[9] = o1
    s[10] = o2
    s[11] = o3
    s[12] = o4
    s[13] = end
    s[o1:o2] = a
    s[o2:o3] = b
    s[o3:o4] = c
    s[o4:end] = np.nan
    return s


@njit(cache=True)
def ichimoku_step_nb(s: np.ndarray, h: float, lo: float) -> float:
    """Push one bar; returns lead2 (the rating's guard). Every line is in the state slots.

    A NaN bar is a missing bar: the state is left untouched and NaN returned.
    """
    if math.isnan(h) or math.isnan(lo):
        return np.nan
    o1 = int(s[9])
    o2 = int(s[10])
    o3 = int(s[11])
    o4 = int(s[12])
    end = int(s[13])
    a = s[o1:o2]
    b = s[o2:o3]
    c = s[o3:o4]
    conv = (a[HL_HI] + a[HL_LO]) / 2.0 if highlow_step_nb(a, h, lo) else np.nan
    base = (b[HL_HI] + b[HL_LO]) / 2.0 if highlow_step_nb(b, h, lo) else np.nan
    lead2 = (c[HL_HI] + c[HL_LO]) / 2.0 if highlow_step_nb(c, h, lo) else np.nan
    lead1 = (conv + base) / 2.0
    lag = int(s[6])
    pos = int(s[8])
    run = int(s[7])
    # the ring slot about to be overwritten holds the value from exactly `lag` bars ago
    s[ICHI_LEAD1_LAG] = s[o4 + pos] if run >= lag else np.nan
    s[ICHI_LEAD2_LAG] = s[o4 + lag + pos] if run >= lag else np.nan
    s[o4 + pos] = lead1
    s[o4 + lag + pos] = lead2
    if run < lag:
        s[7] = run + 1
    nxt = pos + 1
    s[8] = 0.0 if nxt == lag else nxt
    s[ICHI_CONV] = conv
    s[ICHI_BASE] = base
    s[ICHI_LEAD1] = lead1
    s[ICHI_LEAD2] = lead2
    _ = end
    return lead2


@njit(cache=True)
def ichimoku_nb(h: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Batch Ichimoku (9, 26, 52, lag 26): columns conv, base, lead1, lead2, lead1[26],
    lead2[26]; a loop over :func:`ichimoku_step_nb`."""
    s = new_ichimoku_state(9, 26, 52, 26)
    out = np.empty((h.shape[0], 6))
    for i in range(h.shape[0]):
        ichimoku_step_nb(s, h[i], lo[i])
        for k in range(6):
            out[i, k] = s[k]
    return out

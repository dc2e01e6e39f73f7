"""Rolling highest/lowest (one tracker for both) and the Ichimoku lines built from them.

Same conventions as :mod:`tandem.core.indicators.moving`: ``*_step_at_nb(s, o, ...)`` works on a
state embedded at offset ``o``; ``*_step_nb(s, ...)`` on a standalone state.
"""

from __future__ import annotations

import math

import numpy as np
from tandem.core.indicators.moving import ring_push_nb
from tandem.core.jit import njit

# ---------------------------------------------------------------- highest / lowest
# layout: [n, run, t, hi, lo, hi_head, hi_len, lo_head, lo_len,
#          hi_val[n], hi_t[n], lo_val[n], lo_t[n]]   (two monotonic deques, ring-stored)
HL_HI = 3
HL_LO = 4
_HL_HDR = 9


@njit(cache=True)
def new_highlow_state(n: int) -> np.ndarray:
    """Rolling max of ``hi`` and min of ``lo`` over the last ``n`` bars (current included)."""
    s = np.zeros(_HL_HDR + 4 * n)
    s[0] = n
    s[HL_HI] = np.nan
    s[HL_LO] = np.nan
    return s


@njit(cache=True, inline="always")
def _deque_push(
    s: np.ndarray, o: int, n: int, t: float, x: float, slot: int, base: int, sign: float
) -> None:
    """Monotonic deque step (max when sign = 1, min when sign = -1): amortised O(1) and
    exact, with no rescans (a plain "rescan when the extreme leaves" tracker rescans on
    nearly every bar of a trend). Entries are (value, bar index) in a ring of n slots."""
    head = int(s[o + slot])
    ln = int(s[o + slot + 1])
    vals = o + base
    ts = vals + n
    # the oldest entry leaves once it is n bars old
    if ln > 0 and s[ts + head] <= t - n:
        head = head + 1 if head + 1 < n else 0
        ln -= 1
    # drop entries the new value dominates (ties: keep the newest, it lives longest)
    while ln > 0:
        back = head + ln - 1
        if back >= n:
            back -= n
        if sign * s[vals + back] > sign * x:
            break
        ln -= 1
    j = head + ln
    if j >= n:
        j -= n
    s[vals + j] = x
    s[ts + j] = t
    ln += 1
    s[o + slot] = head
    s[o + slot + 1] = ln


@njit(cache=True, inline="always")
def highlow_step_at_nb(s: np.ndarray, o: int, hi: float, lo: float) -> bool:
    """Push one bar; True when the window is full. Results: ``s[o+HL_HI]``, ``s[o+HL_LO]``.

    A NaN input empties the window (NaN until ``n`` fresh bars, Pine's window rule).
    """
    n = int(s[o])
    if math.isnan(hi) or math.isnan(lo):
        s[o + 1] = 0.0
        s[o + 6] = 0.0
        s[o + 8] = 0.0
        s[o + HL_HI] = np.nan
        s[o + HL_LO] = np.nan
        return False
    t = s[o + 2] + 1.0
    s[o + 2] = t
    run = int(s[o + 1])
    if run < n:
        run += 1
        s[o + 1] = run
    _deque_push(s, o, n, t, hi, 5, _HL_HDR, 1.0)
    _deque_push(s, o, n, t, lo, 7, _HL_HDR + 2 * n, -1.0)
    s[o + HL_HI] = s[o + _HL_HDR + int(s[o + 5])]
    s[o + HL_LO] = s[o + _HL_HDR + 2 * n + int(s[o + 7])]
    return run >= n


@njit(cache=True)
def highlow_step_nb(s: np.ndarray, hi: float, lo: float) -> bool:
    """One highest/lowest step on a standalone state."""
    return highlow_step_at_nb(s, 0, hi, lo)


@njit(cache=True)
def highlow_nb(hi: np.ndarray, lo: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch highest(hi, n), lowest(lo, n): a loop over the step."""
    s = new_highlow_state(n)
    out_hi = np.empty(hi.shape[0])
    out_lo = np.empty(hi.shape[0])
    for i in range(hi.shape[0]):
        if highlow_step_at_nb(s, 0, hi[i], lo[i]):
            out_hi[i] = s[HL_HI]
            out_lo[i] = s[HL_LO]
        else:
            out_hi[i] = np.nan
            out_lo[i] = np.nan
    return out_hi, out_lo


# ---------------------------------------------------------------- Ichimoku
# layout: [conv, base, lead1, lead2, lead1[lag], lead2[lag], lag, run, pos,
#          off_conv, off_base, off_span, off_ring, <hl conv>, <hl base>, <hl span>,
#          ring_lead1[lag], ring_lead2[lag]]          (offsets relative to the state start)
ICHI_CONV = 0
ICHI_BASE = 1
ICHI_LEAD1 = 2
ICHI_LEAD2 = 3
ICHI_LEAD1_LAG = 4
ICHI_LEAD2_LAG = 5
_ICHI_HDR = 13


@njit(cache=True)
def new_ichimoku_state(conv: int = 9, base: int = 26, span: int = 52, lag: int = 26) -> np.ndarray:
    """Ichimoku: conversion = midpoint(conv), base = midpoint(base), lead1 = their mean,
    lead2 = midpoint(span); plus lead1/lead2 as of ``lag`` bars ago (the cloud under the
    current bar)."""
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
    s[o1:o2] = a
    s[o2:o3] = b
    s[o3:o4] = c
    s[o4:end] = np.nan
    return s


@njit(cache=True, inline="always")
def _mid(s: np.ndarray, o: int, h: float, lo: float) -> float:
    if highlow_step_at_nb(s, o, h, lo):
        return (s[o + HL_HI] + s[o + HL_LO]) / 2.0
    return np.nan


@njit(cache=True, inline="always")
def ichimoku_step_at_nb(s: np.ndarray, o: int, h: float, lo: float) -> float:
    """Push one bar; returns lead2 (the rating's guard). Every line is in the state slots.

    A NaN bar is a missing bar: the state is left untouched and NaN returned.
    """
    if math.isnan(h) or math.isnan(lo):
        return np.nan
    conv = _mid(s, o + int(s[o + 9]), h, lo)
    base = _mid(s, o + int(s[o + 10]), h, lo)
    lead2 = _mid(s, o + int(s[o + 11]), h, lo)
    lead1 = (conv + base) / 2.0
    ring = o + int(s[o + 12])
    lag = int(s[o + 6])
    pos = int(s[o + 8])
    full = s[o + 7] >= lag
    # the ring slot about to be overwritten holds the value from exactly `lag` bars ago
    s[o + ICHI_LEAD1_LAG] = s[ring + pos] if full else np.nan
    s[o + ICHI_LEAD2_LAG] = s[ring + lag + pos] if full else np.nan
    ring_push_nb(s, o + 6, ring, lead1)  # header [lag, run, pos] at o + 6
    s[ring + lag + pos] = lead2  # the lead2 ring, same slot
    s[o + ICHI_CONV] = conv
    s[o + ICHI_BASE] = base
    s[o + ICHI_LEAD1] = lead1
    s[o + ICHI_LEAD2] = lead2
    return lead2


@njit(cache=True)
def ichimoku_step_nb(s: np.ndarray, h: float, lo: float) -> float:
    """One Ichimoku step on a standalone state."""
    return ichimoku_step_at_nb(s, 0, h, lo)


@njit(cache=True)
def ichimoku_nb(h: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Batch Ichimoku (9, 26, 52, lag 26): columns conv, base, lead1, lead2, lead1[26],
    lead2[26]; a loop over the step."""
    s = new_ichimoku_state(9, 26, 52, 26)
    out = np.empty((h.shape[0], 6))
    for i in range(h.shape[0]):
        if math.isnan(ichimoku_step_at_nb(s, 0, h[i], lo[i])) and math.isnan(h[i] + lo[i]):
            out[i, :] = np.nan
            continue
        for k in range(6):
            out[i, k] = s[k]
    return out

"""The rating kernel in lanes: many assets step the same bar together, for batch runs.

:mod:`core.indicators.rating` steps one asset at a time (the daemon's shape: one closed
candle of one asset). A batch over a universe can do better: it lays a block of assets
out side by side, *lanes*, and steps bar ``t`` of all of them at once. Every state slot
becomes a row of ``n_lanes`` values (struct of arrays: ``s[slot, lane]``, the scalar
kernel's slot offsets), and every statement of the kernel becomes a loop over the lanes,
which LLVM turns into vector instructions. The arithmetic for each lane is the scalar
kernel's, operation for operation, so the numbers are the same to the bit
(``tests/test_rating_lanes.py`` checks it against the scalar kernel, including gaps, flat
bars and zero or missing volume).

What keeps the lanes uniform: the warm-up tests and ring positions depend on the bar count
``t``, so one block holds assets at the same ``t`` (fresh states all are). A *missing* bar
(NaN high, low or close) leaves an asset's state untouched, so each asset is stepped on its
own real bars: lane ``a``'s ``k``-th step is asset ``a``'s ``k``-th real bar, and its
outputs are put back at that bar's row. An asset past its last real bar, and the padding
lanes that round a block up to whole vectors, step a dummy bar whose results are dropped
(the asset's state was kept at its last real bar); assets are sorted by their number of
real bars, so a block's assets finish together. Conditions that depend on the data (a
zero high-low range, NaN volume, a flat true range) are per-lane selects.

What makes LLVM vectorize a lane loop (each found with its ``-pass-remarks-missed``
report): no load under a condition (compute, then select), no call left in the loop
(the vote helpers are inlined by numba), few distinct state rows written per loop (each
pair of rows that might overlap costs a run-time check, and past a limit the loop stays
scalar), and ``error_model="numpy"`` (Python's division-by-zero check is a branch).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import carray, cfunc, njit, prange, types
from numba.core.ccallback import CFunc
from numba.extending import intrinsic

from core.indicators.rating import (
    _ADX,
    _AO_SUM,
    _CLOSE,
    _DI,
    _DMI_RMA,
    _DMI_SUM,
    _E12,
    _E13,
    _E26,
    _E50,
    _EMA,
    _EMA_A,
    _EMA_B,
    _EMA_N,
    _EMA_NF,
    _EMA_SUM,
    _HIGH,
    _HL2,
    _HL_BLOCK,
    _HL_EXT,
    _HL_N,
    _HULL_D,
    _HULL_RUN,
    _LEAD,
    _LOW,
    _M_ADX1,
    _M_AO1,
    _M_AO2,
    _M_BEAR1,
    _M_BULL1,
    _M_CCI1,
    _M_D1,
    _M_MOM1,
    _M_RSI1,
    _M_WR1,
    _MACD_SIG,
    _N_AO,
    _N_CLOSE,
    _N_HL,
    _N_LAG,
    _N_RSI,
    _N_UO,
    _N_VWMA,
    _PREV_C,
    _PREV_HL,
    _RSI_BLOCK,
    _RSI_COUNT,
    _RSI_EXT,
    _RSI_RING,
    _RSI_RMA,
    _RSI_SUM,
    _SIG_A,
    _SIG_B,
    _SMA_N,
    _SMA_SUM,
    _SRSI_D,
    _SRSI_K,
    _STOCH_D,
    _STOCH_K,
    _T,
    _UO_BP,
    _UO_FLAT,
    _UO_N,
    _UO_SUM,
    _UO_TR,
    _VOL,
    _VWMA_RUN,
    _WILDER_A,
    _WILDER_B,
    _XV,
    N_MA_VOTES,
    N_OSC_VOTES,
    N_RATING_OUT,
    OUT_ALL,
    OUT_MA,
    OUT_OSC,
    OUT_VOTES,
    RATING_STATE_SIZE,
    _ptr_at,
    _window_max_nb,
    _window_min_nb,
    ma_vote_nb,
    vote_nb,
)

# Rows of the per-block scratch ``w[row, lane]``: this bar's inputs and the values one
# section (one loop) hands to the next, the scalar kernel's local variables.
(
    _W_H,
    _W_L,
    _W_C,
    _W_V,
    _W_PCL,  # the previous close (RSI, DMI, UO read it after it is replaced)
    _W_MO,  # Momentum, computed before the close ring moves
    _W_HI9,  # the windows' highest highs / lowest lows (Ichimoku 9/26/52, Stochastic 14)
    _W_LO9,
    _W_HI14,
    _W_LO14,
    _W_HI26,
    _W_LO26,
    _W_HI52,
    _W_LO52,
    _W_R,  # RSI
    _W_RAW,  # Stochastic RSI's raw value
    _W_P0,  # per-bar values of DMI and the Ultimate Oscillator
    _W_P1,
    _W_P2,
    _W_P3,
) = range(20)
_N_W = 20

# Assets per block at most, and the multiple a block is padded to with dummy lanes (the
# vector width). Measured on one thread, per asset-bar: 16 lanes 314 ns, 32 239, 64 210,
# 128 181, 256 183 (each loop has a fixed cost per bar, paid once for the whole block).
LANES = 128
PAD = 4


# ---------------------------------------------------------------- helpers over lanes
# Inlined by numba into the lane loops (a call left in a loop keeps it scalar); the two
# small cached ones run outside the vector loops.
@njit(inline="always", error_model="numpy")
def _max3(x: float, y: float, z: float) -> float:
    """``max(x, y, z)`` of three numbers as selects (numba's builtin is a call, which
    keeps a loop from vectorizing); the same value for any inputs that are not NaN."""
    m = y if y > x else x
    return z if z > m else m


# The scalar kernel's vote rules, inlined into the lane loops.
_ma_vote = njit(inline="always", error_model="numpy")(ma_vote_nb.py_func)
_vote = njit(inline="always", error_model="numpy")(vote_nb.py_func)


@njit(inline="always", error_model="numpy")
def _dmi_moves_at(s, a, h, lo, pcl):
    """+DM, -DM and the true range of lane ``a`` (before its previous high/low move on)."""
    up_m = h - s[_PREV_HL, a]
    dn_m = s[_PREV_HL + 1, a] - lo
    pdm = up_m if ((up_m > dn_m) & (up_m > 0.0)) else 0.0
    mdm = dn_m if ((dn_m > up_m) & (dn_m > 0.0)) else 0.0
    return pdm, mdm, _max3(h - lo, abs(h - pcl), abs(lo - pcl))


@njit(cache=True, error_model="numpy")
def _block_suffix_lanes(s, n, newest, nw, suf, high) -> None:
    """Store the suffix maxima (``high``) or minima of the ``nw`` ring values before
    ``newest`` at rows ``suf .. suf+nw``: the block recompute of the windows above."""
    for a in range(n):
        s[suf + nw - 1, a] = s[newest - 1, a]
    for i in range(nw - 2, -1, -1):
        for a in range(n):
            y = s[newest - nw + i, a]
            m = s[suf + i + 1, a]
            if high:
                s[suf + i, a] = y if y > m else m
            else:
                s[suf + i, a] = y if y < m else m


@njit(inline="always", error_model="numpy")
def _adx_at(s, a):
    """DMI's DIs and ADX of lane ``a`` once its averages are updated (the scalar kernel's
    DMI section, as selects): updates the state, returns ADX (NaN until it exists)."""
    tr_a = s[_DMI_RMA + 2, a]
    has_tr = not math.isnan(tr_a)
    new_di = has_tr & (tr_a != 0.0)
    p_old = s[_DI, a]
    m_old = s[_DI + 1, a]
    p = 100.0 * s[_DMI_RMA, a] / tr_a
    m = 100.0 * s[_DMI_RMA + 1, a] / tr_a
    p = p if new_di else p_old
    m = m if new_di else m_old
    s[_DI, a] = p
    s[_DI + 1, a] = m
    go = has_tr & (not math.isnan(p))
    tot_di = p + m
    dx = abs(p - m) / (tot_di if tot_di != 0.0 else 1.0)
    seeded = s[_ADX + 3, a] != 0.0
    cnt = s[_ADX, a]
    total = s[_ADX + 1, a]
    val = s[_ADX + 2, a]
    smooth = go & seeded
    seeding = go & (not seeded)
    cnt1 = cnt + 1.0
    total1 = total + dx
    done = seeding & (cnt1 >= 14.0)
    val = _WILDER_A * dx + _WILDER_B * val if smooth else val
    val = total1 / 14.0 if done else val
    s[_ADX, a] = cnt1 if seeding else cnt
    s[_ADX + 1, a] = total1 if seeding else total
    s[_ADX + 2, a] = val
    s[_ADX + 3, a] = 1.0 if done else (1.0 if seeded else 0.0)
    return 100.0 * val if smooth | done else np.nan


@njit(inline="always", error_model="numpy")
def _sma3_at(s, o, a, x):
    """The scalar kernel's ``_sma3_nb`` in lane ``a`` (a NaN input restarts its window),
    with selects in place of branches so that the lane loops vectorize."""
    ok = not math.isnan(x)
    s0 = s[o, a]
    s1 = s[o + 1, a]
    s2 = s[o + 2, a]
    run = s[o + 3, a]
    n0 = s1 if ok else s0
    n1 = s2 if ok else s1
    n2 = x if ok else s2
    run1 = run + 1.0 if run < 3.0 else run
    run = run1 if ok else 0.0
    s[o, a] = n0
    s[o + 1, a] = n1
    s[o + 2, a] = n2
    s[o + 3, a] = run
    mean = (((0.0 + n0) + n1) + n2) / 3
    return mean if run >= 3.0 else np.nan


@njit(inline="always", error_model="numpy")
def _srsi_vote_at(s, vo, o2, a, raw, c) -> None:
    """Stochastic RSI's %K and %D from this bar's raw value, and its vote, in lane ``a``."""
    sk = _sma3_at(s, _SRSI_K, a, raw)
    sd = _sma3_at(s, _SRSI_D, a, sk)
    ema50 = s[_EMA + _E50, a]
    vo[o2 + 7, a] = _vote(
        ema50,
        sk + sd,
        (c < ema50) & (sk < 20.0) & (sd < 20.0) & (sk > sd),
        (c > ema50) & (sk > 80.0) & (sd > 80.0) & (sk < sd),
    )


@njit(inline="always", error_model="numpy")
def _sum20_at(s, first, a):
    """The scalar kernel's ``sum4_nb`` over the 20 rows from ``first`` in lane ``a``: four
    partial sums added pairwise (inlined into the lane loops, which LLVM vectorizes)."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    p3 = 0.0
    for q in range(0, 20, 4):
        p0 += s[first + q, a]
        p1 += s[first + q + 1, a]
        p2 += s[first + q + 2, a]
        p3 += s[first + q + 3, a]
    return (p0 + p1) + (p2 + p3)


@njit(cache=True, error_model="numpy")
def _srsi_one_lane(s, w, a, pr) -> None:
    """Stochastic RSI's raw value of lane ``a`` alone, with the scalar kernel's helpers on
    its state column: for lanes whose RSI counts disagree (never with finite prices)."""
    r = w[_W_R, a]
    if math.isnan(r):
        s[_RSI_COUNT, a] = 0.0
        w[_W_RAW, a] = np.nan
        return
    col = s[:, a]
    nr = _RSI_RING + pr + _N_RSI
    col[_RSI_RING + pr] = r
    col[nr] = r
    cnt = col[_RSI_COUNT]
    col[_RSI_COUNT] = cnt + 1.0
    j = int(cnt) % _N_RSI
    n14 = np.int64(_N_RSI)
    hi = _window_max_nb(col, nr, n14, j, r, np.int64(_RSI_EXT), np.int64(_RSI_BLOCK))
    lo = _window_min_nb(col, nr, n14, j, r, np.int64(_RSI_EXT + 1), np.int64(_RSI_BLOCK + _N_RSI))
    raw = np.nan
    if cnt + 1.0 >= _N_RSI:
        rng = hi - lo
        if rng != 0.0:
            raw = 100.0 * (r - lo) / rng
    w[_W_RAW, a] = raw


# ---------------------------------------------------------------- the step
# Compiled once, as a C function called by address (as the scalar kernel is, and for the
# same reason): a jitted callee is linked into its caller and optimized again there,
# which made a cold start 62 s instead of 42 s.
def _lanes_step(sp, wp, vp, t, n) -> None:  # noqa: C901 - one kernel, read top-down
    """Step lanes ``0..n`` of a block one bar: the state at ``sp`` (RATING_STATE_SIZE, n),
    inputs in rows ``_W_H/_W_L/_W_C/_W_V`` of the scratch at ``wp`` (_N_W, n), outputs to
    ``vp`` (N_RATING_OUT, n); ``n`` is a multiple of PAD. ``t`` = the bars every lane has
    consumed; no lane's bar is missing (the caller steps each asset on its real bars).
    Sections and arithmetic are the scalar kernel's; conditions on ``t`` are tested once
    per bar, conditions on the data per lane."""
    n = n // PAD * PAD  # tells LLVM the lane count is whole vectors: no remainder loops
    s = carray(sp, (RATING_STATE_SIZE, n))
    w = carray(wp, (_N_W, n))
    vo = carray(vp, (N_RATING_OUT, n))
    ti = t
    tf = float(t)
    ov = OUT_VOTES
    o2 = ov + N_MA_VOTES
    c_ = w[_W_C]  # views of the block's own scratch rows
    h_ = w[_W_H]
    l_ = w[_W_L]

    # ---- close ring, SMAs, Momentum
    pc = ti % _N_CLOSE
    newest = _CLOSE + pc + _N_CLOSE
    for k in range(6):
        nk = _SMA_N[k]
        r = _SMA_SUM + k
        if tf >= nk:
            old = newest - nk
            for a in range(n):
                s[r, a] += c_[a] - s[old, a]
        else:
            for a in range(n):
                s[r, a] += c_[a]
    if tf >= 10:
        for a in range(n):
            w[_W_MO, a] = c_[a] - s[newest - 10, a]
    else:
        for a in range(n):
            w[_W_MO, a] = np.nan
    for a in range(n):
        s[_CLOSE + pc, a] = c_[a]
        s[newest, a] = c_[a]
    for k in range(6):
        nk = _SMA_N[k]
        r = _SMA_SUM + k
        if tf + 1 >= nk:
            for a in range(n):
                vo[ov + k, a] = _ma_vote(c_[a], s[r, a] / nk)
        else:
            for a in range(n):
                vo[ov + k, a] = np.nan

    # ---- EMAs
    for k in range(9):
        nk = _EMA_N[k]
        r = _EMA + k
        if tf >= nk:
            al = _EMA_A[k]
            be = _EMA_B[k]
            for a in range(n):
                s[r, a] = al * c_[a] + be * s[r, a]
        else:
            rs = _EMA_SUM + k
            for a in range(n):
                s[rs, a] += c_[a]
            if tf + 1 >= nk:
                nf = _EMA_NF[k]
                for a in range(n):
                    s[r, a] = s[rs, a] / nf
    for k in range(6):
        for a in range(n):
            vo[ov + 6 + k, a] = _ma_vote(c_[a], s[_EMA + k, a])

    # ---- Hull MA 9: weights newest first, summed as the scalar kernel's loops do
    if tf + 1 >= 9:
        for a in range(n):
            acc4 = 0.0
            acc4 += 4 * s[newest, a]
            acc4 += 3 * s[newest - 1, a]
            acc4 += 2 * s[newest - 2, a]
            acc4 += 1 * s[newest - 3, a]
            acc9 = 0.0
            acc9 += 9 * s[newest, a]
            acc9 += 8 * s[newest - 1, a]
            acc9 += 7 * s[newest - 2, a]
            acc9 += 6 * s[newest - 3, a]
            acc9 += 5 * s[newest - 4, a]
            acc9 += 4 * s[newest - 5, a]
            acc9 += 3 * s[newest - 6, a]
            acc9 += 2 * s[newest - 7, a]
            acc9 += 1 * s[newest - 8, a]
            d = 2.0 * (acc4 / 10.0) - acc9 / 45.0
            d0 = s[_HULL_D + 1, a]
            d1 = s[_HULL_D + 2, a]
            s[_HULL_D, a] = d0
            s[_HULL_D + 1, a] = d1
            s[_HULL_D + 2, a] = d
            run = s[_HULL_RUN, a]
            run = run + 1.0 if run < 3.0 else run
            s[_HULL_RUN, a] = run
            acc = 0.0
            acc += 3 * d
            acc += 2 * d1
            acc += 1 * d0
            hull = acc / 6.0 if run >= 3.0 else np.nan
            vo[ov + 12, a] = _ma_vote(c_[a], hull)
    else:
        for a in range(n):
            vo[ov + 12, a] = np.nan

    # ---- VWMA 20 (a NaN volume restarts that lane's window and leaves its rings)
    pv = ti % _N_VWMA
    first = _XV + pv + 1  # the window, oldest first, once this bar is in
    first_v = _VOL + pv + 1
    for a in range(n):
        x = w[_W_V, a]
        ok = not math.isnan(x)
        xv_old = s[_XV + pv, a]
        vol_old = s[_VOL + pv, a]
        xv = c_[a] * x if ok else xv_old
        vv = x if ok else vol_old
        s[_XV + pv, a] = xv
        s[_XV + pv + _N_VWMA, a] = xv
        s[_VOL + pv, a] = vv
        s[_VOL + pv + _N_VWMA, a] = vv
        run = s[_VWMA_RUN, a]
        run1 = run + 1.0 if run < _N_VWMA else run
        run = run1 if ok else 0.0
        s[_VWMA_RUN, a] = run
    # Two loops, not one: a loop that writes many rows and reads many others needs more
    # run-time overlap checks than LLVM allows, and stays scalar.
    for a in range(n):
        run = s[_VWMA_RUN, a]
        num = _sum20_at(s, first, a)
        den = _sum20_at(s, first_v, a)
        good = (run >= _N_VWMA) & (den != 0.0)
        vo[ov + 13, a] = _ma_vote(c_[a], num / den if good else np.nan)

    # ---- high/low rings: Ichimoku 9/26/52, Stochastic / Williams %R 14
    ph = ti % _N_HL
    nh = _HIGH + ph + _N_HL
    nl = _LOW + ph + _N_HL
    e = _HL_EXT
    # A window whose block of n values just completed stores that block's suffix extremes
    # (the scalar kernel's _window_max_nb / _window_min_nb, at j == 0: once in n bars).
    # The rings take this bar first, as in the scalar kernel: for the 52-bar window the
    # oldest value of the completed block shares its ring slot with the new one (its
    # suffix[0] is never read, but the states stay byte-identical).
    if ti % 9 == 0 or ti % 14 == 0 or ti % 26 == 0 or ti % 52 == 0:
        for a in range(n):
            s[_HIGH + ph, a] = h_[a]
            s[nh, a] = h_[a]
            s[_LOW + ph, a] = l_[a]
            s[nl, a] = l_[a]
    for q in range(4):
        nq = _HL_N[q]
        if ti % nq == 0:
            _block_suffix_lanes(s, n, nh, nq, _HL_BLOCK[q], True)
            _block_suffix_lanes(s, n, nl, nq, _HL_BLOCK[q] + nq, False)
    pl = ti % _N_LAG
    # Loads never sit under a condition in these loops (LLVM would not vectorize them):
    # compute, then select. One loop: the rings, the running extremes and Ichimoku.
    conv_ok = tf + 1 >= 9
    base_ok = tf + 1 >= 26
    lead_ok = tf + 1 >= 52
    lag_ok = tf >= _N_LAG
    for a in range(n):
        s[_HIGH + ph, a] = h_[a]
        s[nh, a] = h_[a]
        s[_LOW + ph, a] = l_[a]
        s[nl, a] = l_[a]
    for q in range(4):  # window q: running extremes of its block, then the window's
        nq = _HL_N[q]
        jq = ti % nq
        bq = _HL_BLOCK[q]
        for a in range(n):
            h = h_[a]
            lo = l_[a]
            p = s[e + 2 * q, a]
            p = h if jq == 0 else (h if h > p else p)
            s[e + 2 * q, a] = p
            x = s[bq + jq + 1, a]  # the previous block's suffix (unused at its last j)
            w[_W_HI9 + 2 * q, a] = p if jq == nq - 1 else (x if x > p else p)
            p = s[e + 2 * q + 1, a]
            p = lo if jq == 0 else (lo if lo < p else p)
            s[e + 2 * q + 1, a] = p
            x = s[bq + nq + jq + 1, a]
            w[_W_LO9 + 2 * q, a] = p if jq == nq - 1 else (x if x < p else p)
    for a in range(n):
        c = c_[a]
        conv = (w[_W_HI9, a] + w[_W_LO9, a]) / 2.0
        conv = conv if conv_ok else np.nan
        base = (w[_W_HI26, a] + w[_W_LO26, a]) / 2.0
        base = base if base_ok else np.nan
        lead2 = (w[_W_HI52, a] + w[_W_LO52, a]) / 2.0
        lead2 = lead2 if lead_ok else np.nan
        lead1 = (conv + base) / 2.0
        l1x = s[_LEAD + pl, a]
        l2x = s[_LEAD + _N_LAG + pl, a]
        l1x = l1x if lag_ok else np.nan
        l2x = l2x if lag_ok else np.nan
        s[_LEAD + pl, a] = lead1
        s[_LEAD + _N_LAG + pl, a] = lead2
        vo[ov + 14, a] = _vote(
            lead2,
            lead2,
            (l1x > l2x) & (base > l1x) & (conv > base) & (c > conv),
            (l1x < l2x) & (base < l1x) & (conv < base) & (c < conv),
        )

    # ---- RSI 14
    for a in range(n):
        w[_W_PCL, a] = s[_PREV_C, a]
        s[_PREV_C, a] = c_[a]
    if ti >= 1:
        if ti > 14:
            for a in range(n):
                ch = c_[a] - w[_W_PCL, a]
                gain = ch if ch > 0.0 else 0.0
                loss = -ch if ch < 0.0 else 0.0
                s[_RSI_RMA, a] = _WILDER_A * gain + _WILDER_B * s[_RSI_RMA, a]
                s[_RSI_RMA + 1, a] = _WILDER_A * loss + _WILDER_B * s[_RSI_RMA + 1, a]
        else:
            for a in range(n):
                ch = c_[a] - w[_W_PCL, a]
                gain = ch if ch > 0.0 else 0.0
                loss = -ch if ch < 0.0 else 0.0
                s[_RSI_SUM, a] += gain
                s[_RSI_SUM + 1, a] += loss
            if ti == 14:
                for a in range(n):
                    s[_RSI_RMA, a] = s[_RSI_SUM, a] / 14.0
                    s[_RSI_RMA + 1, a] = s[_RSI_SUM + 1, a] / 14.0
        for a in range(n):
            up = s[_RSI_RMA, a]
            dn = s[_RSI_RMA + 1, a]
            r = 100.0 - 100.0 / (1.0 + up / dn)
            r = 0.0 if up == 0.0 else r
            r = 100.0 if dn == 0.0 else r
            w[_W_R, a] = np.nan if math.isnan(up) or math.isnan(dn) else r
    else:
        for a in range(n):
            w[_W_R, a] = np.nan
    for a in range(n):
        r = w[_W_R, a]
        r1 = s[_M_RSI1, a]
        vo[o2 + 0, a] = _vote(r1, r, (r < 30.0) & (r > r1), (r > 70.0) & (r < r1))
        s[_M_RSI1, a] = r

    # ---- Stochastic 14, 3, 3
    raw_ok = tf + 1 >= 14
    for a in range(n):
        rng = w[_W_HI14, a] - w[_W_LO14, a]
        raw = 100.0 * (c_[a] - w[_W_LO14, a]) / rng
        raw = raw if raw_ok & (rng != 0.0) else np.nan
        k_ = _sma3_at(s, _STOCH_K, a, raw)
        d_ = _sma3_at(s, _STOCH_D, a, k_)
        d1 = s[_M_D1, a]
        vo[o2 + 1, a] = _vote(
            d1,
            k_ + d_,
            (k_ < 20.0) & (d_ < 20.0) & (k_ > d_),
            (k_ > 80.0) & (d_ > 80.0) & (k_ < d_),
        )
        s[_M_D1, a] = d_

    # ---- CCI 20: mean, then mean deviation, each as the scalar kernel's four partial sums
    if tf + 1 >= 20:
        first = newest - 19
        for a in range(n):
            mean = _sum20_at(s, first, a) / 20
            p0 = 0.0
            p1 = 0.0
            p2 = 0.0
            p3 = 0.0
            for q in range(0, 20, 4):
                p0 += abs(s[first + q, a] - mean)
                p1 += abs(s[first + q + 1, a] - mean)
                p2 += abs(s[first + q + 2, a] - mean)
                p3 += abs(s[first + q + 3, a] - mean)
            dev = (p0 + p1) + (p2 + p3)
            dev /= 20
            cc = (c_[a] - mean) / (0.015 * dev)
            cc = cc if dev != 0.0 else np.nan
            cc1 = s[_M_CCI1, a]
            vo[o2 + 2, a] = _vote(cc1, cc, (cc < -100.0) & (cc > cc1), (cc > 100.0) & (cc < cc1))
            s[_M_CCI1, a] = cc
    else:
        for a in range(n):
            vo[o2 + 2, a] = np.nan
            s[_M_CCI1, a] = np.nan

    # ---- DMI 14 / ADX 14: directional moves and true range, their Wilder averages, then
    # the DIs (kept through a zero average range) and ADX, per lane as selects
    if ti > 14:  # seeded: one loop
        for a in range(n):
            pdm, mdm, tr = _dmi_moves_at(s, a, h_[a], l_[a], w[_W_PCL, a])
            s[_DMI_RMA, a] = _WILDER_A * pdm + _WILDER_B * s[_DMI_RMA, a]
            s[_DMI_RMA + 1, a] = _WILDER_A * mdm + _WILDER_B * s[_DMI_RMA + 1, a]
            s[_DMI_RMA + 2, a] = _WILDER_A * tr + _WILDER_B * s[_DMI_RMA + 2, a]
        for a in range(n):
            w[_W_P3, a] = _adx_at(s, a)
    elif ti >= 1:
        for a in range(n):
            pdm, mdm, tr = _dmi_moves_at(s, a, h_[a], l_[a], w[_W_PCL, a])
            w[_W_P0, a] = pdm
            w[_W_P1, a] = mdm
            w[_W_P2, a] = tr
        for a in range(n):
            s[_DMI_SUM, a] += w[_W_P0, a]
            s[_DMI_SUM + 1, a] += w[_W_P1, a]
            s[_DMI_SUM + 2, a] += w[_W_P2, a]
        if ti == 14:
            for a in range(n):
                s[_DMI_RMA, a] = s[_DMI_SUM, a] / 14.0
                s[_DMI_RMA + 1, a] = s[_DMI_SUM + 1, a] / 14.0
                s[_DMI_RMA + 2, a] = s[_DMI_SUM + 2, a] / 14.0
        for a in range(n):
            w[_W_P3, a] = _adx_at(s, a)
    else:
        for a in range(n):
            w[_W_P3, a] = np.nan
    for a in range(n):
        adx = w[_W_P3, a]
        s[_PREV_HL, a] = h_[a]
        s[_PREV_HL + 1, a] = l_[a]
        adx1 = s[_M_ADX1, a]
        pdi = s[_DI, a]
        mdi = s[_DI + 1, a]
        vo[o2 + 3, a] = _vote(
            adx,
            adx,
            (adx > 20.0) & (adx > adx1) & (pdi > mdi),
            (adx > 20.0) & (adx > adx1) & (pdi < mdi),
        )
        s[_M_ADX1, a] = adx

    # ---- Awesome Oscillator
    pa = ti % _N_AO
    na = _HL2 + pa + _N_AO
    if tf >= _N_AO:
        for a in range(n):
            hl2 = (h_[a] + l_[a]) / 2.0
            s[_AO_SUM, a] += hl2 - s[na - _N_AO, a]
            s[_HL2 + pa, a] = hl2
            s[na, a] = hl2
    else:
        for a in range(n):
            hl2 = (h_[a] + l_[a]) / 2.0
            s[_AO_SUM, a] += hl2
            s[_HL2 + pa, a] = hl2
            s[na, a] = hl2
    for a in range(n):
        fast = 0.0
        fast += s[na - 4, a]
        fast += s[na - 3, a]
        fast += s[na - 2, a]
        fast += s[na - 1, a]
        fast += s[na, a]
        ao = fast / 5 - s[_AO_SUM, a] / _N_AO
        ao = ao if tf + 1 >= _N_AO else np.nan
        ao1 = s[_M_AO1, a]
        ao2 = s[_M_AO2, a]
        vo[o2 + 4, a] = _vote(
            ao1,
            ao,
            ((ao > 0.0) & (ao1 <= 0.0)) | ((ao > 0.0) & (ao1 > 0.0) & (ao > ao1) & (ao2 > ao1)),
            ((ao < 0.0) & (ao1 >= 0.0)) | ((ao < 0.0) & (ao1 < 0.0) & (ao < ao1) & (ao2 < ao1)),
        )
        s[_M_AO2, a] = ao1
        s[_M_AO1, a] = ao

    # ---- Momentum 10
    for a in range(n):
        mo = w[_W_MO, a]
        mo1 = s[_M_MOM1, a]
        vo[o2 + 5, a] = _vote(mo1, mo, mo > mo1, mo < mo1)
        s[_M_MOM1, a] = mo

    # ---- MACD 12, 26, 9: the signal EMA, seeded with the SMA of the first 9 MACD values
    sg = _MACD_SIG
    for a in range(n):
        m_ = s[_EMA + _E12, a] - s[_EMA + _E26, a]
        has_m = not math.isnan(m_)
        seeded = s[sg + 3, a] != 0.0
        cnt = s[sg, a]
        total = s[sg + 1, a]
        val = s[sg + 2, a]
        seeding = (not seeded) & has_m
        cnt1 = cnt + 1.0
        total1 = total + m_
        done = seeding & (cnt1 >= 9.0)
        val = _SIG_A * m_ + _SIG_B * val if seeded & has_m else val
        val = total1 / 9.0 if done else val
        restart = (not seeded) & (not has_m)
        s[sg, a] = cnt1 if seeding else (0.0 if restart else cnt)
        s[sg + 1, a] = total1 if seeding else (0.0 if restart else total)
        s[sg + 2, a] = val
        flag = 1.0 if done else s[sg + 3, a]
        s[sg + 3, a] = flag
        sig = val if flag != 0.0 else np.nan
        vo[o2 + 6, a] = _vote(sig, m_, m_ > sig, m_ < sig)

    # ---- Stochastic RSI 14, 14, 3, 3: in lanes when every lane has an RSI and they agree
    # on how many came before it (always, with finite prices), otherwise lane by lane
    pr = ti % _N_RSI
    cnt0 = s[_RSI_COUNT, 0]
    n_nan = 0
    same = True
    for a in range(n):
        if math.isnan(w[_W_R, a]):
            n_nan += 1
        same &= s[_RSI_COUNT, a] == cnt0
    if n_nan == 0 and same:  # the RSI ring, its window and raw; then %K, %D, the vote
        nr = _RSI_RING + pr + _N_RSI
        j = int(cnt0) % _N_RSI
        if j == 0:  # the ring takes this RSI first (see the high/low windows)
            for a in range(n):
                s[_RSI_RING + pr, a] = w[_W_R, a]
                s[nr, a] = w[_W_R, a]
            _block_suffix_lanes(s, n, nr, _N_RSI, _RSI_BLOCK, True)
            _block_suffix_lanes(s, n, nr, _N_RSI, _RSI_BLOCK + _N_RSI, False)
        raw_ok = cnt0 + 1.0 >= _N_RSI
        last = j == _N_RSI - 1
        for a in range(n):
            r = w[_W_R, a]
            s[_RSI_RING + pr, a] = r
            s[nr, a] = r
            s[_RSI_COUNT, a] = cnt0 + 1.0
            p = s[_RSI_EXT, a]
            p = r if j == 0 else (r if r > p else p)
            s[_RSI_EXT, a] = p
            x = s[_RSI_BLOCK + j + 1, a]
            hi = p if last else (x if x > p else p)
            p = s[_RSI_EXT + 1, a]
            p = r if j == 0 else (r if r < p else p)
            s[_RSI_EXT + 1, a] = p
            x = s[_RSI_BLOCK + _N_RSI + j + 1, a]
            lo = p if last else (x if x < p else p)
            rng = hi - lo
            raw = 100.0 * (r - lo) / rng
            w[_W_RAW, a] = raw if raw_ok & (rng != 0.0) else np.nan
        for a in range(n):
            _srsi_vote_at(s, vo, o2, a, w[_W_RAW, a], c_[a])
    else:
        for a in range(n):  # warming up (no RSI yet), or lanes that disagree
            _srsi_one_lane(s, w, np.int64(a), pr)
        for a in range(n):
            _srsi_vote_at(s, vo, o2, a, w[_W_RAW, a], c_[a])

    # ---- Williams %R 14
    for a in range(n):
        rng = w[_W_HI14, a] - w[_W_LO14, a]
        wr = 100.0 * (c_[a] - w[_W_HI14, a]) / rng
        wr = wr if (tf + 1 >= 14) & (rng != 0.0) else np.nan
        wr1 = s[_M_WR1, a]
        vo[o2 + 8, a] = _vote(wr1, wr, (wr < -80.0) & (wr > wr1), (wr > -20.0) & (wr < wr1))
        s[_M_WR1, a] = wr

    # ---- Bull / Bear Power 13
    for a in range(n):
        c = c_[a]
        ema50 = s[_EMA + _E50, a]
        e13 = s[_EMA + _E13, a]
        bull = h_[a] - e13
        bear = l_[a] - e13
        bull1 = s[_M_BULL1, a]
        bear1 = s[_M_BEAR1, a]
        vo[o2 + 9, a] = _vote(
            ema50,
            bull,
            (c > ema50) & (bear < 0.0) & (bear > bear1),
            (c < ema50) & (bull > 0.0) & (bull < bull1),
        )
        s[_M_BULL1, a] = bull
        s[_M_BEAR1, a] = bear

    # ---- Ultimate Oscillator 7, 14, 28: running sums of buying pressure and true range
    if ti >= 1:
        n_in = tf - 1.0  # values already in the rings (the first bar has no true range)
        pu = (ti - 1) % _N_UO
        nb = _UO_BP + pu + _N_UO
        nt = _UO_TR + pu + _N_UO
        for a in range(n):
            pcl = w[_W_PCL, a]
            lo = l_[a]
            h = h_[a]
            tmin = lo if lo < pcl else pcl
            tmax = h if h > pcl else pcl
            w[_W_P0, a] = c_[a] - tmin  # buying pressure
            tr_u = tmax - tmin
            w[_W_P1, a] = tr_u
            flat = s[_UO_FLAT, a] + 1.0
            flat = flat if tr_u == 0.0 else 0.0
            w[_W_P2, a] = flat
            s[_UO_FLAT, a] = flat
        for k in range(3):
            nk = _UO_N[k]
            if n_in >= nk:  # the value leaving the window is nk bars old
                for a in range(n):
                    sb = s[_UO_SUM + k, a] + (w[_W_P0, a] - s[nb - nk, a])
                    st = s[_UO_SUM + 3 + k, a] + (w[_W_P1, a] - s[nt - nk, a])
                    flat = w[_W_P2, a] >= nk
                    s[_UO_SUM + k, a] = 0.0 if flat else sb
                    s[_UO_SUM + 3 + k, a] = 0.0 if flat else st
            else:
                for a in range(n):
                    sb = s[_UO_SUM + k, a] + w[_W_P0, a]
                    st = s[_UO_SUM + 3 + k, a] + w[_W_P1, a]
                    flat = w[_W_P2, a] >= nk
                    s[_UO_SUM + k, a] = 0.0 if flat else sb
                    s[_UO_SUM + 3 + k, a] = 0.0 if flat else st
        for a in range(n):
            s[_UO_BP + pu, a] = w[_W_P0, a]
            s[nb, a] = w[_W_P0, a]
            s[_UO_TR + pu, a] = w[_W_P1, a]
            s[nt, a] = w[_W_P1, a]
        if n_in + 1.0 >= _N_UO:
            for a in range(n):
                t1 = s[_UO_SUM + 3, a]
                t2 = s[_UO_SUM + 4, a]
                t3 = s[_UO_SUM + 5, a]
                u = (
                    100.0
                    * (
                        4.0 * (s[_UO_SUM, a] / t1)
                        + 2.0 * (s[_UO_SUM + 1, a] / t2)
                        + s[_UO_SUM + 2, a] / t3
                    )
                    / 7.0
                )
                u = u if (t1 != 0.0) & (t2 != 0.0) & (t3 != 0.0) else np.nan
                vo[o2 + 10, a] = _vote(u, u, u > 70.0, u < 30.0)
        else:
            for a in range(n):
                vo[o2 + 10, a] = np.nan
    else:
        for a in range(n):
            vo[o2 + 10, a] = np.nan

    # ---- bar count and ratings: the means of the available votes
    for a in range(n):
        s[_T, a] = tf + 1.0
        tot = 0.0
        cnt = 0.0  # a float count: the division is the scalar kernel's (int -> float)
        for i in range(ov, o2):
            x = vo[i, a]
            ok = not math.isnan(x)
            tot = tot + x if ok else tot
            cnt = cnt + 1.0 if ok else cnt
        rm = tot / cnt if cnt > 0.0 else np.nan
        tot = 0.0
        cnt = 0.0
        for i in range(o2, o2 + N_OSC_VOTES):
            x = vo[i, a]
            ok = not math.isnan(x)
            tot = tot + x if ok else tot
            cnt = cnt + 1.0 if ok else cnt
        ro = tot / cnt if cnt > 0.0 else np.nan
        vo[OUT_MA, a] = rm
        vo[OUT_OSC, a] = ro
        both = (rm + ro) / 2.0
        vo[OUT_ALL, a] = ro if math.isnan(rm) else (rm if math.isnan(ro) else both)


#: The step's C signature: (state, scratch, outputs, bar count t, lanes n).
LANES_STEP_SIG = types.void(
    types.CPointer(types.float64),
    types.CPointer(types.float64),
    types.CPointer(types.float64),
    types.int64,
    types.int64,
)


@functools.cache
def _lanes_cfunc() -> CFunc:
    return cfunc(LANES_STEP_SIG, cache=True, error_model="numpy")(_lanes_step)


def lanes_step_kernel() -> int:
    """Address of the compiled lanes step (compiled once per process, or loaded from
    numba's cache): the first argument of the batch loop."""
    return _lanes_cfunc().address


@intrinsic
def _call_lanes_step(typingctx, addr, sp, wp, vp, t, n):
    """Call the C function at ``addr`` with :data:`LANES_STEP_SIG`."""
    if not isinstance(addr, types.Integer):
        return None
    sig = types.void(addr, sp, wp, vp, t, n)

    def codegen(context, builder, signature, args):
        arg_types = LANES_STEP_SIG.args
        fnty = llvm_ir.FunctionType(
            llvm_ir.VoidType(), [context.get_value_type(x) for x in arg_types]
        )
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        values = [
            context.cast(builder, val, ty, want)
            for val, ty, want in zip(args[1:], signature.args[1:], arg_types, strict=True)
        ]
        builder.call(fn, values)
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------- the batch
@njit(cache=True, parallel=True, error_model="numpy")
def _lanes_batch_into_nb(kern, o, h, lo, c, v, states, out, order, bounds, n_real) -> None:  # noqa: E741
    n_bars = c.shape[0]
    k = out.shape[2]
    for b in prange(bounds.shape[0] - 1):
        a0 = bounds[b]
        width = bounds[b + 1] - a0  # real lanes, padded to whole vectors with dummy ones
        n = (width + PAD - 1) // PAD * PAD
        s = np.empty((RATING_STATE_SIZE, n))
        for j in range(n):
            for q in range(RATING_STATE_SIZE):
                s[q, j] = states[order[a0 + min(j, width - 1)], q]
        w = np.ones((_N_W, n))  # a dummy lane steps the bar 1, 1, 1, 1 (any bar would do)
        vo = np.empty((N_RATING_OUT, n))
        cur = np.zeros(n, np.int64)  # each lane's next bar to look at
        bar = np.zeros(n, np.int64)  # the bar each lane steps now
        t0 = int(s[_T, 0])
        steps = 0
        for j in range(width):
            steps = max(steps, n_real[order[a0 + j]])
        for step in range(steps):
            for j in range(width):
                a = order[a0 + j]
                if step >= n_real[a]:
                    w[_W_H, j] = 1.0  # past its last real bar: a dummy bar
                    w[_W_L, j] = 1.0
                    w[_W_C, j] = 1.0
                    w[_W_V, j] = 1.0
                    continue
                i = cur[j]
                while math.isnan(c[i, a]) or math.isnan(h[i, a]) or math.isnan(lo[i, a]):
                    for q in range(k):  # a missing bar: NaN out, state untouched
                        out[i, a, q] = np.nan
                    i += 1
                bar[j] = i
                cur[j] = i + 1
                w[_W_H, j] = h[i, a]
                w[_W_L, j] = lo[i, a]
                w[_W_C, j] = c[i, a]
                w[_W_V, j] = v[i, a]
            _call_lanes_step(kern, _ptr_at(s, 0), _ptr_at(w, 0), _ptr_at(vo, 0), t0 + step, n)
            for j in range(width):
                a = order[a0 + j]
                if step < n_real[a]:
                    i = bar[j]
                    for q in range(k):
                        out[i, a, q] = vo[q, j]
                    if step + 1 == n_real[a]:  # its last real bar: keep its state
                        for q in range(RATING_STATE_SIZE):
                            states[a, q] = s[q, j]
        for j in range(width):
            a = order[a0 + j]
            for i in range(cur[j], n_bars):  # missing bars after its last real one
                for q in range(k):
                    out[i, a, q] = np.nan


def ratings_batch_nb(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    states: np.ndarray,
) -> np.ndarray:
    """``n_bars x n_assets`` inputs -> (n_bars, n_assets, N_RATING_OUT), what the scalar
    kernel gives each asset, bit for bit; blocks of assets in lanes, on numba's threads.

    ``states`` (n_assets, RATING_STATE_SIZE) is stepped in place, so a driver can warm up
    with this and continue bar by bar with ``rating_step_nb``.
    """
    out = np.empty((c.shape[0], c.shape[1], N_RATING_OUT))
    ratings_batch_into_nb(o, h, lo, c, v, states, out)
    return out


def ratings_batch_into_nb(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    states: np.ndarray,
    out: np.ndarray,
    lanes: int = LANES,
) -> None:
    """:func:`ratings_batch_nb` into a caller's ``out`` (n_bars, n_assets, k): the first
    ``k`` output columns (3 = the ratings only, N_RATING_OUT = with the votes; every vote
    is computed either way). A job that rates a universe again and again reuses the
    memory: first touching a fresh 200 MB output costs its page faults. Blocks hold up to
    ``lanes`` assets (at the same bar count); there are at least as many blocks as numba
    threads when each can still get a few vectors' worth of assets."""
    n_bars, n_assets = c.shape
    if any(np.shape(x) != c.shape for x in (o, h, lo, v)):
        raise ValueError(f"open, high, low, close and volume must all be {c.shape}")
    if out.shape[:2] != (n_bars, n_assets) or not 0 < out.shape[2] <= N_RATING_OUT:
        raise ValueError(f"out must be ({n_bars}, {n_assets}, 1..{N_RATING_OUT}), got {out.shape}")
    if not (out.flags.c_contiguous and out.dtype == np.float64):
        raise ValueError("out must be a C-contiguous float64 array")
    if states.shape != (n_assets, RATING_STATE_SIZE) or states.dtype != np.float64:
        raise ValueError(f"states must be float64 ({n_assets}, RATING_STATE_SIZE)")
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    o, h, lo, c, v = (np.ascontiguousarray(x, dtype=np.float64) for x in (o, h, lo, c, v))
    missing = np.isnan(c) | np.isnan(h) | np.isnan(lo)
    n_real = (n_bars - missing.sum(axis=0)).astype(np.int64)
    t0 = states[:, _T]
    # Blocks never mix bar counts; within one, assets with as many real bars run together.
    order = np.lexsort((-n_real, t0)).astype(np.int64)
    threads = numba.get_num_threads()
    bounds = [0]
    start = 0
    while start < n_assets:
        stop = start
        while stop < n_assets and t0[order[stop]] == t0[order[start]]:
            stop += 1
        size = stop - start  # equal blocks
        n_blocks = max(-(-size // lanes), min(threads, size // (4 * PAD)), 1)
        bounds.extend(start + (size * b) // n_blocks for b in range(1, n_blocks + 1))
        start = stop
    kern = lanes_step_kernel()
    _lanes_batch_into_nb(kern, o, h, lo, c, v, states, out, order, np.array(bounds, np.int64), n_real)

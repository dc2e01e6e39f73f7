"""TradingView Technical Ratings as one streaming numba kernel per asset.

One asset's whole rating state (every indicator's state, the rings they share, the
previous values the votes compare against; layout below) is a single flat float64 array
of ``RATING_STATE_SIZE``: it checkpoints as raw bytes and many assets stack as the rows
of a 2-D array. The kernel is written for RATINGS.md's fixed lengths and computes, to the
bit, what the standalone indicator kernels of this package compute (each checked against
TA-Lib or a pandas reference; ``tests/test_rating_kernel.py`` checks the equality).

``rating_step_nb(state, o, h, l, c, v, out)`` consumes one closed bar and writes
``out[0] = rating_ma``, ``out[1] = rating_osc``, ``out[2] = rating_all`` and ``out[3:]`` the
26 votes in ``VOTE_NAMES`` order. The kernel behind it is compiled once, as a C function
(``rating_kernel()`` gives its address), and every loop — ``ratings_nb`` here, the MTF
batch and slice — calls it through that pointer: those loops and streaming run the same
machine code, bit-identical by construction. This is the only place the vote rules are
computed.

Vote rules are ``../shared/RATINGS.md``. Our NaN rules, stated once:
* a vote is NaN only while its guard is NaN (TradingView's ``calcRating``:
  ``na(guard) ? na : bull ? 1 : bear ? -1 : 0``); NaN votes are excluded from the means.
  When the guard exists but a value the buy/sell test reads is NaN (a zero 14-bar range
  makes %R NaN, 20 equal closes make CCI NaN), both tests are false: the vote is 0 and
  counts in the mean;
* the stochastics' k and d are Pine ``sma``s, which skip a NaN input: on a flat stretch
  the raw stochastic is NaN, k holds its last value and d keeps averaging k;
* ``rating_ma`` / ``rating_osc`` = mean of the available votes, NaN when none is;
  ``rating_all`` = mean of the two when both exist, the one that exists otherwise, else NaN;
* a bar whose high, low or close is NaN is a *missing bar*: state untouched, outputs NaN.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba.core.ccallback import CFunc
from numba.extending import intrinsic
from tandem.core.jit import carray, cfunc, njit, types

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
# One flat float64 array per asset (it checkpoints as raw bytes; many assets stack as rows).
# Every indicator length is fixed by RATINGS.md, so the kernel is written for those lengths:
# compile-time constants, no lengths or offsets read back from the state. Indicators that
# read the same series share one ring:
#   * the close ring (200) serves SMA 10..200, WMA 4/9 (Hull), CCI 20 and Momentum 10;
#   * the high/low rings (52) serve the Ichimoku windows 9/26/52 and Stochastic/W%R 14;
#   * one RSI(14) serves the RSI vote and the Stochastic RSI.
# Rings are "doubled" (each value written at ``pos`` and ``pos + N``), so the newest ``n <= N``
# values are always contiguous, oldest first: no wrap-around branch in the window loops.
# Inside the kernel high, low and close are never NaN (such a bar is skipped whole), so every
# bar reaches every indicator and one bar counter ``t`` gives each ring position and each
# warm-up test; only the series that can hold NaN (volume; the stochastics' raw values; Hull's
# inner difference; MACD's line; DMI's DX) keep run counters of their own.
#
# The arithmetic is the standalone kernels' (core.indicators.moving / oscillators /
# extremes, each checked against TA-Lib or a pandas reference), operation for operation, so
# the values are the same to the bit; tests/test_ratings.py checks the votes against them.
_N_CLOSE = 200
_N_HL = 52
_N_RSI = 14
_N_AO = 34
_N_VWMA = 20
_N_UO = 28
_N_LAG = 26
_EMA_LENGTHS = MA_LENGTHS + (12, 26, 13)  # the MA votes', then MACD fast/slow, Bull/Bear Power
_E50, _E12, _E26, _E13 = 3, 6, 7, 8
_HL_LENGTHS = (9, 14, 26, 52)  # Ichimoku conversion, Stochastic/W%R, Ichimoku base and span
_MEM = ("rsi1", "d1", "cci1", "adx1", "ao1", "ao2", "mom1", "wr1", "bull1", "bear1")


def _build_layout() -> tuple[dict[str, int], np.ndarray]:
    """Name -> offset of every slot, and the state of a fresh asset."""
    fields: list[tuple[str, int, float | tuple[float, float]]] = [
        ("t", 1, 0.0),  # bars consumed so far
        ("mem", len(_MEM), np.nan),  # previous indicator values the votes compare with
        ("close", 2 * _N_CLOSE, 0.0),
        ("sma_sum", len(MA_LENGTHS), 0.0),  # running sums
        ("ema_sum", len(_EMA_LENGTHS), 0.0),  # seed sums (the SMA of the first n closes)
        ("ema", len(_EMA_LENGTHS), np.nan),
        ("hull_d", 3, 0.0),  # the last three 2*wma(4) - wma(9), oldest first
        ("hull_run", 1, 0.0),
        ("xv", 2 * _N_VWMA, 0.0),  # close * volume
        ("vol", 2 * _N_VWMA, 0.0),
        ("vwma_run", 1, 0.0),
        ("high", 2 * _N_HL, 0.0),
        ("low", 2 * _N_HL, 0.0),
        ("hl_ext", 2 * len(_HL_LENGTHS), 0.0),  # per window: highest high, lowest low
        ("hl_blocks", 2 * sum(_HL_LENGTHS), 0.0),  # per window: suffix highs, suffix lows
        ("lead_ring", 2 * _N_LAG, np.nan),  # Ichimoku lead1 and lead2 of the last 26 bars
        ("prev_close", 1, np.nan),
        ("rsi_sum", 2, 0.0),  # Wilder average gain / loss: seed sums ...
        ("rsi_rma", 2, np.nan),  # ... then the averages
        ("rsi_ring", 2 * _N_RSI, 0.0),
        ("rsi_count", 1, 0.0),  # RSI values since the last NaN one (the StochRSI window)
        ("rsi_ext", 2, 0.0),  # highest, lowest RSI of the window
        ("rsi_blocks", 2 * _N_RSI, 0.0),  # suffix highs, suffix lows
        ("stoch_k", 4, 0.0),  # the last 3 raw %K oldest first, and their run
        ("stoch_d", 4, 0.0),  # the last 3 %K, and their run
        ("srsi_k", 4, 0.0),
        ("srsi_d", 4, 0.0),
        ("prev_hl", 2, 0.0),  # previous high, low (DMI)
        ("dmi_sum", 3, 0.0),  # Wilder +DM, -DM, TR: seed sums ...
        ("dmi_rma", 3, np.nan),  # ... then the averages
        ("di", 2, np.nan),  # +DI, -DI (kept through bars whose smoothed TR is 0)
        ("adx", 4, 0.0),  # DX average: count, seed sum, value, seeded
        ("hl2", 2 * _N_AO, 0.0),
        ("ao_sum", 1, 0.0),  # running sum of the slow (34) average
        ("macd_sig", 4, 0.0),  # signal EMA: count, seed sum, value, seeded
        ("uo_flat", 1, 0.0),  # bars in a row with a zero true range
        ("uo_sum", 6, 0.0),  # buying pressure over 7, 14, 28; true range over 7, 14, 28
        ("uo_bp", 2 * _N_UO, 0.0),  # buying pressure
        ("uo_tr", 2 * _N_UO, 0.0),  # true range
    ]
    offsets: dict[str, int] = {}
    parts: list[np.ndarray] = []
    pos = 0
    for name, size, fill in fields:
        offsets[name] = pos
        parts.append(np.resize(np.asarray(fill, np.float64), size))
        pos += size
    return offsets, np.concatenate(parts)


_OFF, _TEMPLATE = _build_layout()
RATING_STATE_SIZE: int = int(_TEMPLATE.shape[0])

# Module-level ints and arrays are frozen into the compiled kernel as constants.
_T = _OFF["t"]
(_M_RSI1, _M_D1, _M_CCI1, _M_ADX1, _M_AO1, _M_AO2, _M_MOM1, _M_WR1, _M_BULL1, _M_BEAR1) = (
    _OFF["mem"] + k for k in range(len(_MEM))
)
_CLOSE = _OFF["close"]
_SMA_SUM = _OFF["sma_sum"]
_SMA_N = np.array(MA_LENGTHS, np.int64)
_EMA_SUM = _OFF["ema_sum"]
_EMA = _OFF["ema"]
_EMA_N = np.array(_EMA_LENGTHS, np.int64)
_EMA_NF = np.array(_EMA_LENGTHS, np.float64)
_EMA_A = np.array([2.0 / (n + 1.0) for n in _EMA_LENGTHS])  # as new_ema_state computes them
_EMA_B = np.array([1.0 - 2.0 / (n + 1.0) for n in _EMA_LENGTHS])
_HULL_D = _OFF["hull_d"]
_HULL_RUN = _OFF["hull_run"]
_XV = _OFF["xv"]
_VOL = _OFF["vol"]
_VWMA_RUN = _OFF["vwma_run"]
_HIGH = _OFF["high"]
_LOW = _OFF["low"]
_HL_N = np.array(_HL_LENGTHS, np.int64)
_HL_EXT = _OFF["hl_ext"]  # window k: highest at _HL_EXT + 2k, lowest at _HL_EXT + 2k + 1
# window k: suffix highs at _HL_BLOCK[k], suffix lows at _HL_BLOCK[k] + n_k
_HL_BLOCK = np.array(
    [_OFF["hl_blocks"] + 2 * sum(_HL_LENGTHS[:k]) for k in range(len(_HL_LENGTHS))], np.int64
)
_LEAD = _OFF["lead_ring"]
_PREV_C = _OFF["prev_close"]
_RSI_SUM = _OFF["rsi_sum"]
_RSI_RMA = _OFF["rsi_rma"]
_RSI_RING = _OFF["rsi_ring"]
_RSI_COUNT = _OFF["rsi_count"]
_RSI_EXT = _OFF["rsi_ext"]
_RSI_BLOCK = _OFF["rsi_blocks"]
_STOCH_K = _OFF["stoch_k"]
_STOCH_D = _OFF["stoch_d"]
_SRSI_K = _OFF["srsi_k"]
_SRSI_D = _OFF["srsi_d"]
_PREV_HL = _OFF["prev_hl"]
_DMI_SUM = _OFF["dmi_sum"]
_DMI_RMA = _OFF["dmi_rma"]
_DI = _OFF["di"]
_ADX = _OFF["adx"]
_HL2 = _OFF["hl2"]
_AO_SUM = _OFF["ao_sum"]
_MACD_SIG = _OFF["macd_sig"]
_UO_FLAT = _OFF["uo_flat"]
_UO_SUM = _OFF["uo_sum"]
_UO_BP = _OFF["uo_bp"]
_UO_TR = _OFF["uo_tr"]
_UO_N = np.array((7, 14, 28), np.int64)
_WILDER_A = 1.0 / 14  # as new_rma_state(14) computes alpha
_WILDER_B = 1.0 - 1.0 / 14
_SIG_A = 2.0 / (9 + 1.0)
_SIG_B = 1.0 - 2.0 / (9 + 1.0)


# Plain numpy, called from Python only: a jitted copy was 0.7 s of a first run's compile.
def new_rating_state() -> np.ndarray:
    """A fresh rating state for one asset (float64[RATING_STATE_SIZE])."""
    return _TEMPLATE.copy()


def new_rating_states(n_assets: int) -> np.ndarray:
    """Fresh states for ``n_assets`` assets, one per row."""
    return np.tile(_TEMPLATE, (n_assets, 1))


# ---------------------------------------------------------------- small helpers
# Plain (not numba-inlined) functions: LLVM inlines them where it pays, and numba's own
# inlining of every call site is what made the fused kernel take a minute to compile.
# Their integer arguments are passed as np.int64(...) where they are constants: numba
# types a module constant as a literal and would compile one copy per value.
@njit(cache=True)
def ma_vote_nb(close: float, ma: float) -> float:
    """sign(close - ma); NaN when the MA is NaN."""
    if math.isnan(ma):
        return np.nan
    if close > ma:
        return 1.0
    if close < ma:
        return -1.0
    return 0.0


@njit(cache=True)
def vote_nb(guard: float, bull: bool, bear: bool) -> float:
    """TradingView's calcRating: NaN if ``guard`` is NaN, else +1 if bull, -1 if bear,
    else 0. A NaN in the values the tests read only makes the tests false (vote 0)."""
    if math.isnan(guard):
        return np.nan
    if bull:
        return 1.0
    if bear:
        return -1.0
    return 0.0


@njit(cache=True)
def _sma3_nb(s: np.ndarray, o: int, x: float) -> float:
    """Exact 3-bar SMA (the stochastics' smoothing) at ``s[o:o+4]`` = the last three inputs
    oldest first and their run. A NaN input is skipped (Pine's sma): the window does not
    move and the previous output repeats (recomputed from the same window, so the same
    bits). Summed oldest first from 0.0, as ``sma_step_at_nb`` does for short windows, so
    %K and %D sitting at 0 or 100 are exactly equal (their votes compare k > d)."""
    if math.isnan(x):
        if s[o + 3] < 3.0:
            return np.nan
        return (((0.0 + s[o]) + s[o + 1]) + s[o + 2]) / 3
    s[o] = s[o + 1]
    s[o + 1] = s[o + 2]
    s[o + 2] = x
    run = s[o + 3]
    if run < 3.0:
        run += 1.0
        s[o + 3] = run
        if run < 3.0:
            return np.nan
    return (((0.0 + s[o]) + s[o + 1]) + s[o + 2]) / 3


# Rolling highest / lowest over a window of n values, exact and O(1) per value (van Herk /
# Gil-Werman): the series is cut into blocks of n values. Once a block is complete, its
# suffix extremes (the max of each of its tails) are stored; within the current block a
# running (prefix) extreme is kept. The window of the last n values is the tail of the
# previous block plus the head of the current one: max(suffix[j + 1], prefix). No
# data-dependent rescans, so the cost does not depend on the trend.
@njit(cache=True)
def _window_max_nb(
    s: np.ndarray, newest: int, n: int, j: int, x: float, pref: int, suf: int
) -> float:
    """Highest of the last ``n`` values of a ring whose newest value ``x`` sits at
    ``s[newest]`` (older ones before it), ``j`` = the new value's position in its block.
    ``s[pref]``: the running max of the current block; ``s[suf:suf+n]``: the previous
    block's suffix maxima. Valid once n values exist."""
    if j == 0:  # the previous block is complete: store its suffix maxima
        m = s[newest - 1]
        s[suf + n - 1] = m
        for i in range(n - 2, -1, -1):
            y = s[newest - n + i]
            m = y if y > m else m
            s[suf + i] = m
        p = x
    else:
        p = s[pref]
        p = x if x > p else p
    s[pref] = p
    if j == n - 1:
        return p
    q = s[suf + j + 1]
    return q if q > p else p


@njit(cache=True)
def _window_min_nb(
    s: np.ndarray, newest: int, n: int, j: int, x: float, pref: int, suf: int
) -> float:
    """Lowest of the last ``n`` values: :func:`_window_max_nb` mirrored."""
    if j == 0:
        m = s[newest - 1]
        s[suf + n - 1] = m
        for i in range(n - 2, -1, -1):
            y = s[newest - n + i]
            m = y if y < m else m
            s[suf + i] = m
        p = x
    else:
        p = s[pref]
        p = x if x < p else p
    s[pref] = p
    if j == n - 1:
        return p
    q = s[suf + j + 1]
    return q if q < p else p


@njit(cache=True)
def sum4_nb(s: np.ndarray, first: int, n: int) -> float:
    """Sum of ``s[first:first+n]`` (oldest first) as four interleaved partial sums added
    pairwise: ``tandem.core.indicators.moving.chrono_sum4_nb`` over a contiguous window, so the
    standalone VWMA and CCI give the same bits."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    p3 = 0.0
    q = 0
    while q + 4 <= n:
        p0 += s[first + q]
        p1 += s[first + q + 1]
        p2 += s[first + q + 2]
        p3 += s[first + q + 3]
        q += 4
    if q < n:
        p0 += s[first + q]
    if q + 1 < n:
        p1 += s[first + q + 1]
    if q + 2 < n:
        p2 += s[first + q + 2]
    return (p0 + p1) + (p2 + p3)


@njit(cache=True)
def absdev4_nb(s: np.ndarray, first: int, n: int, mean: float) -> float:
    """Sum of ``|x - mean|`` over ``s[first:first+n]``, grouped as :func:`sum4_nb`."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    p3 = 0.0
    q = 0
    while q + 4 <= n:
        p0 += abs(s[first + q] - mean)
        p1 += abs(s[first + q + 1] - mean)
        p2 += abs(s[first + q + 2] - mean)
        p3 += abs(s[first + q + 3] - mean)
        q += 4
    if q < n:
        p0 += abs(s[first + q] - mean)
    if q + 1 < n:
        p1 += abs(s[first + q + 1] - mean)
    if q + 2 < n:
        p2 += abs(s[first + q + 2] - mean)
    return (p0 + p1) + (p2 + p3)


@njit(cache=True)
def _all_equal_nb(s: np.ndarray, first: int, stop: int, x: float) -> bool:
    """True when ``s[first:stop]`` all equal ``x``."""
    for j in range(first, stop):
        if s[j] != x:
            return False
    return True


@njit(cache=True)
def _mean_nan(out: np.ndarray, start: int, stop: int) -> float:
    tot = 0.0
    cnt = 0
    for i in range(start, stop):
        x = out[i]
        if not math.isnan(x):
            tot += x
            cnt += 1
    return tot / cnt if cnt > 0 else np.nan


# ---------------------------------------------------------------- the step
# The kernel is compiled once, as a C-callable function (``rating_kernel()`` gives its
# address), and every loop calls it through that function pointer.
# Why not a plain ``@njit`` callee: numba links a callee's LLVM IR into each caller and
# optimizes the whole again, so each of the kernel's loops (MTF batch, MTF slice,
# ratings_nb) paid again for this big kernel on a cold start. Behind a pointer the
# loops compile in a second or two, the kernel's machine code is shared, and a loop can
# even be compiled while another process compiles the kernel (core.warmup). The call
# costs a few ns of the ~400 a bar takes; the floating-point operations are the same, so
# the numbers are identical.
def _rating_kernel(sp, o, h, lo, c, v, op):  # noqa: E741
    """Consume one closed bar: ``sp`` points at one asset's state (RATING_STATE_SIZE
    float64), ``op`` at its N_RATING_OUT outputs. Compiled by :func:`rating_kernel`."""
    out = carray(op, (N_RATING_OUT,))
    if math.isnan(c) or math.isnan(h) or math.isnan(lo):
        out[:] = np.nan
        return
    s = carray(sp, (RATING_STATE_SIZE,))
    t = s[_T]
    ti = int(t)
    ov = OUT_VOTES
    o2 = ov + N_MA_VOTES

    # ---- close ring: SMA running sums and Momentum read the values leaving first
    pc = ti % _N_CLOSE
    newest = _CLOSE + pc + _N_CLOSE  # where this close goes (its twin is at pc)
    for k in range(6):
        n = _SMA_N[k]
        if t >= n:
            s[_SMA_SUM + k] += c - s[newest - n]
        else:
            s[_SMA_SUM + k] += c
    mo = c - s[newest - 10] if t >= 10 else np.nan
    s[_CLOSE + pc] = c
    s[newest] = c
    for k in range(6):
        n = _SMA_N[k]
        out[ov + k] = ma_vote_nb(c, s[_SMA_SUM + k] / n if t + 1 >= n else np.nan)

    # ---- EMAs of close (MA votes, MACD, Bull/Bear Power), seeded with their first SMA
    for k in range(9):
        n = _EMA_N[k]
        if t >= n:
            s[_EMA + k] = _EMA_A[k] * c + _EMA_B[k] * s[_EMA + k]
        else:
            s[_EMA_SUM + k] += c
            if t + 1 >= n:
                s[_EMA + k] = s[_EMA_SUM + k] / _EMA_NF[k]
    for k in range(6):
        out[ov + 6 + k] = ma_vote_nb(c, s[_EMA + k])
    ema50 = s[_EMA + _E50]  # priceAvg = ema(close, 50) of the trend filters

    # ---- Hull MA 9: wma(2*wma(close, 4) - wma(close, 9), 3), weights newest first
    hull = np.nan
    if t + 1 >= 9:
        acc4 = 0.0
        for w in range(4, 0, -1):
            acc4 += w * s[newest - 4 + w]
        acc9 = 0.0
        for w in range(9, 0, -1):
            acc9 += w * s[newest - 9 + w]
        d = 2.0 * (acc4 / 10.0) - acc9 / 45.0
        s[_HULL_D] = s[_HULL_D + 1]
        s[_HULL_D + 1] = s[_HULL_D + 2]
        s[_HULL_D + 2] = d
        run = s[_HULL_RUN]
        if run < 3.0:
            run += 1.0
            s[_HULL_RUN] = run
        if run >= 3.0:
            acc = 0.0
            acc += 3 * d
            acc += 2 * s[_HULL_D + 1]
            acc += 1 * s[_HULL_D]
            hull = acc / 6.0
    out[ov + 12] = ma_vote_nb(c, hull)

    # ---- VWMA 20: exact sums of the window (an all-zero-volume window reads NaN)
    vwma = np.nan
    if math.isnan(v):
        s[_VWMA_RUN] = 0.0
    else:
        pv = ti % _N_VWMA
        s[_XV + pv] = c * v
        s[_XV + pv + _N_VWMA] = c * v
        s[_VOL + pv] = v
        s[_VOL + pv + _N_VWMA] = v
        run = s[_VWMA_RUN]
        if run < _N_VWMA:
            run += 1.0
            s[_VWMA_RUN] = run
        if run >= _N_VWMA:
            num = sum4_nb(s, _XV + pv + 1, 20)  # a literal 20 (the only length): unrolled
            den = sum4_nb(s, _VOL + pv + 1, 20)
            if den != 0.0:
                vwma = num / den
    out[ov + 13] = ma_vote_nb(c, vwma)

    # ---- high/low rings: Ichimoku 9/26/52 and Stochastic / Williams %R 14
    ph = ti % _N_HL
    s[_HIGH + ph] = h
    s[_HIGH + ph + _N_HL] = h
    s[_LOW + ph] = lo
    s[_LOW + ph + _N_HL] = lo
    nh = _HIGH + ph + _N_HL
    nl = _LOW + ph + _N_HL
    e = np.int64(_HL_EXT)
    b9, b14, b26, b52 = _HL_BLOCK[0], _HL_BLOCK[1], _HL_BLOCK[2], _HL_BLOCK[3]
    # lengths read from an array, not literals: a literal argument would make numba
    # compile one copy of the helper per length
    n9, n14, n26, n52 = _HL_N[0], _HL_N[1], _HL_N[2], _HL_N[3]
    hi9 = _window_max_nb(s, nh, n9, ti % 9, h, e, b9)
    lo9 = _window_min_nb(s, nl, n9, ti % 9, lo, e + 1, b9 + 9)
    hi14 = _window_max_nb(s, nh, n14, ti % 14, h, e + 2, b14)
    lo14 = _window_min_nb(s, nl, n14, ti % 14, lo, e + 3, b14 + 14)
    hi26 = _window_max_nb(s, nh, n26, ti % 26, h, e + 4, b26)
    lo26 = _window_min_nb(s, nl, n26, ti % 26, lo, e + 5, b26 + 26)
    hi52 = _window_max_nb(s, nh, n52, ti % 52, h, e + 6, b52)
    lo52 = _window_min_nb(s, nl, n52, ti % 52, lo, e + 7, b52 + 52)
    conv = (hi9 + lo9) / 2.0 if t + 1 >= 9 else np.nan
    base = (hi26 + lo26) / 2.0 if t + 1 >= 26 else np.nan
    lead2 = (hi52 + lo52) / 2.0 if t + 1 >= 52 else np.nan
    lead1 = (conv + base) / 2.0
    pl = ti % _N_LAG
    l1x = s[_LEAD + pl] if t >= _N_LAG else np.nan  # the cloud under this bar: 26 bars ago
    l2x = s[_LEAD + _N_LAG + pl] if t >= _N_LAG else np.nan
    s[_LEAD + pl] = lead1
    s[_LEAD + _N_LAG + pl] = lead2
    out[ov + 14] = vote_nb(
        lead2,
        l1x > l2x and base > l1x and conv > base and c > conv,
        l1x < l2x and base < l1x and conv < base and c < conv,
    )

    # ---- RSI 14 (Wilder) and the votes that need a previous close
    pcl = s[_PREV_C]
    s[_PREV_C] = c
    r = np.nan
    if t >= 1:
        ch = c - pcl
        gain = ch if ch > 0.0 else 0.0
        loss = -ch if ch < 0.0 else 0.0
        if t > 14:
            s[_RSI_RMA] = _WILDER_A * gain + _WILDER_B * s[_RSI_RMA]
            s[_RSI_RMA + 1] = _WILDER_A * loss + _WILDER_B * s[_RSI_RMA + 1]
        else:
            s[_RSI_SUM] += gain
            s[_RSI_SUM + 1] += loss
            if t == 14:
                s[_RSI_RMA] = s[_RSI_SUM] / 14.0
                s[_RSI_RMA + 1] = s[_RSI_SUM + 1] / 14.0
        up = s[_RSI_RMA]
        dn = s[_RSI_RMA + 1]
        if math.isnan(up) or math.isnan(dn):
            r = np.nan
        elif dn == 0.0:
            r = 100.0
        elif up == 0.0:
            r = 0.0
        else:
            r = 100.0 - 100.0 / (1.0 + up / dn)
    r1 = s[_M_RSI1]
    out[o2 + 0] = vote_nb(r1, r < 30.0 and r > r1, r > 70.0 and r < r1)
    s[_M_RSI1] = r

    # ---- Stochastic 14, 3, 3
    raw = np.nan
    if t + 1 >= 14:
        rng = hi14 - lo14
        if rng != 0.0:
            raw = 100.0 * (c - lo14) / rng
    k_ = _sma3_nb(s, np.int64(_STOCH_K), raw)
    d_ = _sma3_nb(s, np.int64(_STOCH_D), k_)
    d1 = s[_M_D1]
    out[o2 + 1] = vote_nb(
        d1,
        k_ < 20.0 and d_ < 20.0 and k_ > d_,
        k_ > 80.0 and d_ > 80.0 and k_ < d_,
    )
    s[_M_D1] = d_

    # ---- CCI 20 on close: (x - mean) / (0.015 * mean deviation), window oldest first
    cc = np.nan
    if t + 1 >= 20:
        first = newest - 19
        mean = sum4_nb(s, first, 20) / 20
        dev = absdev4_nb(s, first, 20, mean)
        dev /= 20
        # 20 equal closes are a zero deviation (Pine: NaN), but their rounded mean can miss
        # the close by an ulp, which leaves a tiny nonzero dev and a CCI of +-66.7: test the
        # window itself (the scan stops at the first close that differs, the oldest as a rule)
        if dev != 0.0 and not _all_equal_nb(s, first, newest, c):
            cc = (c - mean) / (0.015 * dev)
    cc1 = s[_M_CCI1]
    out[o2 + 2] = vote_nb(cc1, cc < -100.0 and cc > cc1, cc > 100.0 and cc < cc1)
    s[_M_CCI1] = cc

    # ---- DMI 14 / ADX 14 (Pine's ta.dmi: DIs fixnan-ed, DX's zero sum read as 1)
    adx = np.nan
    if t >= 1:
        up_m = h - s[_PREV_HL]
        dn_m = s[_PREV_HL + 1] - lo
        pdm = up_m if (up_m > dn_m and up_m > 0.0) else 0.0
        mdm = dn_m if (dn_m > up_m and dn_m > 0.0) else 0.0
        tr = max(h - lo, abs(h - pcl), abs(lo - pcl))
        if t > 14:
            s[_DMI_RMA] = _WILDER_A * pdm + _WILDER_B * s[_DMI_RMA]
            s[_DMI_RMA + 1] = _WILDER_A * mdm + _WILDER_B * s[_DMI_RMA + 1]
            s[_DMI_RMA + 2] = _WILDER_A * tr + _WILDER_B * s[_DMI_RMA + 2]
        else:
            s[_DMI_SUM] += pdm
            s[_DMI_SUM + 1] += mdm
            s[_DMI_SUM + 2] += tr
            if t == 14:
                s[_DMI_RMA] = s[_DMI_SUM] / 14.0
                s[_DMI_RMA + 1] = s[_DMI_SUM + 1] / 14.0
                s[_DMI_RMA + 2] = s[_DMI_SUM + 2] / 14.0
        tr_a = s[_DMI_RMA + 2]
        if not math.isnan(tr_a):
            if tr_a != 0.0:
                s[_DI] = 100.0 * s[_DMI_RMA] / tr_a
                s[_DI + 1] = 100.0 * s[_DMI_RMA + 1] / tr_a
            p = s[_DI]
            m = s[_DI + 1]
            if not math.isnan(p):
                tot_di = p + m
                dx = abs(p - m) / (tot_di if tot_di != 0.0 else 1.0)
                if s[_ADX + 3] != 0.0:
                    s[_ADX + 2] = _WILDER_A * dx + _WILDER_B * s[_ADX + 2]
                    adx = 100.0 * s[_ADX + 2]
                else:
                    s[_ADX + 1] += dx
                    s[_ADX] += 1.0
                    if s[_ADX] >= 14.0:
                        s[_ADX + 2] = s[_ADX + 1] / 14.0
                        s[_ADX + 3] = 1.0
                        adx = 100.0 * s[_ADX + 2]
    s[_PREV_HL] = h
    s[_PREV_HL + 1] = lo
    adx1 = s[_M_ADX1]
    pdi = s[_DI]
    mdi = s[_DI + 1]
    out[o2 + 3] = vote_nb(
        adx,
        adx > 20.0 and adx > adx1 and pdi > mdi,
        adx > 20.0 and adx > adx1 and pdi < mdi,
    )
    s[_M_ADX1] = adx

    # ---- Awesome Oscillator: sma(hl2, 5) (exact) - sma(hl2, 34) (running sum)
    hl2 = (h + lo) / 2.0
    pa = ti % _N_AO
    na = _HL2 + pa + _N_AO
    if t >= _N_AO:
        s[_AO_SUM] += hl2 - s[na - _N_AO]
    else:
        s[_AO_SUM] += hl2
    s[_HL2 + pa] = hl2
    s[na] = hl2
    ao = np.nan
    if t + 1 >= _N_AO:
        fast = 0.0
        for j in range(na - 4, na + 1):
            fast += s[j]
        ao = fast / 5 - s[_AO_SUM] / _N_AO
    ao1 = s[_M_AO1]
    ao2 = s[_M_AO2]
    out[o2 + 4] = vote_nb(
        ao1,
        (ao > 0.0 and ao1 <= 0.0) or (ao > 0.0 and ao1 > 0.0 and ao > ao1 and ao2 > ao1),
        (ao < 0.0 and ao1 >= 0.0) or (ao < 0.0 and ao1 < 0.0 and ao < ao1 and ao2 < ao1),
    )
    s[_M_AO2] = ao1
    s[_M_AO1] = ao

    # ---- Momentum 10
    mo1 = s[_M_MOM1]
    out[o2 + 5] = vote_nb(mo1, mo > mo1, mo < mo1)
    s[_M_MOM1] = mo

    # ---- MACD 12, 26, 9
    m_ = s[_EMA + _E12] - s[_EMA + _E26]
    sg = _MACD_SIG
    if s[sg + 3] != 0.0:
        if not math.isnan(m_):
            s[sg + 2] = _SIG_A * m_ + _SIG_B * s[sg + 2]
    elif math.isnan(m_):
        s[sg] = 0.0
        s[sg + 1] = 0.0
    else:
        s[sg + 1] += m_
        s[sg] += 1.0
        if s[sg] >= 9.0:
            s[sg + 2] = s[sg + 1] / 9.0
            s[sg + 3] = 1.0
    sig = s[sg + 2] if s[sg + 3] != 0.0 else np.nan
    out[o2 + 6] = vote_nb(sig, m_ > sig, m_ < sig)

    # ---- Stochastic RSI 14, 14, 3, 3 (TradingView: stoch(rsi, rsi, rsi, 14))
    raw_s = np.nan
    if math.isnan(r):
        s[_RSI_COUNT] = 0.0
    else:
        pr = ti % _N_RSI
        s[_RSI_RING + pr] = r
        s[_RSI_RING + pr + _N_RSI] = r
        cnt = s[_RSI_COUNT]  # RSI values before this one since the last NaN
        s[_RSI_COUNT] = cnt + 1.0
        j = int(cnt) % _N_RSI
        nr = _RSI_RING + pr + _N_RSI
        hi_r = _window_max_nb(s, nr, n14, j, r, np.int64(_RSI_EXT), np.int64(_RSI_BLOCK))
        lo_r = _window_min_nb(s, nr, n14, j, r, _RSI_EXT + 1, _RSI_BLOCK + _N_RSI)
        if cnt + 1.0 >= _N_RSI:
            rng = hi_r - lo_r
            if rng != 0.0:
                raw_s = 100.0 * (r - lo_r) / rng
    sk = _sma3_nb(s, np.int64(_SRSI_K), raw_s)
    sd = _sma3_nb(s, np.int64(_SRSI_D), sk)
    up_trend = c > ema50
    down_trend = c < ema50
    out[o2 + 7] = vote_nb(
        ema50,
        down_trend and sk < 20.0 and sd < 20.0 and sk > sd,
        up_trend and sk > 80.0 and sd > 80.0 and sk < sd,
    )

    # ---- Williams %R 14 (the Stochastic's window)
    wr = np.nan
    if t + 1 >= 14:
        rng = hi14 - lo14
        if rng != 0.0:
            wr = 100.0 * (c - hi14) / rng
    wr1 = s[_M_WR1]
    out[o2 + 8] = vote_nb(wr1, wr < -80.0 and wr > wr1, wr > -20.0 and wr < wr1)
    s[_M_WR1] = wr

    # ---- Bull / Bear Power 13
    e13 = s[_EMA + _E13]
    bull = h - e13
    bear = lo - e13
    bull1 = s[_M_BULL1]
    bear1 = s[_M_BEAR1]
    out[o2 + 9] = vote_nb(
        ema50,
        up_trend and bear < 0.0 and bear > bear1,
        down_trend and bull > 0.0 and bull < bull1,
    )
    s[_M_BULL1] = bull
    s[_M_BEAR1] = bear

    # ---- Ultimate Oscillator 7, 14, 28 (running sums; an all-flat window reads NaN)
    u = np.nan
    if t >= 1:
        tmin = lo if lo < pcl else pcl
        tmax = h if h > pcl else pcl
        bp = c - tmin
        tr_u = tmax - tmin
        flat = s[_UO_FLAT] + 1.0 if tr_u == 0.0 else 0.0
        s[_UO_FLAT] = flat
        n_in = t - 1.0  # values already in the rings (the first bar has no true range)
        pu = (ti - 1) % _N_UO
        nb = _UO_BP + pu + _N_UO  # where this bar's value goes (its twin is at pu)
        nt = _UO_TR + pu + _N_UO
        for k in range(3):
            nk = _UO_N[k]
            if n_in >= nk:  # the value leaving the window is nk bars old
                s[_UO_SUM + k] += bp - s[nb - nk]
                s[_UO_SUM + 3 + k] += tr_u - s[nt - nk]
            else:
                s[_UO_SUM + k] += bp
                s[_UO_SUM + 3 + k] += tr_u
            if flat >= nk:
                s[_UO_SUM + k] = 0.0
                s[_UO_SUM + 3 + k] = 0.0
        s[_UO_BP + pu] = bp
        s[nb] = bp
        s[_UO_TR + pu] = tr_u
        s[nt] = tr_u
        if n_in + 1.0 >= _N_UO:
            t1 = s[_UO_SUM + 3]
            t2 = s[_UO_SUM + 4]
            t3 = s[_UO_SUM + 5]
            if t1 != 0.0 and t2 != 0.0 and t3 != 0.0:
                u = (
                    100.0
                    * (4.0 * (s[_UO_SUM] / t1) + 2.0 * (s[_UO_SUM + 1] / t2) + s[_UO_SUM + 2] / t3)
                    / 7.0
                )
    out[o2 + 10] = vote_nb(u, u > 70.0, u < 30.0)

    s[_T] = t + 1.0

    # ---- ratings
    rm = _mean_nan(out, np.int64(ov), o2)
    ro = _mean_nan(out, o2, o2 + N_OSC_VOTES)
    out[OUT_MA] = rm
    out[OUT_OSC] = ro
    if math.isnan(rm):
        out[OUT_ALL] = ro
    elif math.isnan(ro):
        out[OUT_ALL] = rm
    else:
        out[OUT_ALL] = (rm + ro) / 2.0


#: The kernel's C signature: (state pointer, open, high, low, close, volume, out pointer).
RATING_KERNEL_SIG = types.void(
    types.CPointer(types.float64), *(types.float64,) * 5, types.CPointer(types.float64)
)


@functools.cache
def _rating_cfunc() -> CFunc:
    # Kept alive by the cache: the machine code lives as long as this object.
    return cfunc(RATING_KERNEL_SIG, cache=True)(_rating_kernel)


def rating_kernel() -> int:
    """Address of the compiled kernel (compiled once per process; loaded from numba's cache
    when it holds it): the first argument of every loop below. An address, not the
    function object, because numba needs ~40 µs to type a function object on each call
    from Python (the daemon calls once per slice); an int is typed in nanoseconds.
    Compiling takes ~8 s on an empty cache, which is why this is not done at import."""
    return _rating_cfunc().address


def _stand_in(sp, o, h, lo, c, v, op):  # noqa: E741
    out = carray(op, (N_RATING_OUT,))
    for i in range(N_RATING_OUT):
        out[i] = np.nan


@functools.cache
def stand_in_kernel() -> CFunc:
    """A function with the kernel's C signature that rates every bar as missing (all NaN),
    compiled in well under a second. The loops get the kernel as an address, so their
    machine code does not depend on it: with this stand-in they can be compiled and run on
    dummy bars while another process compiles the real kernel (:mod:`tandem.core.warmup`)."""
    return cfunc(RATING_KERNEL_SIG)(_stand_in)


@intrinsic
def _ptr_at(typingctx, arr, idx):
    """Pointer to ``arr.flat[idx]`` (C-contiguous ``arr``), for calling the kernel."""
    sig = types.CPointer(arr.dtype)(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.gep(ary.data, [args[1]])

    return sig, codegen


@intrinsic
def _call_kernel(typingctx, addr, sp, o, h, lo, c, v, op):  # noqa: E741
    """Call the C function at ``addr`` with :data:`RATING_KERNEL_SIG`."""
    if not isinstance(addr, types.Integer):
        return None
    sig = types.void(addr, sp, o, h, lo, c, v, op)

    def codegen(context, builder, signature, args):
        arg_types = RATING_KERNEL_SIG.args
        fnty = llvm_ir.FunctionType(llvm_ir.VoidType(), [context.get_value_type(t) for t in arg_types])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        values = [context.cast(builder, val, ty, want) for val, ty, want
                  in zip(args[1:], signature.args[1:], arg_types, strict=True)]
        builder.call(fn, values)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def rating_step_at_nb(kern, state, so, o, h, lo, c, v, out, oo) -> None:  # noqa: E741
    """Step the kernel at address ``kern`` (:func:`rating_kernel`) on the state at
    ``state[so:so+RATING_STATE_SIZE]``, writing ``out[oo:oo+N_RATING_OUT]`` (both
    C-contiguous float64 1-D): how the loops and composite states (MTF) call it, without
    an array view per bar (a view costs an atomic reference count, which threads contend
    for). ``kern`` must be a :func:`rating_kernel` address (or a function of the same C
    signature): it is called as is."""
    # The kernel writes through raw pointers: check the bounds numba would have checked.
    if so < 0 or so + RATING_STATE_SIZE > state.shape[0] or oo < 0 or oo + N_RATING_OUT > out.shape[0]:
        raise IndexError("rating state or output out of bounds")
    _call_kernel(kern, _ptr_at(state, so), o, h, lo, c, v, _ptr_at(out, oo))


@njit(cache=True)
def _rating_step_nb(kern, state, o, h, lo, c, v, out) -> None:  # noqa: E741
    rating_step_at_nb(kern, state, np.int64(0), o, h, lo, c, v, out, np.int64(0))


def rating_step_nb(
    state: np.ndarray, o: float, h: float, lo: float, c: float, v: float, out: np.ndarray
) -> None:
    """Consume one closed bar of one asset: update every indicator and write the ratings and
    votes into ``out`` (float64[N_RATING_OUT]). A bar with NaN high/low/close is a missing
    bar: ``state`` untouched, ``out`` all NaN. ``o`` is unused by the ratings (kept so the
    signature is the candle). Called from Python; jitted code calls
    :func:`rating_step_at_nb` with the kernel."""
    _rating_step_nb(rating_kernel(), state, float(o), float(h), float(lo), float(c), float(v), out)


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


# ---------------------------------------------------------------- one asset's history
# The jitted loop takes the kernel as its first argument; ``ratings_nb`` is its Python
# face. Many assets: the MTF batch (core.mtf) calls the same kernel per asset.
@njit(cache=True)
def _ratings_nb(kern, o, h, lo, c, v, state):  # noqa: E741
    n = c.shape[0]
    out = np.empty((n, N_RATING_OUT))
    flat = out.reshape(-1)
    for i in range(n):
        rating_step_at_nb(kern, state, np.int64(0), o[i], h[i], lo[i], c[i], v[i], flat, i * N_RATING_OUT)
    return out


def ratings_nb(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, state: np.ndarray
) -> np.ndarray:
    """One asset over ``n_bars``: (n_bars, N_RATING_OUT), stepping ``state`` in place."""
    return _ratings_nb(rating_kernel(), o, h, lo, c, v, state)

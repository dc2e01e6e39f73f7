"""Moving averages: SMA, EMA, RMA (Wilder), WMA, Hull MA, VWMA.

Window semantics: the SMA is Pine's ``sma`` (RATINGS.md): the mean of the last ``n``
non-NaN inputs; a NaN input is skipped (the window does not move, the previous output
repeats), which is what the stochastics' k and d need on a flat stretch (a NaN raw %K).
The other windows (WMA, VWMA, the EMA seeds) restart on a NaN input: a windowed value is
NaN until ``n`` consecutive non-NaN inputs exist. We keep a *run* counter (valid inputs,
capped at ``n``) instead of storing NaNs in the ring, which also restarts running sums
cleanly (no NaN poisoning, no drift carried across a gap).

Every kernel comes as ``<x>_step_at_nb(s, o, ...)`` reading its state at offset ``o`` of a
bigger array (how composite states embed it: no array views, which cost numba a reference
count per call) and ``<x>_step_nb(s, ...)`` = the same at offset 0.
"""

from __future__ import annotations

import math

import numpy as np
from tandem.core.jit import njit

# ---------------------------------------------------------------- SMA
# layout: [n, run, pos, sum, ring[n]]
_SMA_HDR = 4


@njit(cache=True)
def new_sma_state(n: int) -> np.ndarray:
    """State of a simple moving average of length ``n``."""
    s = np.zeros(_SMA_HDR + n)
    s[0] = n
    return s


# Windows up to this length are summed afresh from the ring every bar, oldest to newest:
# exact and independent of where the series started. That matters for the short
# smoothings (stoch / stoch RSI k and d): when %K sits at 0 or 100 for three bars, k and
# d must be *exactly* equal (their votes compare k > d); a running sum's drift would make
# them differ by an ulp, and differently depending on the start of the history.
SMA_EXACT_MAX = 8


@njit(cache=True, inline="always")
def chrono_sum_nb(s: np.ndarray, b: int, n: int, pos: int) -> float:
    """Sum of a full ring ``s[b:b+n]`` whose newest entry is at ``pos``, oldest first, so
    the rounding depends on the window's values only, not on the ring's rotation."""
    tot = 0.0
    for j in range(pos + 1, n):
        tot += s[b + j]
    for j in range(pos + 1):
        tot += s[b + j]
    return tot


@njit(cache=True, inline="always")
def _chrono4_nb(s: np.ndarray, b: int, n: int, pos: int, mean: float, dev: bool) -> float:
    """The one loop behind :func:`chrono_sum4_nb` (``dev`` False: the values) and
    :func:`chrono_absdev4_nb` (``dev`` True: ``|x - mean|``). Inlined with ``dev`` a
    constant, so each caller compiles to its own branch-free loop."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    p3 = 0.0
    j = pos + 1 if pos + 1 < n else 0
    for k in range(n):
        x = abs(s[b + j] - mean) if dev else s[b + j]
        r = k & 3
        if r == 0:
            p0 += x
        elif r == 1:
            p1 += x
        elif r == 2:
            p2 += x
        else:
            p3 += x
        j = j + 1 if j + 1 < n else 0
    return (p0 + p1) + (p2 + p3)


@njit(cache=True)
def chrono_sum4_nb(s: np.ndarray, b: int, n: int, pos: int) -> float:
    """Sum of a full ring ``s[b:b+n]`` whose newest entry is at ``pos``, taken oldest first
    into four interleaved partial sums (x0+x4+..., x1+x5+..., ...) added pairwise at the
    end: the rounding depends on the window's values only, and the chain of dependent
    additions is a quarter as long (what the 20-bar CCI and VWMA windows cost).
    ``tandem.core.indicators.rating.sum4_nb`` is the same sum over a contiguous window."""
    return _chrono4_nb(s, b, n, pos, 0.0, False)


@njit(cache=True)
def chrono_absdev4_nb(s: np.ndarray, b: int, n: int, pos: int, mean: float) -> float:
    """Sum of ``|x - mean|`` over a full ring, in the order and grouping of
    :func:`chrono_sum4_nb` (the CCI's mean deviation)."""
    return _chrono4_nb(s, b, n, pos, mean, True)


@njit(cache=True, inline="always")
def ring_push_nb(s: np.ndarray, w: int, b: int, x: float) -> int:
    """Push ``x`` into the ring ``s[b:b+n]`` of a window whose header ``[n, run, pos]`` sits
    at ``s[w:w+3]``: ``x`` overwrites slot ``pos`` (the value ``n`` pushes old), ``run``
    counts up to ``n`` (the window is full when ``s[w + 1] == n``), ``pos`` moves on.
    Returns the slot written, i.e. where the newest value now is. Every fixed window here
    (SMA, WMA, VWMA, CCI, Momentum, UO, Ichimoku's lag) moves through this one step."""
    n = int(s[w])
    pos = int(s[w + 2])
    s[b + pos] = x
    run = s[w + 1]
    if run < n:
        s[w + 1] = run + 1.0
    s[w + 2] = 0.0 if pos + 1 == n else pos + 1
    return pos


@njit(cache=True, inline="always")
def _sma_exact_nb(s: np.ndarray, b: int, n: int, newest: int) -> float:
    """Mean of the full ring ``s[b:b+n]`` whose newest value is at ``newest``, summed
    oldest first from 0.0 (a window of ``n <= SMA_EXACT_MAX``)."""
    if n == 3:
        # The stochastics' k and d smoothing: the same oldest-first sum as chrono_sum_nb,
        # written out (no loop bounds that change with the ring position, which cost
        # branch mispredictions on every bar).
        j1 = newest + 1 if newest < 2 else 0
        j2 = j1 + 1 if j1 < 2 else 0
        return (((0.0 + s[b + j1]) + s[b + j2]) + s[b + newest]) / n
    return chrono_sum_nb(s, b, n, newest) / n


@njit(cache=True, inline="always")
def sma_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """Mean of the last ``n`` non-NaN inputs: a running sum (O(1), like TA-Lib's SMA) for
    long windows, an exact chronological sum for ``n <= SMA_EXACT_MAX``. A NaN input is
    skipped (Pine): state untouched, the current window's mean again (same bits)."""
    n = int(s[o])
    b = o + _SMA_HDR
    if math.isnan(x):
        if s[o + 1] < n:
            return np.nan
        if n > SMA_EXACT_MAX:
            return s[o + 3] / n
        pos = int(s[o + 2])
        return _sma_exact_nb(s, b, n, pos - 1 if pos > 0 else n - 1)  # the newest's slot
    if n <= SMA_EXACT_MAX:
        newest = ring_push_nb(s, o, b, x)
        if s[o + 1] < n:
            return np.nan
        return _sma_exact_nb(s, b, n, newest)
    # running sum: the value leaving a full window is the one about to be overwritten
    if s[o + 1] >= n:
        s[o + 3] += x - s[b + int(s[o + 2])]
    else:
        s[o + 3] += x
    ring_push_nb(s, o, b, x)
    if s[o + 1] >= n:
        return s[o + 3] / n
    return np.nan


@njit(cache=True)
def sma_step_nb(s: np.ndarray, x: float) -> float:
    """One SMA step on a standalone state."""
    return sma_step_at_nb(s, 0, x)


@njit(cache=True)
def sma_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Batch SMA: a loop over the step."""
    s = new_sma_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = sma_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- EMA / RMA
# layout: [n, alpha, 1 - alpha, run, seed_sum, value, seeded]
EMA_SIZE = 7


@njit(cache=True)
def _new_exp_state(n: int, alpha: float) -> np.ndarray:
    s = np.zeros(EMA_SIZE)
    s[0] = n
    s[1] = alpha
    s[2] = 1.0 - alpha
    s[5] = np.nan
    return s


@njit(cache=True)
def new_ema_state(n: int) -> np.ndarray:
    """EMA, alpha = 2/(n+1), seeded with the SMA of the first ``n`` values (Pine/TA-Lib)."""
    return _new_exp_state(n, 2.0 / (n + 1.0))


@njit(cache=True)
def new_rma_state(n: int) -> np.ndarray:
    """Wilder's RMA, alpha = 1/n, seeded with the SMA of the first ``n`` values."""
    return _new_exp_state(n, 1.0 / n)


@njit(cache=True, inline="always")
def ema_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """One exponential-average step (shared by EMA and RMA; alpha lives in the state):
    ``alpha * x + (1 - alpha) * prev`` as Pine writes it.

    While seeding, a NaN restarts the seed window (Pine: sma over a window with na is na).
    Once seeded, a NaN input yields NaN and leaves the state untouched, so a stray NaN
    cannot poison the recursion forever.
    """
    if s[o + 6] != 0.0:
        if math.isnan(x):
            return np.nan
        v = s[o + 1] * x + s[o + 2] * s[o + 5]
        s[o + 5] = v
        return v
    if math.isnan(x):
        s[o + 3] = 0.0
        s[o + 4] = 0.0
        return np.nan
    s[o + 4] += x
    s[o + 3] += 1.0
    if s[o + 3] >= s[o]:
        v = s[o + 4] / s[o]
        s[o + 5] = v
        s[o + 6] = 1.0
        return v
    return np.nan


@njit(cache=True)
def ema_step_nb(s: np.ndarray, x: float) -> float:
    """One EMA (or RMA: same kernel, alpha in the state) step on a standalone state."""
    return ema_step_at_nb(s, 0, x)


rma_step_nb = ema_step_nb
rma_step_at_nb = ema_step_at_nb


@njit(cache=True)
def ema_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Batch EMA: a loop over the step."""
    s = new_ema_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = ema_step_at_nb(s, 0, x[i])
    return out


@njit(cache=True)
def rma_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Batch RMA: a loop over the step."""
    s = new_rma_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = ema_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- WMA
# layout: [n, run, pos, denom, ring[n]]
_WMA_HDR = 4


@njit(cache=True)
def new_wma_state(n: int) -> np.ndarray:
    """Linearly weighted MA (weights n..1, newest heaviest)."""
    s = np.zeros(_WMA_HDR + n)
    s[0] = n
    s[3] = n * (n + 1) / 2.0
    return s


@njit(cache=True, inline="always")
def wma_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """WMA recomputed from the ring each bar: O(n) but n <= 9 here, and exact."""
    n = int(s[o])
    if math.isnan(x):
        s[o + 1] = 0.0
        return np.nan
    pos = ring_push_nb(s, o, o + _WMA_HDR, x)
    if s[o + 1] < n:
        return np.nan
    acc = 0.0
    j = pos
    for w in range(n, 0, -1):  # newest first, weight n
        acc += w * s[o + _WMA_HDR + j]
        j = j - 1 if j > 0 else n - 1
    return acc / s[o + 3]


@njit(cache=True)
def wma_step_nb(s: np.ndarray, x: float) -> float:
    """One WMA step on a standalone state."""
    return wma_step_at_nb(s, 0, x)


@njit(cache=True)
def wma_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Batch WMA: a loop over the step."""
    s = new_wma_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = wma_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- Hull MA
# layout: [n, off_half, off_full, off_sqrt, <wma(n//2)>, <wma(n)>, <wma(floor(sqrt n))>]
# (offsets relative to the start of this state)
_HMA_HDR = 4


@njit(cache=True)
def new_hma_state(n: int) -> np.ndarray:
    """Hull MA: wma(2*wma(x, n//2) - wma(x, n), floor(sqrt(n)))."""
    a = new_wma_state(n // 2)
    b = new_wma_state(n)
    c = new_wma_state(int(math.floor(math.sqrt(n))))
    o1 = _HMA_HDR
    o2 = o1 + a.shape[0]
    o3 = o2 + b.shape[0]
    end = o3 + c.shape[0]
    s = np.zeros(end)
    s[0] = n
    s[1] = o1
    s[2] = o2
    s[3] = o3
    s[o1:o2] = a
    s[o2:o3] = b
    s[o3:end] = c
    return s


@njit(cache=True, inline="always")
def hma_step_at_nb(s: np.ndarray, o: int, x: float) -> float:
    """One Hull MA step."""
    half = wma_step_at_nb(s, o + int(s[o + 1]), x)
    full = wma_step_at_nb(s, o + int(s[o + 2]), x)
    return wma_step_at_nb(s, o + int(s[o + 3]), 2.0 * half - full)


@njit(cache=True)
def hma_step_nb(s: np.ndarray, x: float) -> float:
    """One Hull MA step on a standalone state."""
    return hma_step_at_nb(s, 0, x)


@njit(cache=True)
def hma_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Batch Hull MA: a loop over the step."""
    s = new_hma_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = hma_step_at_nb(s, 0, x[i])
    return out


# ---------------------------------------------------------------- VWMA
# layout: [n, run, pos, ring_close_x_volume[n], ring_volume[n]]
_VWMA_HDR = 3


@njit(cache=True)
def new_vwma_state(n: int) -> np.ndarray:
    """Volume-weighted MA: sma(x*v, n) / sma(v, n)."""
    s = np.zeros(_VWMA_HDR + 2 * n)
    s[0] = n
    return s


@njit(cache=True, inline="always")
def vwma_step_at_nb(s: np.ndarray, o: int, x: float, v: float) -> float:
    """VWMA recomputed from the ring (n = 20): exact, so an all-zero-volume window gives a
    volume sum of exactly 0 and therefore NaN, instead of a drifted running sum's noise."""
    n = int(s[o])
    if math.isnan(x) or math.isnan(v):
        s[o + 1] = 0.0
        return np.nan
    b = o + _VWMA_HDR
    pos = ring_push_nb(s, o, b, x * v)
    s[b + n + pos] = v  # the volume ring, same slot
    if s[o + 1] < n:
        return np.nan
    num = chrono_sum4_nb(s, b, n, pos)
    den = chrono_sum4_nb(s, b + n, n, pos)
    if den == 0.0:
        return np.nan
    return num / den


@njit(cache=True)
def vwma_step_nb(s: np.ndarray, x: float, v: float) -> float:
    """One VWMA step on a standalone state."""
    return vwma_step_at_nb(s, 0, x, v)


@njit(cache=True)
def vwma_nb(x: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Batch VWMA: a loop over the step."""
    s = new_vwma_state(n)
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = vwma_step_at_nb(s, 0, x[i], v[i])
    return out

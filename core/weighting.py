"""Portfolio weighting: how much each eligible asset gets at a rebalance — one rule, both drivers.

:func:`core.signals.signals_rows_nb` decides *which* assets may hold weight (signal +1 on
a rebalance bar) and writes the original ``score`` targets. When a profile changes any
``portfolio.weighting`` setting (:meth:`core.manifest.Portfolio.plain_score` is False),
both drivers then pass the same rows through :func:`weights_rows_nb`: the backtest over
its whole loaded history (warm-up bars with ``trade=False``), the daemon one slice at a
time through :func:`weights_step_nb`. The kernel keeps its state in one float64 array
(:func:`new_weight_state`), checkpointed by the daemon with the MTF and engine state, so
replay == backtest holds for every weighting. A profile left at the defaults never calls
this module: its numbers are those of the score rule, bit for bit.

**Return window** (every base slice, warm-up included). ``r = close_t / close_prev - 1``
where ``close_prev`` is the asset's close on the previous *stepped* slice. Rules:

* a slice with no bar for any asset (all closes NaN) is not a slice: the window does not
  move (the batch's time axis has no such row, the daemon may step one);
* a missing bar for one asset (NaN close) stores a NaN return, and the next bar's return
  is NaN too (no close to measure from): the gap breaks that asset's window;
* an asset is *ready* when its last ``lookback`` returns all exist — so an asset that
  joins the universe mid-history (or comes back from a gap) needs ``lookback + 1``
  consecutive bars before it can hold weight; until then it gets 0 like a non-signal.

**Weights at a rebalance** (a row whose score target has any non-NaN value):

1. eligible = signal +1, a bar in this slice, ready window (``score``: the score target's
   assets, window not needed); raw weights over the eligible assets sum to 1:
   ``equal`` 1/n; ``inverse_vol`` (1/σ_i)/Σ(1/σ_j), σ the sample standard deviation
   (ddof 1) of the window's returns — an asset with σ = 0 is not eligible;
   ``score`` the score rule's targets as they are (already capped);
2. each weight is capped at ``max_weight``; the excess stays in cash (no redistribution,
   as the score rule), so Σw ≤ 1;
3. a weight below ``min_weight`` goes to cash (0);
4. ``band`` (> 0): after the first rebalance, an asset whose new weight differs from its
   last rebalance target by at most ``band`` gets NaN = "do nothing" (the engine keeps the
   holding); ``band = 1`` therefore never trades again after the first rebalance;
5. ``turnover_cap``: if Σ|w_i − prev_i| over the assets that trade exceeds it, every move
   is scaled by cap/turnover (prev = last target, 0 before any); this convex step keeps
   Σw ≤ 1 and w ≤ max_weight but may leave a weight below ``min_weight`` while it moves.

Assets without a bar in the slice keep NaN (do nothing), as in the score rule.
"""

from __future__ import annotations

import numpy as np

from core.jit import njit

W_SCORE = 0
W_EQUAL = 1
W_INVERSE_VOL = 2
WEIGHTINGS = {"score": W_SCORE, "equal": W_EQUAL, "inverse_vol": W_INVERSE_VOL}

# State rows (float64 ``(HDR + lookback, n_assets)``):
R_LAST = 0  # the asset's close on the previous stepped slice (NaN: none)
R_PREV = 1  # its target at the last rebalance that set it (NaN: never)
R_RUN = 2  # consecutive valid returns, capped at lookback
R_HEAD = 3  # column 0: the ring's next write row (same for all assets)
HDR = 4


def new_weight_state(n_assets: int, lookback: int) -> np.ndarray:
    """A fresh state: no closes seen, no rebalance yet."""
    st = np.zeros((HDR + lookback, n_assets))
    st[R_LAST] = np.nan
    st[R_PREV] = np.nan
    st[HDR:] = np.nan
    return st


@njit(cache=True)
def update_window_nb(state, close):
    """Push one slice's closes into the return window (module doc, "Return window")."""
    n = close.shape[0]
    any_bar = False
    for i in range(n):
        if not np.isnan(close[i]):
            any_bar = True
            break
    if not any_bar:
        return
    lookback = state.shape[0] - HDR
    head = int(state[R_HEAD, 0])
    for i in range(n):
        c = close[i]
        last = state[R_LAST, i]
        r = np.nan
        if not np.isnan(c) and not np.isnan(last) and last > 0.0:
            r = c / last - 1.0
        state[HDR + head, i] = r
        if np.isnan(r):
            state[R_RUN, i] = 0.0
        elif state[R_RUN, i] < lookback:
            state[R_RUN, i] += 1.0
        state[R_LAST, i] = c
    head += 1
    if head == lookback:
        head = 0
    state[R_HEAD, :] = head


@njit(cache=True)
def window_std_nb(state, i):
    """Sample standard deviation (ddof 1) of asset ``i``'s window (two-pass, for accuracy)."""
    lookback = state.shape[0] - HDR
    m = 0.0
    for k in range(lookback):
        m += state[HDR + k, i]
    m /= lookback
    ss = 0.0
    for k in range(lookback):
        d = state[HDR + k, i] - m
        ss += d * d
    return np.sqrt(ss / (lookback - 1))


@njit(cache=True)
def rebalance_weights_nb(state, signal, target, method, max_w, min_w, band, cap, work):
    """Rewrite one rebalance row ``target`` in place (module doc, "Weights at a rebalance")."""
    n = target.shape[0]
    lookback = state.shape[0] - HDR
    total = 0.0
    for i in range(n):
        w = 0.0
        if not np.isnan(target[i]):
            if method == W_SCORE:
                w = target[i]
            elif signal[i] == 1 and state[R_RUN, i] >= lookback:
                if method == W_EQUAL:
                    w = 1.0
                else:
                    sd = window_std_nb(state, i)
                    if sd > 0.0:
                        w = 1.0 / sd
        work[i] = w
        total += w
    if method != W_SCORE and total > 0.0:
        for i in range(n):
            work[i] /= total
    turnover = 0.0
    for i in range(n):
        if np.isnan(target[i]):
            continue  # no bar: do nothing, as the score rule
        w = work[i]
        if w > max_w:
            w = max_w
        if w < min_w:
            w = 0.0
        prev = state[R_PREV, i]
        if band > 0.0 and not np.isnan(prev) and abs(w - prev) <= band:
            target[i] = np.nan  # inside the band: keep the holding
            continue
        target[i] = w
        turnover += abs(w - (0.0 if np.isnan(prev) else prev))
    if cap > 0.0 and turnover > cap:
        k = cap / turnover
        for i in range(n):
            if not np.isnan(target[i]):
                prev = state[R_PREV, i]
                p = 0.0 if np.isnan(prev) else prev
                target[i] = p + (target[i] - p) * k
    for i in range(n):
        if not np.isnan(target[i]):
            state[R_PREV, i] = target[i]


@njit(cache=True)
def weights_rows_nb(close, signal, target, trade, state, method, max_w, min_w, band, cap):
    """Bars ``close[t]`` ``(n_bars, n_assets)`` through the window; on rows where ``trade``
    is set and ``target[t]`` is a rebalance row (any non-NaN), rewrite its weights in place.
    Rows with ``trade`` unset (warm-up) only feed the window, as the daemon's warm-up."""
    n_bars, n = close.shape
    work = np.empty(n)
    for t in range(n_bars):
        update_window_nb(state, close[t])
        if not trade[t]:
            continue
        rebalance = False
        for i in range(n):
            if not np.isnan(target[t, i]):
                rebalance = True
                break
        if rebalance:
            rebalance_weights_nb(state, signal[t], target[t], method, max_w, min_w, band, cap,
                                 work)


@njit(cache=True)
def weights_step_nb(close, signal, target, trade, state, method, max_w, min_w, band, cap):
    """One slice (the daemon's face of :func:`weights_rows_nb`); 1-D ``(n_assets,)`` arrays."""
    n = close.shape[0]
    tr = np.empty(1, dtype=np.bool_)
    tr[0] = trade
    weights_rows_nb(close.reshape((1, n)), signal.reshape((1, n)), target.reshape((1, n)), tr,
                    state, method, max_w, min_w, band, cap)


class WeightParams:
    """The numeric form of a profile's ``portfolio`` weighting settings."""

    __slots__ = ("method", "lookback", "max_w", "min_w", "band", "cap")

    def __init__(self, portfolio) -> None:  # noqa: ANN001 - core.manifest.Portfolio
        self.method = WEIGHTINGS[portfolio.weighting]
        self.lookback = int(portfolio.lookback)
        self.max_w = float(portfolio.max_weight)
        self.min_w = float(portfolio.min_weight)
        self.band = float(portfolio.band)
        self.cap = 0.0 if portfolio.turnover_cap is None else float(portfolio.turnover_cap)

    def args(self) -> tuple[int, float, float, float, float]:
        return self.method, self.max_w, self.min_w, self.band, self.cap


def apply_weighting(portfolio, close: np.ndarray, signal: np.ndarray, target: np.ndarray,  # noqa: ANN001
                    first_trade: int, state: np.ndarray | None = None) -> np.ndarray:
    """Batch driver: rewrite ``target`` ``(n_bars, n_assets)`` in place from bar
    ``first_trade`` on (earlier bars only feed the window); returns the final state."""
    p = WeightParams(portfolio)
    n_bars, n = target.shape
    if state is None:
        state = new_weight_state(n, p.lookback)
    trade = np.arange(n_bars) >= first_trade
    weights_rows_nb(np.ascontiguousarray(close, dtype=np.float64),
                    np.ascontiguousarray(signal, dtype=np.int8), target, trade, state, *p.args())
    return state

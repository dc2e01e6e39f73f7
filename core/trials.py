"""Many trials per kernel call: the combiner and the engine over shared ratings.

A parameter sweep computes the MTF ratings once; each trial then runs only
:func:`tandem.core.signals.signals_rows_nb` (the combiner) and
:func:`tandem.core.engine.kernels.run_batch_nb` (the engine) — the same kernels ``run`` and the
daemon use, so a trial's fills are the fills ``run`` gives for that profile.

Each trial × segment (a bar range ``[lo, hi)``; walk-forward folds are segments) starts flat
with the trial's initial cash, exactly as ``run --from`` does. The combiner runs in time
chunks (:data:`CHUNK`) into one reusable signal buffer, once per distinct combiner setting
(trials that differ only in engine settings share it); the engine then steps over the
segment, pausing when its fill buffer is full (its state carries over, so this is exact).

A trial with a portfolio weighting (:mod:`tandem.core.weighting`; ``TrialBatch.weighting``) runs
one segment at a time: its combiner rows once over the data, then per segment the
weighting kernel as ``run`` drives it (the window fed from the first loaded bar, rebalances
from the segment's first bar, a fresh book), and the engine on those targets. The weighting
kernels are only compiled when such a trial runs (they need scipy, an extra), never into
:func:`run_trials_nb`.

Statistics are computed here from the equity and the raw fill rows (round trips paired as
:func:`tandem.core.journal.trades_table` does), with the definitions of ``tandem.backtest.stats``
(a test holds them equal to ``compute_stats`` on a real run); the order of some float sums
differs, so they agree to rounding, not bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tandem.core.engine.kernels import run_batch_nb
from tandem.core.engine.layout import (
    A_BLOCK,
    A_POS,
    F_ASSET,
    F_FEE,
    F_POS_AFTER,
    F_PRICE,
    F_QTY,
    F_SIDE,
    F_TS,
    MAX_FILLS_PER_ASSET,
    N_ASTATE,
    N_FILL_COLS,
    N_PSTATE,
    S_CASH,
    S_LAST_TS,
)
from tandem.core.engine.params import N_PARAMS, P_INITIAL_CASH
from tandem.core.jit import njit
from tandem.core.signals import signals_rows_nb

CHUNK = 512

# --- signal parameter columns (one row per trial) ---
SP_COL = 0  # index into the ratings' first axis (the driver's column of the strategy)
SP_MODE = 1  # core.signals.MODE_WIDE / MODE_VOTE
SP_ENTRY = 2
SP_EXIT = 3
SP_MIN_AGREE = 4
SP_PORTFOLIO = 5  # 1.0 / 0.0
SP_MAX_WEIGHT = 6
SP_EVERY_MS = 7
SP_EVERY_OFF = 8
N_SP = 9

# --- statistics columns (names as backtest.stats.compute_stats) ---
STAT_NAMES = ("total_return", "cagr", "sharpe", "sortino", "volatility", "max_drawdown",
              "n_trades", "n_open_trades", "win_rate", "profit_factor", "exposure", "fees",
              "n_fills")
N_STATS = len(STAT_NAMES)
(ST_TOTAL_RETURN, ST_CAGR, ST_SHARPE, ST_SORTINO, ST_VOL, ST_MAX_DD, ST_N_TRADES, ST_N_OPEN,
 ST_WIN_RATE, ST_PROFIT_FACTOR, ST_EXPOSURE, ST_FEES, ST_N_FILLS) = range(N_STATS)


@njit(cache=True)
def equity_stats_nb(eq, initial_cash, ppy, out):
    """Return-based statistics of one equity path (``tandem.backtest.stats`` definitions)."""
    n_bars = eq.shape[0]
    prev = initial_cash
    n = 0
    s = 0.0
    down2 = 0.0
    for t in range(n_bars):
        r = eq[t] / prev - 1.0
        prev = eq[t]
        if np.isfinite(r):
            n += 1
            s += r
            if r < 0.0:
                down2 += r * r
    mean = s / n if n > 0 else np.nan
    var = 0.0
    prev = initial_cash
    for t in range(n_bars):
        r = eq[t] / prev - 1.0
        prev = eq[t]
        if np.isfinite(r):
            var += (r - mean) * (r - mean)
    std = math.sqrt(var / (n - 1)) if n > 1 else np.nan
    last = eq[n_bars - 1] if n_bars > 0 else np.nan
    tr = last / initial_cash - 1.0
    out[ST_TOTAL_RETURN] = tr
    if n == 0 or not np.isfinite(ppy) or not np.isfinite(tr):
        out[ST_CAGR] = np.nan
    elif 1.0 + tr <= 0.0:
        out[ST_CAGR] = -1.0
    else:
        out[ST_CAGR] = (1.0 + tr) ** (ppy / n) - 1.0
    if n < 2 or std == 0.0 or not np.isfinite(std):
        out[ST_SHARPE] = np.nan
    else:
        out[ST_SHARPE] = mean / std * math.sqrt(ppy)
    dd = math.sqrt(down2 / n) if n > 0 else 0.0
    out[ST_SORTINO] = mean / dd * math.sqrt(ppy) if n > 0 and dd != 0.0 else np.nan
    out[ST_VOL] = std * math.sqrt(ppy) if n > 1 else np.nan
    peak = initial_cash
    mdd = np.nan
    for t in range(n_bars):
        if eq[t] > peak:
            peak = eq[t]
        d = eq[t] / peak - 1.0
        if not d >= mdd:
            mdd = d
    out[ST_MAX_DD] = mdd


@njit(cache=True)
def _reset_state(astate, pstate, cash):
    astate[:, :] = np.nan
    astate[:, A_POS] = 0.0
    astate[:, A_BLOCK] = 0.0
    pstate[:] = 0.0
    pstate[S_CASH] = cash
    pstate[S_LAST_TS] = -1.0


@njit(cache=True)
def _account_fill(f, held, tdir, tin_q, tin_v, tout_q, tout_v, tfee, acc):
    """Pair one fill into its asset's round trip (tandem.core.journal.trades_table's rule).

    ``acc``: [n_closed, n_wins, gross_win, gross_loss, fees, n_fills, n_open_positions].
    """
    i = int(f[F_ASSET])
    q = f[F_QTY]
    signed = q if f[F_SIDE] > 0 else -q
    if tdir[i] == 0.0:
        tdir[i] = 1.0 if signed > 0 else -1.0
        tin_q[i] = 0.0
        tin_v[i] = 0.0
        tout_q[i] = 0.0
        tout_v[i] = 0.0
        tfee[i] = 0.0
    if (signed > 0) == (tdir[i] > 0):
        tin_q[i] += q
        tin_v[i] += q * f[F_PRICE]
    else:
        tout_q[i] += q
        tout_v[i] += q * f[F_PRICE]
    tfee[i] += f[F_FEE]
    acc[4] += f[F_FEE]
    acc[5] += 1.0
    pos_after = f[F_POS_AFTER]
    if (held[i] != 0.0) != (pos_after != 0.0):
        acc[6] += 1.0 if pos_after != 0.0 else -1.0
    held[i] = pos_after
    if pos_after == 0.0:
        pnl = (tout_v[i] - tin_v[i]) * tdir[i] - tfee[i]
        acc[0] += 1.0
        if pnl > 0.0:
            acc[1] += 1.0
            acc[2] += pnl
        elif pnl < 0.0:
            acc[3] -= pnl
        tdir[i] = 0.0


@njit(cache=True)
def _same_signals(sparams, weights, k):
    """Trial ``k`` combines exactly like trial ``k - 1`` (its signals can be reused)."""
    if k == 0:
        return False
    for j in range(sparams.shape[1]):
        if sparams[k, j] != sparams[k - 1, j]:
            return False
    for j in range(weights.shape[1]):
        if weights[k, j] != weights[k - 1, j]:
            return False
    return True


@njit(cache=True, nogil=True)  # nogil: a sweep runs chunks of trials on threads at once
def run_trials_nb(ratings, ts, o, h, lo, c, mtf_mask, sparams, weights, eparams, seg_lo,
                  seg_hi, seg_ppy, seg_sample, sample_idx, work, stats_out, samples_out,
                  eq_out, fills_keep, sigf, combine):
    """Run every trial (row of ``sparams``/``weights``/``eparams``) over every segment.

    ``ratings``: ``(n_cols, n_bars, n_assets, n_tf)`` — the strategies' rating columns;
    ``ts``: bar close times; prices ``(n_bars, n_assets)``. ``work``: None (discrete) or a
    ``float64[n_assets]`` (portfolio): it selects the engine's mode at compile time, so the
    driver groups trials by mode. ``sigf``: ``(n_bars, n_assets)`` scratch for the engine's
    input (discrete signals or target weights). Outputs: ``stats_out[trial, seg, N_STATS]``;
    ``samples_out[trial, j]`` = equity after bar ``sample_idx[j]`` for segments with
    ``seg_sample``; ``eq_out`` (``n_bars``) holds the last trial's equity per segment;
    ``fills_keep`` (rows ≥ 0) receives the fills of the run (single-trial use). Returns the
    number of fills produced by the last trial × segment (may exceed ``fills_keep``).
    ``combine`` False: ``sigf`` already holds the engine's input (a weighted trial's
    targets, :func:`run_trials`); the combiner is skipped.

    The combiner is stateless per bar, so its output over the bars any segment covers is
    computed once per distinct combiner setting: consecutive trials that differ only in
    engine settings (stops, sizing, costs) reuse it (the driver sorts them together).
    """
    n_trials = sparams.shape[0]
    n_assets = c.shape[1]
    n_seg = seg_lo.shape[0]
    chunk = CHUNK
    g_lo = ts.shape[0]
    g_hi = 0
    for s in range(n_seg):
        g_lo = min(g_lo, seg_lo[s])
        g_hi = max(g_hi, seg_hi[s])
    sig8 = np.zeros((chunk, n_assets), dtype=np.int8)
    score = np.empty((chunk, n_assets))
    target = np.empty((chunk, n_assets))
    cap = max(4096, 8 * MAX_FILLS_PER_ASSET * n_assets)
    fills = np.empty((cap, N_FILL_COLS))
    astate = np.empty((n_assets, N_ASTATE))
    pstate = np.empty(N_PSTATE)
    held = np.zeros(n_assets)
    tdir = np.zeros(n_assets)
    tin_q = np.zeros(n_assets)
    tin_v = np.zeros(n_assets)
    tout_q = np.zeros(n_assets)
    tout_v = np.zeros(n_assets)
    tfee = np.zeros(n_assets)
    acc = np.zeros(7)
    kept = 0
    for k in range(n_trials):
        sp = sparams[k]
        ep = eparams[k]
        portfolio = sp[SP_PORTFOLIO] > 0.0
        if combine and not _same_signals(sparams, weights, k):
            rat = ratings[int(sp[SP_COL])]
            every_ms = np.int64(sp[SP_EVERY_MS])
            every_off = np.int64(sp[SP_EVERY_OFF])
            for t0 in range(g_lo, g_hi, chunk):
                t1 = min(g_hi, t0 + chunk)
                m = t1 - t0
                signals_rows_nb(ts[t0:t1], rat[t0:t1], mtf_mask, weights[k], int(sp[SP_MODE]),
                                sp[SP_ENTRY], sp[SP_EXIT], sp[SP_MIN_AGREE], portfolio,
                                sp[SP_MAX_WEIGHT], every_ms, every_off, sig8[:m], score[:m],
                                target[:m])
                if portfolio:
                    sigf[t0:t1] = target[:m]
                else:
                    for r in range(m):
                        for i in range(n_assets):
                            sigf[t0 + r, i] = sig8[r, i]
        cash0 = ep[P_INITIAL_CASH]
        for s in range(n_seg):
            a, b = seg_lo[s], seg_hi[s]
            _reset_state(astate, pstate, cash0)
            held[:] = 0.0
            tdir[:] = 0.0
            acc[:] = 0.0
            exposed = 0
            kept = 0
            start = 0
            m = b - a
            while start < m:
                # The engine pauses when its fill buffer is full; its state carries over.
                nf, nxt = run_batch_nb(ep, astate, pstate, ts[a:b], o[a:b], h[a:b], lo[a:b],
                                       c[a:b], sigf[a:b], fills, 0, start, eq_out[a:b], work)
                j = 0
                for r in range(start, nxt):
                    tr = float(ts[a + r])
                    while j < nf and fills[j, F_TS] == tr:
                        _account_fill(fills[j], held, tdir, tin_q, tin_v, tout_q, tout_v,
                                      tfee, acc)
                        if kept < fills_keep.shape[0]:
                            fills_keep[kept] = fills[j]
                        kept += 1
                        j += 1
                    if acc[6] > 0.0:
                        exposed += 1
                start = nxt
            st = stats_out[k, s]
            equity_stats_nb(eq_out[a:b], cash0, seg_ppy[s], st)
            n_closed = acc[0]
            st[ST_N_TRADES] = n_closed
            n_open = 0
            for i in range(n_assets):
                if tdir[i] != 0.0:
                    n_open += 1
            st[ST_N_OPEN] = n_open
            if n_closed > 0:
                st[ST_WIN_RATE] = acc[1] / n_closed
                st[ST_PROFIT_FACTOR] = acc[2] / acc[3] if acc[3] > 0.0 else np.inf
            else:
                st[ST_WIN_RATE] = np.nan
                st[ST_PROFIT_FACTOR] = np.nan
            st[ST_EXPOSURE] = exposed / m if m > 0 else np.nan
            st[ST_FEES] = acc[4]
            st[ST_N_FILLS] = acc[5]
            if seg_sample[s]:
                for q in range(sample_idx.shape[0]):
                    x = sample_idx[q]
                    if a <= x < b:
                        samples_out[k, q] = eq_out[x]
    return kept


@dataclass
class TrialBatch:
    """Per-trial numeric parameters (one row each), built by the driver from profiles."""

    sparams: np.ndarray  # (n, N_SP)
    weights: np.ndarray  # (n, n_tf)
    eparams: np.ndarray  # (n, N_PARAMS)
    portfolio: np.ndarray  # bool (n,)
    #: per trial, its profile's ``portfolio`` settings when a weighting applies (portfolio
    #: mode, not :meth:`~core.manifest.Portfolio.plain_score`); None: the score rule
    weighting: list | None = None


def _call(ratings, ts_close, o, h, lo, c, mtf_mask, sp, w, ep, seg_lo, seg_hi, seg_ppy,  # noqa: ANN001, ANN202
          seg_sample, sample_idx, work, eq, sigf, combine, keep_fills):
    """:func:`run_trials_nb` on some trials, growing the fill buffer until every fill fits."""
    n_seg = seg_lo.shape[0]
    cap = keep_fills
    while True:
        keep = np.empty((cap, N_FILL_COLS))
        st = np.full((sp.shape[0], n_seg, N_STATS), np.nan)
        sm = np.full((sp.shape[0], sample_idx.shape[0]), np.nan)
        got = run_trials_nb(ratings, ts_close, o, h, lo, c, mtf_mask, np.ascontiguousarray(sp),
                            np.ascontiguousarray(w), np.ascontiguousarray(ep), seg_lo, seg_hi,
                            seg_ppy, seg_sample, sample_idx, work, st, sm, eq, keep, sigf,
                            combine)
        if keep_fills <= 0 or got <= cap:
            return st, sm, keep[:got]
        cap = int(got)


def _weighted_targets(ratings, ts_close, c, warm_close, mtf_mask, sp, w, portfolio, seg_lo,  # noqa: ANN001, ANN202
                      seg_hi):
    """One weighted trial's engine input per segment: the combiner over ``[0, max hi)``,
    then :func:`tandem.core.weighting.apply_weighting` over the warm-up closes and ``[0, hi)``,
    rebalancing from ``lo`` on — as ``run`` does with ``lo`` its first tradable bar."""
    from tandem.core.weighting import apply_weighting

    end = int(seg_hi.max())
    n = c.shape[1]
    sig8 = np.zeros((end, n), dtype=np.int8)
    score = np.empty((end, n))
    target = np.empty((end, n))
    signals_rows_nb(ts_close[:end], ratings[int(sp[SP_COL])][:end], mtf_mask, w,
                    int(sp[SP_MODE]), sp[SP_ENTRY], sp[SP_EXIT], sp[SP_MIN_AGREE], True,
                    sp[SP_MAX_WEIGHT], np.int64(sp[SP_EVERY_MS]), np.int64(sp[SP_EVERY_OFF]),
                    sig8, score, target)
    k = warm_close.shape[0]
    closes = np.concatenate([warm_close, c[:end]])
    sigs = np.concatenate([np.zeros((k, n), dtype=np.int8), sig8])
    for a, b in zip(seg_lo, seg_hi, strict=True):
        # warm-up rows only feed the window (NaN targets: never a rebalance there)
        tgt = np.concatenate([np.full((k, n), np.nan), target[:b]])
        apply_weighting(portfolio, closes[:k + b], sigs[:k + b], tgt, k + int(a))
        yield tgt[k:]


def run_trials(ratings: np.ndarray, ts_close: np.ndarray, o: np.ndarray, h: np.ndarray,
               lo: np.ndarray, c: np.ndarray, mtf_mask: np.ndarray, batch: TrialBatch,
               seg_lo: np.ndarray, seg_hi: np.ndarray, seg_ppy: np.ndarray,
               seg_sample: np.ndarray, sample_idx: np.ndarray, *, keep_fills: int = 0,
               warm_close: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Python face of :func:`run_trials_nb`: groups the trials by engine mode, and runs the
    weighted ones segment by segment (module doc; ``warm_close``: the closes of the loaded
    bars before these, which feed their return window).

    Returns ``(stats[n, n_seg, N_STATS], samples[n, n_samples], equity, fills)`` where
    ``equity``/``fills`` are the last trial's (meaningful for a single trial and segment;
    ``keep_fills`` > 0 sizes the fill buffer and grows it until every fill fits).
    """
    n = batch.sparams.shape[0]
    n_seg = seg_lo.shape[0]
    n_assets = c.shape[1]
    stats = np.full((n, n_seg, N_STATS), np.nan)
    samples = np.full((n, sample_idx.shape[0]), np.nan)
    eq = np.full(ts_close.shape[0], np.nan)
    fills = np.empty((0, N_FILL_COLS))
    if batch.eparams.shape[1] != N_PARAMS or batch.sparams.shape[1] != N_SP:
        raise ValueError("trial parameter arrays have the wrong width")
    wps = batch.weighting or [None] * n
    weighted = np.array([wp is not None for wp in wps], dtype=np.bool_)
    sigf = np.empty(c.shape)
    for port in (False, True):
        rows = np.flatnonzero((batch.portfolio == port) & ~weighted)
        if rows.size == 0:
            continue
        # Trials with the same combiner settings side by side: their signals are computed
        # once (a stable sort keeps the given order otherwise).
        key = np.hstack([batch.sparams[rows], batch.weights[rows]])
        rows = rows[np.lexsort(key.T[::-1])]
        work = np.empty(n_assets) if port else None
        st, sm, kept = _call(ratings, ts_close, o, h, lo, c, mtf_mask, batch.sparams[rows],
                             batch.weights[rows], batch.eparams[rows], seg_lo, seg_hi, seg_ppy,
                             seg_sample, sample_idx, work, eq, sigf, True, keep_fills)
        stats[rows] = st
        samples[rows] = sm
        if keep_fills > 0:
            fills = kept
    work = np.empty(n_assets)
    for k in np.flatnonzero(weighted):
        warm = np.empty((0, n_assets)) if warm_close is None else warm_close
        targets = _weighted_targets(ratings, ts_close, c, warm, mtf_mask, batch.sparams[k],
                                    batch.weights[k], wps[k], seg_lo, seg_hi)
        for s, tgt in enumerate(targets):
            sigf[: tgt.shape[0]] = tgt
            one = slice(s, s + 1)
            st, sm, kept = _call(ratings, ts_close, o, h, lo, c, mtf_mask,
                                 batch.sparams[k:k + 1], batch.weights[k:k + 1],
                                 batch.eparams[k:k + 1], seg_lo[one], seg_hi[one],
                                 seg_ppy[one], seg_sample[one], sample_idx, work, eq, sigf,
                                 False, keep_fills)
            stats[k, s] = st[0, 0]
            samples[k] = np.where(np.isnan(sm[0]), samples[k], sm[0])
            if keep_fills > 0:
                fills = kept
    return stats, samples, eq, fills

"""Combiners: multi-timeframe ratings -> discrete signals and portfolio target weights.

One rule, used by both drivers: :func:`compute_signals` maps ``(profile, ratings)`` to
signals for any number of bars (the backtest passes the whole history, the daemon one time
slice), and both go through the same numba kernel :func:`signals_rows_nb`. Combination is
stateless per bar, so a slice and a history give the same numbers bit for bit.

Inputs per bar: ``ratings[asset, tf]`` = the profile's rating (``rating_all|ma|osc``) of
each timeframe in ``profile.timeframes`` order (base first; higher timeframes hold their
last *closed* value, see :mod:`tandem.core.mtf`).

**wide**: ``score = Σ w_k r_k / Σ w_k``; NaN if any timeframe's rating is NaN (warm-up or
missing bar). ``signal = +1`` if ``score > entry_threshold``, ``-1`` if
``score < exit_threshold``, else 0 (strict, as TradingView's labels: Buy is v > 0.1).

**vote**: each timeframe votes +1 if ``r > entry_threshold``, -1 if ``r < exit_threshold``,
0 otherwise or when NaN (abstains). ``signal = +1`` if the summed weight of +1 votes
``>= min_agree``, -1 if that of -1 votes ``>= min_agree`` (0 if both, which only a
min_agree below half the weight allows). The score is ``(bull - bear) / Σ w``.

Assets outside ``core_assets`` run on the base timeframe only: score = base rating,
signal by the thresholds (vote mode: the base timeframe's vote).

**Portfolio targets** (CONTRACTS.md "Signals"): on a rebalance bar (its close falls on a
``portfolio.rebalance_every`` UTC boundary) assets with ``signal == +1`` and a positive
score get ``w_i = score_i / Σ score`` capped at ``max_weight`` (the excess stays in cash,
so Σw ≤ 1); every other asset gets 0, except assets without a base bar in the slice
(base rating NaN: missing bar), which get NaN ("do nothing"). Non-rebalance bars are
all-NaN rows; an all-missing slice is therefore never a rebalance (as in the batch, whose
time axis has no such row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tandem.core.jit import njit
from tandem.core.jit_ready import ready as jit_ready
from tandem.core.timeframes import bucket_offset_ms, timeframe_to_ms

if TYPE_CHECKING:
    from tandem.core.manifest import Profile

MODE_WIDE = 0
MODE_VOTE = 1


@njit(cache=True)
def wide_score_nb(r: np.ndarray, weights: np.ndarray, unit: bool) -> float:
    """Weighted mean of the timeframes' ratings; NaN if any is NaN. ``unit``: every
    timeframe weighs 1.0 (a single-timeframe asset; saves allocating a ones array)."""
    num = 0.0
    den = 0.0
    for k in range(r.shape[0]):
        if np.isnan(r[k]):
            return np.nan
        wk = 1.0 if unit else weights[k]
        num += wk * r[k]
        den += wk
    return num / den


@njit(cache=True)
def threshold_signal_nb(score: float, entry: float, exit_: float) -> int:
    """+1 if score > entry, -1 if score < exit, else 0 (NaN -> 0)."""
    if score > entry:
        return 1
    if score < exit_:
        return -1
    return 0


@njit(cache=True)
def vote_nb(r: np.ndarray, weights: np.ndarray, unit: bool, entry: float, exit_: float,
            min_agree: float):
    """Vote combiner for one asset: returns ``(signal, score)`` (``unit``: as
    :func:`wide_score_nb`)."""
    bull = 0.0
    bear = 0.0
    total = 0.0
    for k in range(r.shape[0]):
        wk = 1.0 if unit else weights[k]
        total += wk
        s = threshold_signal_nb(r[k], entry, exit_)
        if s > 0:
            bull += wk
        elif s < 0:
            bear += wk
    up = bull >= min_agree
    down = bear >= min_agree
    sig = 0
    if up and not down:
        sig = 1
    elif down and not up:
        sig = -1
    return sig, (bull - bear) / total


@njit(cache=True)
def target_weights_nb(score: np.ndarray, signal: np.ndarray, max_weight: float, out: np.ndarray) -> None:
    """Portfolio weights for one rebalance bar (see module doc); writes ``out`` in place."""
    total = 0.0
    for i in range(score.shape[0]):
        if signal[i] == 1 and score[i] > 0.0:
            total += score[i]
    for i in range(score.shape[0]):
        w = 0.0
        if total > 0.0 and signal[i] == 1 and score[i] > 0.0:
            w = score[i] / total
            if w > max_weight:
                w = max_weight
        out[i] = w


@njit(cache=True)
def is_rebalance_bar_nb(ts_close: int, every_ms: int, offset_ms: int) -> bool:
    """True when a bar closing at ``ts_close`` closes on a rebalance boundary."""
    return (ts_close - offset_ms) % every_ms == 0


@njit(cache=True)
def signals_rows_nb(
    ts_close,
    ratings,
    mtf_mask,
    weights,
    mode,
    entry,
    exit_,
    min_agree,
    portfolio,
    max_weight,
    every_ms,
    every_off,
    out_signal,
    out_score,
    out_target,
):
    """Combine time slices: ``ratings`` is ``(n_bars, n_assets, n_tf)`` of the chosen rating.

    Writes ``out_signal`` (int8), ``out_score`` and ``out_target`` (all-NaN rows unless
    ``portfolio`` and a rebalance bar), each ``(n_bars, n_assets)``. The batch passes its
    whole history, the daemon one slice (:func:`signals_slice`): one kernel for both, so
    they agree bit for bit, and a cold start compiles it once.
    """
    n_bars, n_assets = ratings.shape[0], ratings.shape[1]
    for t in range(n_bars):
        sig_t = out_signal[t]
        score_t = out_score[t]
        target_t = out_target[t]
        for i in range(n_assets):
            # Assets outside core_assets: the base timeframe alone, weighing 1.
            single = not mtf_mask[i]
            r = ratings[t, i, :1] if single else ratings[t, i]
            if mode == MODE_WIDE:
                sc = wide_score_nb(r, weights, single)
                sig = threshold_signal_nb(sc, entry, exit_)
            else:
                # A single-timeframe asset needs its one vote; min_agree is in MTF weight units.
                need = 1.0 if single else min_agree
                sig, sc = vote_nb(r, weights, single, entry, exit_, need)
            sig_t[i] = sig
            score_t[i] = sc
        if portfolio and is_rebalance_bar_nb(ts_close[t], every_ms, every_off):
            target_weights_nb(score_t, sig_t, max_weight, target_t)
            for i in range(n_assets):
                # No base bar for this asset in this slice (missing, or not listed yet): NaN
                # = "does nothing", rather than 0 = "sell it all". It gets no weight share.
                if np.isnan(ratings[t, i, 0]):
                    target_t[i] = np.nan
        else:
            target_t[:] = np.nan


@dataclass(frozen=True)
class SignalParams:
    """The numeric form of a profile's combiner settings (what the kernels take)."""

    rating_column: int
    mtf_mask: np.ndarray  # bool per asset, in profile.assets order
    weights: np.ndarray
    mode: int
    entry: float
    exit: float
    min_agree: float
    portfolio: bool
    max_weight: float
    every_ms: int
    every_off: int

    @classmethod
    def from_profile(cls, profile: Profile, symbols: Sequence[str] | None = None) -> SignalParams:
        """Extract the combiner parameters of ``profile`` for ``symbols`` (default: all
        of ``profile.assets``, in that order; a subset may be run on its own)."""
        syms = list(profile.assets) if symbols is None else list(symbols)
        unknown = [s for s in syms if s not in profile.assets]
        if unknown:
            raise ValueError(f"symbols not in profile {profile.name!r}: {unknown}")
        core = set(profile.core_assets)
        multi = len(profile.timeframes) > 1
        every = profile.portfolio.rebalance_every
        return cls(
            rating_column=profile.rating_column,
            mtf_mask=np.array([multi and s in core for s in syms], dtype=np.bool_),
            weights=np.asarray(profile.tf_weights(), dtype=np.float64),
            mode=MODE_WIDE if profile.mtf.mode == "wide" else MODE_VOTE,
            entry=float(profile.entry_threshold),
            exit=float(profile.exit_threshold),
            min_agree=float(profile.mtf.min_agree or 0.0),
            portfolio=profile.execution.mode == "portfolio",
            max_weight=float(profile.portfolio.max_weight),
            every_ms=timeframe_to_ms(every),
            every_off=bucket_offset_ms(every),
        )


@dataclass(frozen=True)
class Signals:
    """Combiner output, ``(n_bars, n_assets)`` each."""

    signal: np.ndarray  # int8: +1 / -1 / 0
    score: np.ndarray  # float64 combined score (NaN during warm-up / missing)
    target: np.ndarray  # float64 target weights; all-NaN rows = not a rebalance bar



def signals_slice(p: SignalParams, ts_close: int, ratings: np.ndarray, out_signal: np.ndarray,
                  out_score: np.ndarray, out_target: np.ndarray) -> None:
    """One time slice (the daemon): :func:`signals_rows_nb` over one bar. ``ratings``
    float64 ``(n_assets, n_tf)`` of the chosen rating, C-contiguous; ``out_*``
    ``(n_assets,)``, overwritten. The reshapes are views, typed as the backtest's
    arguments, so the daemon loads the backtest's compiled combiner."""
    n, n_tf = ratings.shape
    signals_rows_nb(
        np.array([ts_close], dtype=np.int64), ratings.reshape(1, n, n_tf), p.mtf_mask, p.weights,
        p.mode, p.entry, p.exit, p.min_agree, p.portfolio, p.max_weight, p.every_ms,
        p.every_off, out_signal.reshape(1, n), out_score.reshape(1, n), out_target.reshape(1, n),
    )

def compute_signals(
    profile: Profile, ratings: np.ndarray, ts_close: np.ndarray, symbols: Sequence[str] | None = None
) -> Signals:
    """Map MTF ratings to signals — the one rule both drivers call.

    ``ratings``: ``(n_bars, n_assets, n_tf, k)`` as :func:`tandem.core.mtf.compute_mtf_ratings`
    returns (``k >= 3``: ma, osc, all, ...); the profile's rating is picked here. Assets in
    ``profile.assets`` order, timeframes in ``profile.timeframes`` order. ``ts_close``:
    int64 ``(n_bars,)`` bar close times (open ts + base timeframe). The daemon passes one
    slice as ``n_bars = 1``. ``symbols``: the assets of axis 1 when not all of
    ``profile.assets`` (portfolio weights are then normalised over these only).
    """
    p = SignalParams.from_profile(profile, symbols)
    ratings = np.asarray(ratings, dtype=np.float64)
    if ratings.ndim != 4 or ratings.shape[1] != p.mtf_mask.shape[0] or ratings.shape[2] != p.weights.shape[0]:
        raise ValueError(
            f"ratings must be (n_bars, {p.mtf_mask.shape[0]} assets, {p.weights.shape[0]} timeframes, k), "
            f"got {ratings.shape}"
        )
    chosen = np.ascontiguousarray(ratings[..., p.rating_column])
    ts_close = np.ascontiguousarray(ts_close, dtype=np.int64)
    jit_ready("signals")  # a JIT warm-up worker may be compiling the combiner
    shape = chosen.shape[:2]
    sig = np.zeros(shape, dtype=np.int8)
    score = np.empty(shape)
    target = np.empty(shape)
    signals_rows_nb(
        ts_close, chosen, p.mtf_mask, p.weights, p.mode, p.entry, p.exit, p.min_agree,
        p.portfolio, p.max_weight, p.every_ms, p.every_off, sig, score, target,
    )
    return Signals(signal=sig, score=score, target=target)


def ratings_from_candles(
    profile: Profile,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    symbols: Sequence[str] | None = None,
    states: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first half of :func:`signals_from_candles`: ``(mtf ratings, final MTF states)``.

    A driver that feeds the ratings in chunks (a progress bar) and combines them afterwards
    calls this, then :func:`compute_signals` with ``ts_close = ts + base timeframe`` — the
    combiner is stateless per bar, so the result is the same as one call of
    :func:`signals_from_candles`.
    """
    from tandem.core.mtf import MtfConfig, compute_mtf_ratings, use_htf_mask  # ratings are heavy

    return compute_mtf_ratings(
        MtfConfig.from_profile(profile), ts, open_, high, low, close, volume,
        use_htf_mask(profile, symbols), states=states,
    )


def signals_from_candles(
    profile: Profile,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    symbols: Sequence[str] | None = None,
    states: np.ndarray | None = None,
) -> tuple[np.ndarray, Signals, np.ndarray]:
    """Aligned base candles -> ``(mtf ratings, Signals, final MTF states)`` for a profile.

    ``ts``: bar open times (int64 ms); prices ``(n_bars, n_assets)`` with assets in
    ``symbols`` order (default ``profile.assets``), NaN = missing bar. This is the batch
    path the backtest and the look-ahead probe use; the daemon runs the same kernels one
    slice at a time (:func:`tandem.core.mtf.mtf_slice` then :func:`signals_slice`).
    """
    ratings, states = ratings_from_candles(profile, ts, open_, high, low, close, volume, symbols,
                                           states)
    ts_close = np.asarray(ts, dtype=np.int64) + timeframe_to_ms(profile.base_timeframe)
    return ratings, compute_signals(profile, ratings, ts_close, symbols), states

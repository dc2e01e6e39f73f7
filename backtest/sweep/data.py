"""The shared data of a sweep: candles, one rating pass, segments and a fingerprint.

Ratings depend only on the candles and the timeframes, never on a swept field, so they are
computed once over the whole loaded window (warm-up included) and every trial and fold reads
them. The window is loaded exactly as ``run`` loads it (:func:`tandem.backtest.runner.load_window`
with the same ``--from``/``--to`` and warm-up), so a trial over the full range gives the
fills ``run`` gives for that profile.

A *segment* is a bar range ``[lo, hi)`` on which an engine starts flat with the initial
cash: the full range, or a walk-forward fold's train (in-sample) or test (out-of-sample)
range.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tandem.backtest.runner import ConfigError, DataError, load_window
from tandem.core.manifest import RATING_COLUMNS

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS


@dataclass(frozen=True)
class Segment:
    fold: int
    kind: str  # "is" or "oos"
    lo: int  # first bar (row in SweepData arrays)
    hi: int  # exclusive
    start_ms: int  # open time of the first bar
    end_ms: int  # exclusive end (open time after the last bar)


@dataclass
class SweepData:
    """Everything a trial needs; shipped once to every Dask worker."""

    symbols: list[str]
    ts_open: np.ndarray  # (n_bars,) int64
    ts_close: np.ndarray
    open: np.ndarray  # (n_bars, n_assets)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    ratings: np.ndarray  # (n_cols, n_bars, n_assets, n_tf)
    rating_cols: dict[str, int]  # strategy -> first-axis index of ``ratings``
    mtf_mask: np.ndarray
    segments: list[Segment]
    base_ms: int
    fingerprint: str
    sample_idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    warmup_bars: int = 0
    warmup_available: int = 0
    #: closes of the loaded bars before ``ts_open[0]`` (the warm-up the arrays above drop):
    #: a portfolio weighting's return window is fed from the first loaded bar, as in ``run``
    warm_close: np.ndarray | None = None
    #: :func:`code_version` of the process that built this (the sweep's client)
    code: str = ""
    #: open time of the first loaded bar: every rating was computed from there on
    load_start_ms: int = 0

    def warmup_bars_for(self, start_ms: int) -> int:
        """``run --warmup-bars`` that loads from this sweep's first bar for a run starting
        at ``start_ms``: the ratings, hence the trades, of a fold are ``run``'s then."""
        return int((start_ms - self.load_start_ms) // self.base_ms)

    @property
    def n_folds(self) -> int:
        return len({s.fold for s in self.segments})

    def seg_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(lo, hi, periods_per_year, sample?)`` per segment, for the kernel."""
        lo = np.array([s.lo for s in self.segments], dtype=np.int64)
        hi = np.array([s.hi for s in self.segments], dtype=np.int64)
        ppy = np.array([_ppy(self.ts_close[s.lo:s.hi]) for s in self.segments])
        sample = np.array([self.sampled(s) for s in self.segments], dtype=np.bool_)
        return lo, hi, ppy, sample

    def sampled(self, seg: Segment) -> bool:
        """Segments whose daily equity feeds the overfitting statistics: the full range
        without walk-forward, else the out-of-sample folds (disjoint, end to end)."""
        return seg.kind == "oos" or self.n_folds == 1 and not any(
            s.kind == "oos" for s in self.segments)


def _ppy(ts: np.ndarray) -> float:
    """tandem.backtest.stats.infer_periods_per_year on the segment's close times."""
    if len(ts) < 2:
        return float("nan")
    step = float(np.median(np.diff(ts)))
    return YEAR_MS / step if step > 0 else float("nan")


def parse_duration(text: str) -> int:
    """'180d', '12h', '4w', '90m' → milliseconds (> 0); ValueError otherwise."""
    units = {"m": 60_000, "h": 3_600_000, "d": DAY_MS, "w": 7 * DAY_MS}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit() or int(t[:-1]) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 180d, 12h, 4w)")
    return int(t[:-1]) * units[t[-1]]


def fold_ranges(end_ms: int, data_start_ms: int, folds: int, train_ms: int, test_ms: int,
                anchored: bool) -> list[tuple[int, int, int]]:
    """``[(train_start, test_start, test_end)]`` laid end to end, ending at ``end_ms``."""
    first_test = end_ms - folds * test_ms
    first_train = first_test - train_ms
    if first_train < data_start_ms:
        raise DataError(
            f"{folds} folds of {_dur(test_ms)} test after {_dur(train_ms)} train need "
            f"data from {_iso(first_train)} (after warm-up); the tradable data starts "
            f"{_iso(data_start_ms)}: use fewer folds, a shorter --train/--test, or --to")
    out = []
    for k in range(folds):
        ts0 = first_test + k * test_ms
        out.append((first_train if anchored else ts0 - train_ms, ts0, ts0 + test_ms))
    return out


def _dur(ms: int) -> str:
    return f"{ms / DAY_MS:g}d" if ms % 3_600_000 == 0 and ms >= DAY_MS else f"{ms / 3_600_000:g}h"


def _iso(ms: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


@functools.cache
def code_version() -> str:
    """Hash of the code a trial's result depends on: the core (kernels, trials, stats: the
    hash that keys numba's cache) and this sweep package. Part of the resume key, so that
    ``--resume`` after an upgrade reruns the trials instead of reusing rows an older release
    computed; and checked by every worker, which must run the client's code."""
    from tandem.core.numba_cache import core_source_hash

    digest = hashlib.sha256(core_source_hash().encode())
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_sweep_data(profile: Any, source: Any, start: Any = None, end: Any = None,
                    symbols: list[str] | None = None, strategies: list[str] | None = None,
                    walk_forward: tuple[int, int, int, bool] | None = None) -> SweepData:
    """Load candles as ``run`` does, compute the ratings once, lay out the segments.

    ``strategies``: the rating columns trials may use (default: the profile's).
    ``walk_forward``: ``(folds, train_ms, test_ms, anchored)`` or None (one segment).
    """
    from tandem.core.engine.inputs import check_bars
    from tandem.core.signals import SignalParams, ratings_from_candles

    w = load_window(profile, source, start, end, symbols)
    a = w.candles
    base_ms = w.base_ms
    n_all = len(a.ts)
    if walk_forward is None:
        segs = [(0, "is", w.k0, n_all)]
    else:
        folds, train_ms, test_ms, anchored = walk_forward
        # Folds end at --to, or at the data's end when that comes first: a --to past the
        # data laid the last test fold(s) partly over bars that do not exist.
        data_end = int(a.ts[-1]) + base_ms
        end_ms = data_end if w.end_ms is None else min(w.end_ms, data_end)
        segs = []
        for k, (tr0, te0, te1) in enumerate(fold_ranges(end_ms, w.first_bar_ms, folds, train_ms,
                                                        test_ms, anchored)):
            idx = np.searchsorted(a.ts, [tr0, te0, te1], side="left")
            for kind, lo, hi in (("is", idx[0], idx[1]), ("oos", idx[1], idx[2])):
                if hi - lo < 2:
                    raise DataError(f"fold {k} {kind} range has {hi - lo} bars; the data has "
                                    "gaps there or the fold is too short")
                segs.append((k, kind, int(lo), int(hi)))
    first = min(s[2] for s in segs)
    try:
        check_bars(a.open[first:], a.high[first:], a.low[first:], a.close[first:])
    except ValueError as exc:
        raise DataError(f"bad candles: {exc}") from None
    ratings4, _ = ratings_from_candles(profile, a.ts, a.open, a.high, a.low, a.close, a.volume,
                                       w.symbols)
    strategies = sorted(set(strategies or [profile.strategy]))
    cols = {s: k for k, s in enumerate(strategies)}
    # Trials never read the warm-up bars: keep only the bars from the first segment on.
    ratings = np.ascontiguousarray(np.stack(
        [ratings4[first:, :, :, RATING_COLUMNS[s]] for s in strategies]))
    ts_open = np.ascontiguousarray(a.ts[first:], dtype=np.int64)
    ts_close = ts_open + base_ms
    segments = []
    for fold, kind, lo, hi in segs:
        end_excl = int(a.ts[hi - 1]) + base_ms
        segments.append(Segment(fold, kind, lo - first, hi - first, int(a.ts[lo]), end_excl))
    # Equity is sampled at the last bar of each UTC day (and each segment's last bar).
    day_end = np.flatnonzero(ts_close % DAY_MS == 0)
    seg_last = np.array([s.hi - 1 for s in segments], dtype=np.int64)
    sample_idx = np.unique(np.concatenate([day_end, seg_last])).astype(np.int64)
    h = hashlib.sha256()
    for arr in (a.ts, a.open, a.high, a.low, a.close, a.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(repr((w.symbols, [(s.fold, s.kind, s.start_ms, s.end_ms) for s in segments],
                   w.k0, first)).encode())
    h.update(profile.canonical_json().encode())
    sp = SignalParams.from_profile(profile, w.symbols)
    c = np.ascontiguousarray

    if len(segments) == 0:
        raise ConfigError("no segment to evaluate")
    return SweepData(
        symbols=list(w.symbols), ts_open=ts_open, ts_close=ts_close,
        open=c(a.open[first:]), high=c(a.high[first:]), low=c(a.low[first:]),
        close=c(a.close[first:]), ratings=ratings, rating_cols=cols, mtf_mask=sp.mtf_mask,
        segments=segments, base_ms=base_ms, fingerprint=h.hexdigest(), sample_idx=sample_idx,
        warmup_bars=w.warmup_bars, warmup_available=w.warmup_available, code=code_version(),
        warm_close=c(a.close[:first]), load_start_ms=int(a.ts[0]),
    )

"""Look-ahead probe: signals computed on bars <= t must equal the full run's up to t.

A strategy that peeks at the future (an HTF bar used before it closed, a centred window,
a batch computation that normalises over the whole history...) produces different values
at bar t depending on whether later bars exist. The probe truncates the history at many
cut points, recomputes everything from scratch, and compares every output (MTF ratings,
scores, signals, target weights) on the common bars, exactly (NaN == NaN).

Reusable: the backtest exposes it as a command; tests run it on real data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tandem.core.timeframes import timeframe_to_ms

if TYPE_CHECKING:
    from tandem.core.manifest import Profile


@dataclass(frozen=True)
class CutResult:
    """Differences found for one cut (index of the last bar kept)."""

    cut: int
    ts: int
    mismatches: dict[str, int]  # output name -> number of differing cells
    first: tuple[str, int, int] | None  # (output, bar index, asset index) of the first one

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values())


@dataclass(frozen=True)
class LookaheadReport:
    """Outcome of :func:`lookahead_probe`."""

    profile: str
    n_bars: int
    n_assets: int
    cuts: list[CutResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no cut changed any output: no look-ahead detected."""
        return all(c.ok for c in self.cuts)

    @property
    def n_signals_checked(self) -> int:
        """Total (bar, asset) signal cells compared across all cuts."""
        return sum((c.cut + 1) * self.n_assets for c in self.cuts)

    def summary(self) -> str:
        """One human line per failing cut, or a one-line pass."""
        if self.ok:
            return (
                f"look-ahead probe {self.profile}: OK — {len(self.cuts)} cuts, "
                f"{self.n_signals_checked} signal cells identical to the full run"
            )
        lines = [f"look-ahead probe {self.profile}: FAILED"]
        for c in self.cuts:
            if not c.ok:
                lines.append(f"  cut {c.cut} (ts {c.ts}): {c.mismatches}, first at {c.first}")
        return "\n".join(lines)

    def to_records(self) -> list[dict]:
        """Rows for a DataFrame/JSON report."""
        return [{"cut": c.cut, "ts": c.ts, "ok": c.ok, **c.mismatches} for c in self.cuts]


def default_cuts(ts: np.ndarray, base_tf: str, htfs: Sequence[str], n_cuts: int = 20, seed: int = 0) -> np.ndarray:
    """Cut points: random bars plus the bars around the longest HTF's closes (the spot where
    using a forming HTF bar would show up). Bars are indices of ``ts``."""
    n = ts.shape[0]
    rng = np.random.default_rng(seed)
    cuts = set(rng.integers(0, n, size=max(n_cuts // 2, 1)).tolist())
    if htfs:
        step = timeframe_to_ms(htfs[-1])
        close = ts + timeframe_to_ms(base_tf)
        ends = np.flatnonzero(close % step == 0)
        if ends.size:
            for e in rng.choice(ends, size=min(max(n_cuts // 6, 1), ends.size), replace=False):
                cuts.update(int(x) for x in (e - 1, e, e + 1) if 0 <= x < n)
    cuts.add(n - 1)
    return np.array(sorted(cuts), dtype=np.int64)


def _compare(name: str, a: np.ndarray, b: np.ndarray, acc: dict, first: list) -> None:
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else (a == b)
    bad = ~same
    acc[name] = int(bad.sum())
    if acc[name] and not first:
        idx = np.argwhere(bad)[0]
        first.append((name, int(idx[0]), int(idx[1]) if idx.shape[0] > 1 else 0))


def lookahead_probe(
    profile: Profile,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    cuts: Sequence[int] | None = None,
    *,
    symbols: Sequence[str] | None = None,
    n_cuts: int = 20,
    seed: int = 0,
    runner: Callable | None = None,
) -> LookaheadReport:
    """Run the profile on the full history and on every prefix ``[0, cut]``; compare.

    Candles are aligned arrays (``ts`` bar open times; prices ``(n_bars, n_assets)``,
    assets in ``symbols`` order, default ``profile.assets``). ``cuts``: indices of the
    last bar kept (default :func:`default_cuts`). ``runner``: the pipeline under test,
    called like :func:`tandem.core.signals.signals_from_candles` (default: that function).
    """
    if runner is None:
        from tandem.core.signals import signals_from_candles as runner

    ts = np.asarray(ts, dtype=np.int64)
    prices = [np.asarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    full_r, full_s, _ = runner(profile, ts, *prices, symbols=symbols)
    if cuts is None:
        cuts = default_cuts(ts, profile.base_timeframe, profile.htfs, n_cuts=n_cuts, seed=seed)
    results = []
    for cut in cuts:
        cut = int(cut)
        if not 0 <= cut < ts.shape[0]:
            raise ValueError(f"cut {cut} outside [0, {ts.shape[0]})")
        k = cut + 1
        r, s, _ = runner(profile, ts[:k], *(p[:k] for p in prices), symbols=symbols)
        acc: dict[str, int] = {}
        first: list = []
        _compare("signal", s.signal, full_s.signal[:k], acc, first)
        _compare("score", s.score, full_s.score[:k], acc, first)
        _compare("target", s.target, full_s.target[:k], acc, first)
        _compare("ratings", r, full_r[:k], acc, first)
        results.append(CutResult(cut=cut, ts=int(ts[cut]), mismatches=acc, first=first[0] if first else None))
    n_assets = prices[3].shape[1]
    return LookaheadReport(profile=profile.name, n_bars=int(ts.shape[0]), n_assets=n_assets, cuts=results)


def warmup_sensitivity(
    profile: Profile,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    start: int,
    lengths: Sequence[int],
    *,
    symbols: Sequence[str] | None = None,
) -> list[dict]:
    """How much the outputs from bar ``start`` on move with the warm-up length
    (freqtrade's "recursive analysis"): for each ``L`` in ``lengths`` the pipeline is
    started at ``start - L`` and compared with the longest warm-up in ``lengths``.

    Returns one record per length: ``warmup_bars``, per timeframe ``max_diff_<tf>`` (max
    |Δ| of the profile's rating) and ``nan_<tf>`` (cells still NaN where the baseline has a
    value), ``signal_diff`` (fraction of (bar, asset) signals that differ), and
    ``target_diff`` / ``max_target_diff`` (fraction of (bar, asset) portfolio target
    weights that differ, NaN = NaN, and the largest |Δ weight| where both have one): what a portfolio-mode run
    trades, which moves more than the signals (the weights are normalised over every
    asset's score).
    """
    from tandem.core.signals import signals_from_candles

    lengths = sorted({int(x) for x in lengths})
    if not lengths or lengths[0] < 0 or lengths[-1] > start:
        raise ValueError(f"warm-up lengths must lie in [0, start={start}], got {lengths}")
    prices = [np.asarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    ts = np.asarray(ts, dtype=np.int64)
    col = profile.rating_column

    def run(length: int):
        a = start - length
        r, s, _ = signals_from_candles(profile, ts[a:], *(p[a:] for p in prices), symbols=symbols)
        return r[length:, :, :, col], s.signal[length:], s.target[length:]

    base_r, base_s, base_t = run(lengths[-1])
    records = []
    for length in lengths:
        r, s, t = run(length)
        rec: dict = {"warmup_bars": length}
        for k, tf in enumerate(profile.timeframes):
            a, b = r[:, :, k], base_r[:, :, k]
            both = ~np.isnan(a) & ~np.isnan(b)
            rec[f"max_diff_{tf}"] = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
            rec[f"nan_{tf}"] = int((np.isnan(a) & ~np.isnan(b)).sum())
        rec["signal_diff"] = float((s != base_s).mean()) if s.size else 0.0
        differ = ~((t == base_t) | (np.isnan(t) & np.isnan(base_t)))
        rec["target_diff"] = float(differ.mean()) if t.size else 0.0
        valued = differ & ~np.isnan(t) & ~np.isnan(base_t)  # a weight vs none: counted above
        rec["max_target_diff"] = float(np.abs(t - base_t)[valued].max()) if valued.any() else 0.0
        records.append(rec)
    return records

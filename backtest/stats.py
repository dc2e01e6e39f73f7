"""Performance statistics of a backtest, from its equity series, trades table and fills.

Definitions (stated so they can be checked independently; they follow vectorbt's returns
accessor, which the tests use as the reference):

* returns: simple bar returns of equity; the first bar's return is measured against
  ``initial_cash`` when given (the equity before the first bar), else it is dropped;
* ``periods_per_year``: 365 days / the bar interval (crypto trades every day), inferred from
  the median spacing of the equity index unless given;
* ``total_return`` = final / initial − 1;  ``cagr`` = (1 + total_return) ** (ppy / n_returns) − 1;
* ``sharpe`` = mean(r) / std(r, ddof=1) · √ppy (risk-free 0);
* ``sortino`` = mean(r) / √mean(min(r, 0)²) · √ppy (target 0, downside over *all* bars);
* ``max_drawdown`` = min(equity / running max − 1) ≤ 0, with the initial cash as first peak;
* ``n_trades`` and ``trades_per_asset`` count *closed* trades; a trade still open at the end
  (NaN pnl) is counted in ``n_open_trades`` only;
* ``win_rate`` = share of closed trades with pnl > 0; ``profit_factor`` = gross profit /
  gross loss (``None`` in JSON when there is no losing trade);
* ``exposure`` = share of bars on which at least one position is open (from ``position_after``
  in the fills); ``fees`` = sum of fill fees;
* ``avg_holdings`` = mean over bars of the number of assets held at the bar's close (same
  rule as ``exposure``);
* ``n_entries_skipped`` / ``entries_skipped`` (discrete mode; only when the engine's counts
  are passed): entry signals the engine did not act on, by cause (``unfunded``: spend above
  free cash; ``below_min_trade_value``), counted per bar and asset while flat, so a signal
  held for 5 bars that cannot be funded counts 5 (``tandem.core.engine.layout``,
  ``S_SKIP_*``). Without them fewer trades than signals had no stated reason;
* ``turnover`` = Σ over fills of ``|qty · price| / equity`` at the fill's bar close (fills
  are stamped with the bar close, the equity index): how many times the book was traded,
  buys and sells both counted (1.0 = one full book's worth); 0 without fills.

Undefined values (no returns, zero variance, no trades) are NaN in :func:`compute_stats`
and ``null`` in ``stats.json`` — never a made-up 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tandem.core.arrow_numpy import column_values

if TYPE_CHECKING:  # the statistics need NumPy only; pandas objects are accepted too
    import pandas as pd
    import pyarrow as pa

YEAR_MS = 365 * 86_400_000


class EquityCurve(NamedTuple):
    """Equity at each bar close without pandas: ``ts`` (int64 ms) and ``values``."""

    ts: np.ndarray
    values: np.ndarray


def _index_ms(index: pd.Index) -> np.ndarray:
    """Equity index as int64 epoch ms, whether it holds ms integers or datetimes."""
    import pandas as pd  # a pandas index: pandas is loaded already

    if isinstance(index, pd.DatetimeIndex):
        idx = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        return idx.as_unit("ms").asi8.astype(np.int64)
    return np.asarray(index, dtype=np.int64)


def equity_curve(equity: pd.Series | EquityCurve) -> EquityCurve:
    """``equity`` as an :class:`EquityCurve` (int64 ms, float64 values)."""
    if isinstance(equity, EquityCurve):
        return EquityCurve(np.asarray(equity.ts, dtype=np.int64),
                           np.asarray(equity.values, dtype=np.float64))
    return EquityCurve(_index_ms(equity.index), np.asarray(equity, dtype=np.float64))


def _periods_per_year(ms: np.ndarray) -> float:
    if len(ms) < 2:
        return float("nan")
    step = float(np.median(np.diff(ms)))
    return YEAR_MS / step if step > 0 else float("nan")


def infer_periods_per_year(equity: pd.Series | EquityCurve) -> float:
    """Bars per year from the median spacing of the index (crypto: 365 days a year)."""
    return _periods_per_year(equity_curve(equity).ts)


def bar_returns(equity: pd.Series | np.ndarray, initial_cash: float | None = None) -> np.ndarray:
    """Simple returns per bar; the first is against ``initial_cash`` if given, else dropped."""
    values = np.asarray(equity, dtype=np.float64)
    if initial_cash is not None:
        prev = np.concatenate([[float(initial_cash)], values[:-1]])
        return values / prev - 1.0
    return values[1:] / values[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio (risk-free 0, sample std with ddof=1)."""
    if len(returns) < 2:
        return float("nan")
    std = float(np.std(returns, ddof=1))
    if std == 0.0 or not np.isfinite(std):
        return float("nan")
    return float(np.mean(returns)) / std * math.sqrt(periods_per_year)


def sortino_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sortino ratio, target 0; downside deviation over all bars (vectorbt's rule)."""
    if len(returns) == 0:
        return float("nan")
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0.0:
        return float("nan")
    return float(np.mean(returns)) / downside * math.sqrt(periods_per_year)


def drawdown(values: np.ndarray, initial_cash: float | None = None) -> np.ndarray:
    """:func:`drawdown_series` of equity values, as an array."""
    peak = np.maximum.accumulate(values)
    if initial_cash is not None:
        # Losing money on the very first bar is a drawdown from the starting cash.
        peak = np.maximum(peak, float(initial_cash))
    return values / peak - 1.0


def drawdown_series(equity: pd.Series, initial_cash: float | None = None) -> pd.Series:
    """Drawdown (≤ 0) at every bar: equity over its running peak, minus 1."""
    import pandas as pd

    values = drawdown(np.asarray(equity, dtype=np.float64), initial_cash)
    return pd.Series(values, index=equity.index, name="drawdown")


def _cagr(total_return: float, periods_per_year: float, n_returns: int) -> float:
    """Compound annual growth; +inf when a short sample would overflow, −1 when wiped out."""
    if n_returns == 0 or not np.isfinite(periods_per_year) or not np.isfinite(total_return):
        return float("nan")
    growth = 1.0 + total_return
    if growth <= 0.0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.power(growth, periods_per_year / n_returns)) - 1.0


def _trade_pnl(trades: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
    """PnL column of a trades table (net of fees), tolerant of its exact name."""
    for col in ("pnl", "net_pnl", "pnl_net"):
        if col in trades:  # a frame's columns, a mapping's keys
            return np.asarray(trades[col], dtype=np.float64)
    raise KeyError(f"trades table has no pnl column (columns: {list(trades)})")


def _codes_first_seen(values: np.ndarray) -> np.ndarray:
    """Integer code per value in first-seen order; -1 for a missing (non-string) value."""
    codes: dict[str, int] = {}
    return np.fromiter(
        (codes.setdefault(v, len(codes)) if isinstance(v, str) else -1 for v in values.tolist()),
        dtype=np.int64, count=len(values),
    )


def holdings_count(fills: pd.DataFrame | pa.Table | None, bar_ts: np.ndarray) -> np.ndarray:
    """Number of assets with an open position at the close of each bar ``bar_ts``.

    A position opened by a fill at ``ts`` counts from that bar on (the fill happens at that
    bar's close, so the bar closes holding it); a position closed at ``ts`` does not count
    on that bar.
    """
    count = np.zeros(len(bar_ts), dtype=np.int64)
    if fills is None or len(fills) == 0 or len(bar_ts) == 0:
        return count
    codes = _codes_first_seen(column_values(fills, "symbol"))
    all_ts = column_values(fills, "ts").astype(np.int64, copy=False)
    all_pos = column_values(fills, "position_after").astype(np.float64, copy=False)
    # Rows by symbol, then ts (a stable sort: equal ts keep journal order) — NumPy rather
    # than a pandas groupby, which cost more than the rest of the statistics together.
    order = np.lexsort((all_ts, codes))
    codes, all_ts, all_pos = codes[order], all_ts[order], all_pos[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(codes)], strict=True):
        if codes[lo] < 0:
            continue  # rows without a symbol hold nothing
        f_ts, pos = all_ts[lo:hi], all_pos[lo:hi]
        # Index of the last fill at or before each bar (-1 = before the first fill).
        k = np.searchsorted(f_ts, bar_ts, side="right") - 1
        held = np.where(k >= 0, pos[np.clip(k, 0, None)], 0.0)
        count += held != 0.0
    return count


def fill_turnover(fills: pd.DataFrame | pa.Table, equity: pd.Series | EquityCurve) -> np.ndarray:
    """Each fill's ``|qty · price|`` over the equity at its bar's close (the last equity
    value at or before the fill's ts; NaN before the first)."""
    eq_ts, eq_values = equity_curve(equity)
    ts = column_values(fills, "ts").astype(np.int64, copy=False)
    k = np.searchsorted(eq_ts, ts, side="right") - 1
    eq = np.where(k >= 0, eq_values[np.clip(k, 0, None)], np.nan)
    notional = np.abs(column_values(fills, "qty").astype(np.float64, copy=False)
                      * column_values(fills, "price").astype(np.float64, copy=False))
    return notional / eq


def _closed_per_asset(symbols: np.ndarray) -> dict[str, int]:
    """Closed trades per symbol, symbols sorted (a groupby's order; missing ones dropped)."""
    counts: dict[str, int] = {}
    for s in symbols.tolist():
        if isinstance(s, str):
            counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def _n_rows(table: pd.DataFrame | Mapping[str, np.ndarray]) -> int:
    if isinstance(table, Mapping):
        return len(next(iter(table.values()))) if table else 0
    return len(table)


def _nan_min(values: np.ndarray) -> float:
    """The smallest non-NaN value; NaN when there is none (pandas' ``Series.min``)."""
    valid = values[~np.isnan(values)]
    return float(valid.min()) if len(valid) else float("nan")


def _nan_sum(values: np.ndarray) -> float:
    """Sum with NaN as 0 (pandas' ``Series.sum``, same pairwise summation)."""
    return float(np.where(np.isnan(values), 0.0, values).sum())


def compute_stats(
    equity: pd.Series | EquityCurve,
    trades: pd.DataFrame | Mapping[str, np.ndarray] | None = None,
    fills: pd.DataFrame | pa.Table | None = None,
    *,
    initial_cash: float | None = None,
    periods_per_year: float | None = None,
    symbols: list[str] | None = None,
    entries_skipped: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """All headline statistics of a run as a flat dict (see the module docstring).

    ``equity``: equity at each bar close, a Series indexed by the bar's ts (ms) or
    datetimes, or an :class:`EquityCurve`. ``trades``: trades with ``symbol`` and ``pnl``
    columns (a frame or a mapping of columns). ``fills``: the journal (frame or Arrow
    table). ``symbols``: every asset of the run, so assets that never traded show 0 trades.
    ``entries_skipped``: the engine's skip counters by cause (``Engine.entries_skipped``);
    given, ``n_entries_skipped`` and ``entries_skipped`` follow ``n_open_trades``.
    """
    ms, values = equity_curve(equity)
    ppy = float(periods_per_year) if periods_per_year else _periods_per_year(ms)
    rets = bar_returns(values, initial_cash)
    rets = rets[np.isfinite(rets)]
    first = float(initial_cash) if initial_cash is not None else (
        float(values[0]) if len(values) else float("nan")
    )
    last = float(values[-1]) if len(values) else float("nan")
    total_return = last / first - 1.0 if first else float("nan")
    n = len(rets)
    cagr = _cagr(total_return, ppy, n)
    dd = drawdown(values, initial_cash)

    n_open = 0
    pnl = np.empty(0)
    per_asset: dict[str, int] = {}
    if trades is not None and _n_rows(trades):
        pnl_all = _trade_pnl(trades)
        # An unfinished trade (NaN pnl, core.journal.trades_table) is not a win or a loss.
        closed = np.isfinite(pnl_all)
        n_open = int((~closed).sum())
        pnl = pnl_all[closed]
        if len(pnl):
            per_asset = _closed_per_asset(np.asarray(trades["symbol"])[closed])
    if len(pnl):
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        win_rate = float(len(wins) / len(pnl))
        profit_factor = float(wins.sum() / -losses.sum()) if len(losses) else float("inf")
        n_trades = int(len(pnl))
    else:
        win_rate = profit_factor = float("nan")
        n_trades = 0
    trades_per_asset = {s: int(per_asset.get(s, 0)) for s in (symbols or sorted(per_asset))}
    for s, k in per_asset.items():
        trades_per_asset.setdefault(s, int(k))

    has_fills = fills is not None and len(fills) > 0
    fees = (_nan_sum(column_values(fills, "fee").astype(np.float64, copy=False))
            if has_fills else 0.0)
    held = holdings_count(fills, ms)
    skipped: dict[str, Any] = {}
    if entries_skipped is not None:
        causes = {str(k): int(v) for k, v in entries_skipped.items()}
        skipped = {"n_entries_skipped": sum(causes.values()), "entries_skipped": causes}
    return {
        "start_ts": int(ms[0]) if len(ms) else None,
        "end_ts": int(ms[-1]) if len(ms) else None,
        "n_bars": int(len(values)),
        "periods_per_year": ppy,
        "initial_equity": first,
        "final_equity": last,
        "total_return": total_return,
        "cagr": cagr,
        "sharpe": sharpe_ratio(rets, ppy),
        "sortino": sortino_ratio(rets, ppy),
        "volatility": float(np.std(rets, ddof=1) * math.sqrt(ppy)) if n > 1 else float("nan"),
        "max_drawdown": _nan_min(dd) if len(dd) else float("nan"),
        "n_trades": n_trades,
        "n_open_trades": n_open,
        **skipped,
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "exposure": float((held > 0).mean()) if len(ms) else float("nan"),
        "fees": fees,
        "n_fills": int(len(fills)) if fills is not None else 0,
        "avg_holdings": float(held.mean()) if len(ms) else float("nan"),
        "turnover": (float(fill_turnover(fills, EquityCurve(ms, values)).sum())
                     if has_fills else 0.0),
        "trades_per_asset": trades_per_asset,
    }


def _json_safe(value: Any) -> Any:
    """NaN/inf → None (strict JSON has neither); numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


def write_stats_json(stats: dict[str, Any], path: str | Path, **extra: Any) -> Path:
    """Write ``stats`` (plus ``extra`` keys such as profile and run id) as strict JSON."""
    path = Path(path)
    payload = _json_safe({**extra, **stats})
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path

"""Equity and realized-PnL drift over time between the paper and backtest journals.

Equity is rebuilt from each journal alone — the last ``cash_after`` plus every position
marked to market — on one common time grid (the union of both sides' fill times, plus the
candles' close times when candles are given). Both sides are marked with the *same*
prices, so the drift measures what the fills did, not what the mark did: the close of the
last closed bar from the candles when available, else the last backtest fill price of the
symbol (else the paper's). Realized PnL comes from :func:`tandem.core.journal.trades_table`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tandem.core.journal import trades_table

DRIFT_COLUMNS = [
    "profile", "ts", "equity_paper", "equity_backtest", "equity_drift",
    "pnl_paper", "pnl_backtest", "pnl_drift",
]


def infer_initial_cash(fills: pd.DataFrame) -> float | None:
    """Cash before the first fill, undone from that fill's ``cash_after``."""
    if not len(fills):
        return None
    f = fills.iloc[0]
    notional = float(f["qty"]) * float(f["price"])
    signed = notional if f["side"] == "buy" else -notional
    return float(f["cash_after"]) + signed + float(f["fee"])


def _last_per_ts(values: pd.Series, ts: pd.Series, grid: np.ndarray) -> np.ndarray:
    """Value of the last row at or before each grid time (NaN before the first row)."""
    s = pd.Series(values.to_numpy(np.float64), index=ts.to_numpy(np.int64))
    s = s[~s.index.duplicated(keep="last")]
    return s.reindex(grid, method="ffill").to_numpy(np.float64)


def _marks(
    symbols: list[str],
    grid: np.ndarray,
    candles: pd.DataFrame | None,
    price_fills: list[pd.DataFrame],
) -> np.ndarray:
    """``len(grid) x len(symbols)`` mark prices (see the module doc)."""
    out = np.full((len(grid), len(symbols)), np.nan)
    for j, sym in enumerate(symbols):
        if candles is not None and len(candles):
            c = candles[candles["symbol"] == sym]
            if len(c):
                out[:, j] = _last_per_ts(c["close"], c["close_ts"], grid)
        for fills in price_fills:  # fallback where no candle mark exists yet
            need = np.isnan(out[:, j])
            if not need.any():
                break
            f = fills[fills["symbol"] == sym]
            if len(f):
                out[need, j] = _last_per_ts(f["price"], f["ts"], grid)[need]
    return out


def equity_on_grid(
    fills: pd.DataFrame, grid: np.ndarray, symbols: list[str], marks: np.ndarray, initial_cash: float
) -> np.ndarray:
    """Equity of one journal at each grid time (journal order decides a bar's last fill)."""
    if not len(fills):
        return np.full(len(grid), float(initial_cash))
    cash = _last_per_ts(fills["cash_after"], fills["ts"], grid)
    cash = np.where(np.isnan(cash), float(initial_cash), cash)
    held = np.zeros(len(grid))
    for j, sym in enumerate(symbols):
        f = fills[fills["symbol"] == sym]
        if not len(f):
            continue
        pos = np.nan_to_num(_last_per_ts(f["position_after"], f["ts"], grid), nan=0.0)
        held += np.where(pos != 0.0, pos * marks[:, j], 0.0)
    return cash + held


def realized_pnl_on_grid(fills: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Cumulative realized PnL (net of fees) of closed trades at each grid time."""
    if not len(fills):
        return np.zeros(len(grid))
    trades = trades_table(fills)
    done = trades.dropna(subset=["exit_ts"])
    if done.empty:
        return np.zeros(len(grid))
    per = done.groupby(done["exit_ts"].astype("int64"))["pnl"].sum().sort_index().cumsum()
    return np.nan_to_num(per.reindex(grid, method="ffill").to_numpy(np.float64), nan=0.0)


def drift_frame(
    paper: pd.DataFrame,
    backtest: pd.DataFrame,
    candles: pd.DataFrame | None = None,
    initial_cash: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Per profile and grid time: both equities, both realized PnLs, and paper − backtest.

    ``candles`` (optional): long frame ``symbol, close_ts, close`` used as marks.
    ``initial_cash``: per profile; inferred from each journal's first fill when absent.
    """
    rows = []
    for profile in sorted(set(paper["profile"]) | set(backtest["profile"])):
        p = paper[paper["profile"] == profile]
        b = backtest[backtest["profile"] == profile]
        ts = np.union1d(p["ts"].to_numpy(np.int64), b["ts"].to_numpy(np.int64))
        if candles is not None and len(candles) and len(ts):
            ct = candles["close_ts"].to_numpy(np.int64)
            ts = np.union1d(ts, ct[(ct >= ts[0]) & (ct <= ts[-1])])
        if not len(ts):
            continue
        symbols = sorted(set(p["symbol"]) | set(b["symbol"]))
        marks = _marks(symbols, ts, candles, [b, p])
        known = (initial_cash or {}).get(profile)
        cash_p = known if known is not None else infer_initial_cash(p)
        cash_b = known if known is not None else infer_initial_cash(b)
        cash_p = cash_b if cash_p is None else cash_p
        cash_b = cash_p if cash_b is None else cash_b
        ep = equity_on_grid(p, ts, symbols, marks, cash_p)
        eb = equity_on_grid(b, ts, symbols, marks, cash_b)
        pp, pb = realized_pnl_on_grid(p, ts), realized_pnl_on_grid(b, ts)
        rows.append(
            pd.DataFrame(
                {"profile": profile, "ts": ts, "equity_paper": ep, "equity_backtest": eb,
                 "equity_drift": ep - eb, "pnl_paper": pp, "pnl_backtest": pb, "pnl_drift": pp - pb}
            )
        )
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "profile" else "float64") for c in DRIFT_COLUMNS})
    return pd.concat(rows, ignore_index=True)[DRIFT_COLUMNS]

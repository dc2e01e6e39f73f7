"""Backtest statistics, cross-checked against vectorbt and plain pandas (not our own numbers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.backtest.stats import compute_stats, drawdown_series, write_stats_json

INIT = 10_000.0


@pytest.fixture(scope="module")
def equity() -> pd.Series:
    """An hourly equity curve with flat stretches (no position) and a few sharp moves."""
    rng = np.random.default_rng(3)
    n = 1500
    rets = rng.standard_t(4, n) * 0.006
    rets[rng.random(n) < 0.35] = 0.0  # flat: out of the market
    idx = pd.date_range("2024-01-01", periods=n, freq="1h")
    return pd.Series(INIT * np.cumprod(1.0 + rets), index=idx)


def test_return_metrics_match_vectorbt(equity):
    """vectorbt's returns accessor on the same equity is the reference (its numba code,
    not ours); only its cheap returns functions are used, not a whole portfolio sim."""
    pytest.importorskip("vectorbt")  # registers the .vbt accessor
    ref = equity.vbt.returns.from_value(equity, init_value=INIT, freq="1h", year_freq="365d")
    s = compute_stats(equity, initial_cash=INIT)
    assert s["periods_per_year"] == 8760.0
    assert s["total_return"] == pytest.approx(ref.total(), rel=1e-12)
    assert s["cagr"] == pytest.approx(ref.annualized(), rel=1e-9)
    assert s["sharpe"] == pytest.approx(ref.sharpe_ratio(), rel=1e-9)
    assert s["sortino"] == pytest.approx(ref.sortino_ratio(), rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(ref.max_drawdown(), rel=1e-12)
    assert s["volatility"] == pytest.approx(ref.annualized_volatility(), rel=1e-9)


def test_trade_metrics_match_plain_python(equity):
    """Win rate, profit factor, fees, trades per asset and exposure against a naive
    re-computation (Python loops / pandas ffill) on random trades and fills."""
    rng = np.random.default_rng(9)
    syms = ["AAA/USDT", "BBB/USDT", "CCC/USDT"]
    pnl = list(rng.normal(0.5, 10.0, 40))
    tsym = list(rng.choice(syms[:2], 40))
    trades = pd.DataFrame({"symbol": tsym + ["AAA/USDT"], "pnl": pnl + [np.nan]})  # 1 open
    ts = equity.index.astype("datetime64[ms]").astype("int64").to_numpy()
    rows = []
    for sym in syms[:2]:  # alternate open/close fills at random bars
        bars = np.sort(rng.choice(len(ts), 12, replace=False))
        for i, k in enumerate(bars):
            rows.append({"symbol": sym, "ts": int(ts[k]), "fee": float(rng.random()),
                         "qty": 1.5, "price": float(rng.uniform(50, 150)),
                         "position_after": 1.5 if i % 2 == 0 else 0.0})
    fills = pd.DataFrame(rows)
    s = compute_stats(equity, trades, fills, initial_cash=INIT, symbols=syms)

    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    assert s["n_trades"] == 40 and s["n_open_trades"] == 1
    assert s["win_rate"] == pytest.approx(len(wins) / 40, rel=1e-12)
    assert s["profit_factor"] == pytest.approx(sum(wins) / -sum(losses), rel=1e-12)
    assert s["fees"] == pytest.approx(sum(r["fee"] for r in rows), rel=1e-12)
    assert s["trades_per_asset"] == {
        "AAA/USDT": tsym.count("AAA/USDT"), "BBB/USDT": tsym.count("BBB/USDT"), "CCC/USDT": 0}
    held = pd.DataFrame(index=ts)
    for sym, g in fills.groupby("symbol"):
        held[sym] = g.set_index("ts")["position_after"].reindex(ts).ffill().fillna(0.0)
    assert s["exposure"] == pytest.approx(float((held != 0).any(axis=1).mean()), rel=1e-12)
    assert s["avg_holdings"] == pytest.approx(float((held != 0).sum(axis=1).mean()), rel=1e-12)
    eq_at = dict(zip(ts.tolist(), equity.to_numpy().tolist(), strict=True))
    assert s["turnover"] == pytest.approx(
        sum(r["qty"] * r["price"] / eq_at[r["ts"]] for r in rows), rel=1e-12)


def test_turnover_and_holdings_by_hand():
    """Four bars, equity 100 → 110: buy A for 50 at bar 1, buy B for 30 at bar 2, sell A for
    55 at bar 3. Turnover 50/100 + 30/105 + 55/110 = 1.2857…; holdings 0, 1, 2, 1 → 1.0."""
    eq = pd.Series([100.0, 100.0, 105.0, 110.0], index=[1000, 2000, 3000, 4000])
    fills = pd.DataFrame({
        "symbol": ["A", "B", "A"], "ts": [2000, 3000, 4000], "qty": [5.0, 3.0, -5.0],
        "price": [10.0, 10.0, 11.0], "fee": [0.0, 0.0, 0.0], "position_after": [5.0, 3.0, 0.0],
    })
    s = compute_stats(eq, None, fills, initial_cash=100.0)
    assert s["turnover"] == pytest.approx(0.5 + 30 / 105 + 0.5, rel=1e-15)
    assert s["avg_holdings"] == 1.0
    assert s["exposure"] == 0.75
    empty = compute_stats(eq, None, fills.iloc[:0], initial_cash=100.0)
    assert empty["turnover"] == 0.0 and empty["avg_holdings"] == 0.0


def test_stats_on_int_ms_index_equal_datetime_index(equity):
    ms = pd.Series(equity.values, index=equity.index.astype("datetime64[ms]").astype("int64"))
    a = compute_stats(equity, initial_cash=INIT)
    b = compute_stats(ms, initial_cash=INIT)
    a.pop("trades_per_asset"), b.pop("trades_per_asset")
    assert a == pytest.approx(b, nan_ok=True)


def test_entries_skipped_follow_the_open_trades_when_given(tmp_path):
    eq = pd.Series([100.0, 101.0, 99.0], index=[1000, 2000, 3000])
    assert "entries_skipped" not in compute_stats(eq, initial_cash=100.0)
    stats = compute_stats(eq, initial_cash=100.0,
                       entries_skipped={"unfunded": 4, "below_min_trade_value": 1})
    keys = list(stats)
    assert keys[keys.index("n_open_trades") + 1:][:2] == ["n_entries_skipped", "entries_skipped"]
    assert stats["n_entries_skipped"] == 5
    assert stats["entries_skipped"] == {"unfunded": 4, "below_min_trade_value": 1}
    written = json.loads(write_stats_json(stats, tmp_path / "s.json").read_text())
    assert written["entries_skipped"] == stats["entries_skipped"]


def test_empty_trades_and_flat_equity_are_undefined_not_zero():
    idx = pd.Index(np.arange(10, dtype=np.int64) * 3_600_000)
    s = compute_stats(pd.Series(INIT, index=idx), None, None, initial_cash=INIT)
    assert s["total_return"] == 0.0 and s["max_drawdown"] == 0.0
    assert math.isnan(s["sharpe"]) and math.isnan(s["sortino"])
    assert math.isnan(s["win_rate"]) and math.isnan(s["profit_factor"])
    assert s["n_trades"] == 0 and s["exposure"] == 0.0 and s["fees"] == 0.0


def test_profit_factor_without_losses_is_null_in_json(tmp_path):
    idx = pd.Index(np.arange(3, dtype=np.int64) * 3_600_000)
    # The third trade is still open (NaN pnl, as core.journal.trades_table writes it).
    trades = pd.DataFrame({"symbol": ["A/USDT"] * 3, "pnl": [5.0, 1.0, np.nan]})
    s = compute_stats(pd.Series([INIT, INIT + 3, INIT + 6], index=idx), trades, None,
                      initial_cash=INIT)
    assert s["profit_factor"] == math.inf and s["win_rate"] == 1.0
    assert s["n_trades"] == 2 and s["n_open_trades"] == 1
    path = write_stats_json(s, tmp_path / "stats.json", profile="p")
    data = json.loads(path.read_text())  # strict JSON: no NaN / Infinity tokens
    assert data["profit_factor"] is None and data["profile"] == "p"
    assert data["trades_per_asset"] == {"A/USDT": 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=200))
def test_drawdown_matches_pandas_and_is_bounded(rets):
    idx = pd.Index(np.arange(len(rets), dtype=np.int64) * 3_600_000)
    equity = pd.Series(INIT * np.cumprod(1.0 + np.asarray(rets)), index=idx)
    dd = drawdown_series(equity, INIT)
    # Independent: pandas cummax over the series with the initial cash prepended.
    full = pd.concat([pd.Series([INIT]), pd.Series(equity.values)], ignore_index=True)
    ref = (full / full.cummax() - 1.0).iloc[1:].to_numpy()
    np.testing.assert_allclose(dd.to_numpy(), ref, rtol=0, atol=1e-12)
    s = compute_stats(equity, initial_cash=INIT)
    assert -1.0 <= s["max_drawdown"] <= 0.0
    assert s["total_return"] == pytest.approx(equity.iloc[-1] / INIT - 1.0)

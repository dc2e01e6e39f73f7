"""Backtest statistics, cross-checked against vectorbt and plain pandas (not our own numbers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.stats import compute_stats, drawdown_series, write_stats_json

INIT = 10_000.0


@pytest.fixture(scope="module")
def vbt_run():
    """A vectorbt portfolio of random signals on one asset: equity, trades, orders, assets."""
    vbt = pytest.importorskip("vectorbt")
    rng = np.random.default_rng(3)
    n = 1500
    idx = pd.date_range("2024-01-01", periods=n, freq="1h")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), index=idx)
    entries = pd.Series(rng.random(n) < 0.04, index=idx)
    exits = pd.Series(rng.random(n) < 0.04, index=idx)
    pf = vbt.Portfolio.from_signals(close, entries, exits, fees=0.001, init_cash=INIT, freq="1h")
    return vbt, pf


def _fills_from_vbt(pf) -> pd.DataFrame:
    """The journal columns stats needs, rebuilt from vectorbt's order records."""
    orders = pf.orders.records_readable
    signed = np.where(orders["Side"] == "Buy", orders["Size"], -orders["Size"])
    return pd.DataFrame(
        {
            "symbol": "AAA/USDT",
            "ts": orders["Timestamp"].astype("datetime64[ms]").astype("int64"),
            "fee": orders["Fees"],
            "position_after": np.cumsum(signed),
        }
    )


def test_stats_match_vectorbt(vbt_run):
    vbt, pf = vbt_run
    equity = pf.value()
    trades = pf.trades.records_readable.rename(columns={"PnL": "pnl"})
    trades["symbol"] = "AAA/USDT"
    fills = _fills_from_vbt(pf)
    s = compute_stats(equity, trades, fills, initial_cash=INIT, symbols=["AAA/USDT", "BBB/USDT"])

    rets = pf.returns().vbt.returns(freq="1h", year_freq="365d")
    assert s["periods_per_year"] == 8760.0
    assert s["total_return"] == pytest.approx(pf.total_return(), rel=1e-12)
    assert s["cagr"] == pytest.approx(rets.annualized(), rel=1e-9)
    assert s["sharpe"] == pytest.approx(rets.sharpe_ratio(), rel=1e-9)
    assert s["sortino"] == pytest.approx(rets.sortino_ratio(), rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(pf.max_drawdown(), rel=1e-12)
    assert s["win_rate"] == pytest.approx(pf.trades.win_rate(), rel=1e-12)
    assert s["profit_factor"] == pytest.approx(pf.trades.profit_factor(), rel=1e-12)
    assert s["fees"] == pytest.approx(pf.orders.records_readable["Fees"].sum(), rel=1e-12)
    assert s["n_trades"] == pf.trades.count()
    assert s["trades_per_asset"] == {"AAA/USDT": pf.trades.count(), "BBB/USDT": 0}
    # Exposure: share of bars that close holding a position, from vectorbt's own holdings.
    assert s["exposure"] == pytest.approx(float((pf.assets() != 0).mean()), rel=1e-12)


def test_stats_on_int_ms_index_equal_datetime_index(vbt_run):
    _, pf = vbt_run
    equity = pf.value()
    ms = pd.Series(equity.values, index=equity.index.astype("datetime64[ms]").astype("int64"))
    a = compute_stats(equity, initial_cash=INIT)
    b = compute_stats(ms, initial_cash=INIT)
    a.pop("trades_per_asset"), b.pop("trades_per_asset")
    assert a == pytest.approx(b, nan_ok=True)


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

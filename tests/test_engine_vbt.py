"""The engine against vectorbt: same trades as ``from_signals`` (SL/TP, trailing) and the same
holdings as ``from_orders(size_type="targetpercent")`` in portfolio mode.

vectorbt is configured to our semantics: stops anchored to the fill price
(``stop_entry_price="fillprice"``), stop fills at the level without slippage
(``stop_exit_price="stoplimit"``, its default), SL checked before TP on a bar that holds
both (our ``pessimistic`` policy). The one case where the rules differ by design is tested
separately and named: an open that gaps through the TP on a bar whose low also reaches the
SL (vectorbt: SL at its level; we: the open is checked first for both legs, so TP at the
open).
"""

from __future__ import annotations

import numpy as np
import pytest

vbt = pytest.importorskip("vectorbt")

from tandem.core.engine import EngineConfig, run_batch  # noqa: E402
from tandem.core.engine.layout import F_PRICE, F_QTY, F_REASON, F_SIDE, F_TS, REASON_NAMES  # noqa: E402
from tandem.core.journal import trades_table  # noqa: E402

HOUR = 3_600_000


def market(seed: int, n: int = 3000, gap: float = 0.004, vol: float = 0.01):
    """Random-walk OHLC with overnight-style gaps and sparse, isolated +1/-1 signals."""
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    o = np.r_[100.0, c[:-1]] * np.exp(rng.normal(0, gap, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, vol / 2, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, vol / 2, n)))
    u = rng.random(n)
    sig = np.where(u < 0.02, 1.0, np.where(u > 0.98, -1.0, 0.0))
    return o, h, lo, c, sig


def ours(cfg: EngineConfig, o, h, lo, c, sig):  # noqa: ANN001
    ts = (np.arange(len(c)) + 1) * HOUR  # ts_close of bar i
    col = (o[:, None], h[:, None], lo[:, None], c[:, None], sig[:, None])
    res = run_batch(cfg, ts, *col, symbols=["X/USDT"], profile="p", run_id="r")
    bar = (res.raw[:, F_TS] // HOUR - 1).astype(np.int64)
    return res, bar


@pytest.fixture(scope="module")
def vbt_warm():
    """Compile vectorbt once for the module (its first call takes ~30 s)."""
    o, h, lo, c, sig = market(0, n=50)
    vbt.Portfolio.from_signals(c, sig == 1, sig == -1, open=o, high=h, low=lo, sl_stop=0.01)
    return vbt


def assert_same_orders(res, bar, pf) -> None:  # noqa: ANN001
    rec = pf.orders.records
    assert len(rec) == len(res.raw), (len(rec), len(res.raw))
    np.testing.assert_array_equal(bar, rec["idx"])
    np.testing.assert_array_equal(res.raw[:, F_SIDE], np.where(rec["side"] == 0, 1.0, -1.0))
    # Prices bit for bit: same stop-level formulas, same slippage multiplier.
    np.testing.assert_array_equal(res.raw[:, F_PRICE], rec["price"])
    np.testing.assert_allclose(res.raw[:, F_QTY], rec["size"], rtol=1e-12)
    np.testing.assert_allclose(res.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-10)


def divergent_bars(res, bar, o, lo, sl_pct) -> int:  # noqa: ANN001
    """Count TP fills at a gapped open on bars whose low also reached the SL."""
    n = 0
    entry = None
    for k, row in enumerate(res.raw):
        if REASON_NAMES[int(row[F_REASON])] == "entry":
            entry = row[F_PRICE]
        elif REASON_NAMES[int(row[F_REASON])] == "take_profit" and row[F_PRICE] == o[bar[k]]:
            n += bool(lo[bar[k]] <= entry * (1 - sl_pct))
    return n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_from_signals_sl_tp_same_trades(vbt_warm, seed: int) -> None:
    o, h, lo, c, sig = market(seed)
    cfg = EngineConfig(
        stop_loss_pct=0.015,
        take_profit_pct=0.02,
        fee_rate=0.001,
        slippage_bps=5,
        size_pct=1.0,
        initial_cash=10_000.0,
        intrabar="pessimistic",
    )
    res, bar = ours(cfg, o, h, lo, c, sig)
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.015,
        tp_stop=0.02,
        fees=0.001,
        slippage=0.0005,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
        stop_exit_price="stoplimit",
    )
    # The random market must exercise every path being compared ...
    reasons = res.fills["reason"].value_counts()
    assert reasons.get("stop_loss", 0) > 5 and reasons.get("take_profit", 0) > 5
    assert reasons.get("exit", 0) >= 1
    gapped = np.isin(res.raw[:, F_PRICE], o[bar]) & (res.raw[:, F_REASON] >= 2)
    assert gapped.sum() >= 1, "no stop filled at a gapped open"
    # ... but not the case where the rules differ by design (tested below).
    assert divergent_bars(res, bar, o, lo, 0.015) == 0
    assert_same_orders(res, bar, pf)


def test_from_signals_ambiguous_bars_are_sl_first(vbt_warm) -> None:
    """Tight stops in a wide market: many bars hold both SL and TP; pessimistic = vectorbt."""
    o, h, lo, c, sig = market(7, vol=0.02, gap=0.001)
    cfg = EngineConfig(stop_loss_pct=0.01, take_profit_pct=0.01, fee_rate=0.0, size_pct=1.0)
    res, bar = ours(cfg, o, h, lo, c, sig)
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.01,
        tp_stop=0.01,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
    )
    ambiguous = (res.fills["intrabar"] == "pessimistic").sum()
    assert ambiguous >= 5
    assert divergent_bars(res, bar, o, lo, 0.01) == 0
    assert_same_orders(res, bar, pf)


@pytest.mark.parametrize("seed", [4, 5])
def test_from_signals_trailing_same_trades(vbt_warm, seed: int) -> None:
    """Our trailing stop (peak updated after the check, with the high) = ``sl_trail=True``."""
    o, h, lo, c, sig = market(seed)
    cfg = EngineConfig(
        trailing_stop_pct=0.02,
        take_profit_pct=0.04,
        fee_rate=0.0005,
        size_pct=1.0,
    )
    res, bar = ours(cfg, o, h, lo, c, sig)
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.02,
        sl_trail=True,
        tp_stop=0.04,
        fees=0.0005,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
    )
    assert (res.fills["reason"] == "trailing_stop").sum() > 5
    # Some trailing exits lie above the entry price: the peak really moved.
    px = res.fills["price"].to_numpy()
    trail = np.nonzero(res.fills["reason"].to_numpy() == "trailing_stop")[0]
    assert (px[trail] > px[trail - 1]).any()
    assert_same_orders(res, bar, pf)


def test_divergence_open_gaps_through_tp_low_reaches_sl(vbt_warm) -> None:
    """Named divergence: open above TP, low below SL in the same bar.

    DESIGN.md: "the open first, for both legs": the TP fills at the open. vectorbt checks
    the SL leg first across the whole bar and fills the SL at its level.
    """
    c = np.array([100.0, 100.0, 100.0])
    o = np.array([100.0, 100.0, 106.0])  # bar 2 opens through TP (105)
    h = np.array([100.0, 100.0, 107.0])
    lo = np.array([100.0, 100.0, 90.0])  # ... and trades down through SL (95)
    sig = np.array([0.0, 1.0, 0.0])
    cfg = EngineConfig(stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0.0, size_pct=1.0)
    res, bar = ours(cfg, o, h, lo, c, sig)
    assert list(res.fills["reason"]) == ["entry", "take_profit"]
    assert res.raw[1, F_PRICE] == 106.0 and bar[1] == 2
    assert res.fills["intrabar"].iloc[1] == ""  # decided by the open, not by the policy
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.05,
        tp_stop=0.05,
        init_cash=10_000.0,
    )
    rec = pf.orders.records
    assert rec["idx"][1] == 2 and rec["price"][1] == pytest.approx(95.0)


def test_portfolio_matches_from_orders_targetpercent(vbt_warm) -> None:
    """Same holdings after every rebalance as vectorbt's targetpercent with cash sharing."""
    rng = np.random.default_rng(11)
    n, m = 24 * 60, 4
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * 1.002
    lo = np.minimum(o, c) * 0.998
    target = np.full((n, m), np.nan)
    rebal = np.arange(0, n, 24)
    w = rng.dirichlet(np.ones(m + 1), size=len(rebal))[:, :m]  # last share = cash
    w[rng.random(w.shape) < 0.2] = 0.0  # some assets dropped entirely
    target[rebal] = w
    fee = 0.001
    cfg = EngineConfig(mode="portfolio", fee_rate=fee, initial_cash=100_000.0)
    ts = (np.arange(n) + 1) * HOUR
    res = run_batch(cfg, ts, o, h, lo, c, target, symbols=list("ABCD"), profile="p", run_id="r")
    pf = vbt.Portfolio.from_orders(
        c,
        size=target,
        size_type="targetpercent",
        fees=fee,
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
    )
    theirs = pf.assets().to_numpy()
    fills = res.fills
    last = fills.groupby(["ts", "symbol"]).tail(1)
    mine = (
        last.pivot(index="ts", columns="symbol", values="position_after")
        .reindex(index=ts, columns=list("ABCD"))
        .ffill()
        .fillna(0.0)
        .to_numpy()
    )
    # Same valuation (once per rebalance, at the close), sells first, fee on top: the
    # holdings agree to float rounding, fees included.
    np.testing.assert_allclose(mine[rebal], theirs[rebal], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(res.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-12)
    assert (fills["reason"] == "rebalance").all()


def test_trades_table_matches_vectorbt(vbt_warm) -> None:
    """Per-trade PnL and return equal vectorbt's trade records on the same run."""
    rng = np.random.default_rng(5)
    n = 1500
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.r_[100.0, c[:-1]]
    h = np.maximum(o, c) * 1.004
    lo = np.minimum(o, c) * 0.996
    u = rng.random(n)
    sig = np.where(u < 0.02, 1.0, np.where(u > 0.98, -1.0, 0.0))
    cfg = EngineConfig(stop_loss_pct=0.02, take_profit_pct=0.03, fee_rate=0.001, size_pct=1.0)
    ts = (np.arange(n) + 1) * HOUR
    res = run_batch(
        cfg,
        ts,
        o[:, None],
        h[:, None],
        lo[:, None],
        c[:, None],
        sig[:, None],
        symbols=["X"],
        profile="p",
        run_id="r",
    )
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.02,
        tp_stop=0.03,
        fees=0.001,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
    )
    theirs = pf.trades.records
    mine = trades_table(res.fills)
    assert len(mine) == len(theirs) > 10
    closed = ~np.isnan(mine["pnl"].to_numpy())
    np.testing.assert_allclose(mine["pnl"].to_numpy()[closed], theirs["pnl"][closed], rtol=1e-9)
    np.testing.assert_allclose(
        mine["return"].to_numpy()[closed], theirs["return"][closed], rtol=1e-6
    )
    np.testing.assert_array_equal(mine["entry_ts"] // HOUR - 1, theirs["entry_idx"])


@pytest.mark.data
@pytest.mark.parametrize("trailing", [False, True])
def test_real_candles_same_trades(vbt_warm, btc_1h, trailing: bool) -> None:  # noqa: ANN001
    """Binance BTC/USDT 1h (5,482 real bars, exchange gaps kept) with random signals."""
    o, h, lo, c = (btc_1h[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    u = np.random.default_rng(99).random(len(c))
    sig = np.where(u < 0.02, 1.0, np.where(u > 0.98, -1.0, 0.0))
    stop = {"trailing_stop_pct": 0.015} if trailing else {"stop_loss_pct": 0.015}
    cfg = EngineConfig(take_profit_pct=0.025, fee_rate=0.001, size_pct=1.0, **stop)
    res, bar = ours(cfg, o, h, lo, c, sig)
    pf = vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.015,
        sl_trail=trailing,
        tp_stop=0.025,
        fees=0.001,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
    )
    assert len(res.fills) > 100
    assert divergent_bars(res, bar, o, lo, 0.015) == 0
    assert_same_orders(res, bar, pf)

"""Execution rules on hand-made bars (DESIGN.md "Execution"), one rule per test.

Every expected number below is worked out by hand from the rule, not read off the engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tandem.core.engine import Engine, EngineConfig, run_batch

HOUR = 3_600_000
NAN = np.nan


def run(cfg: EngineConfig, bars, sig, symbols=("X",)):  # noqa: ANN001
    """bars: list of per-bar tuples (o, h, l, c) for one asset, or arrays n x m x 4."""
    b = np.asarray(bars, dtype=float)
    if b.ndim == 2:
        b = b[:, None, :]
    s = np.asarray(sig, dtype=float)
    if s.ndim == 1:
        s = s[:, None]
    ts = (np.arange(b.shape[0]) + 1) * HOUR
    return run_batch(
        cfg,
        ts,
        b[..., 0],
        b[..., 1],
        b[..., 2],
        b[..., 3],
        s,
        symbols=list(symbols),
        profile="p",
        run_id="r",
    )


def bar_of(fills) -> list[int]:  # noqa: ANN001
    return [int(t // HOUR - 1) for t in fills["ts"]]


# --- intrabar policies -------------------------------------------------------------------
# Entry at 100 (bar 0 close), SL 95, TP 105. Bar 1 holds both levels.
AMBIG_NEAR_HIGH = (103.0, 106.0, 94.0, 100.0)  # open nearer the high
AMBIG_NEAR_LOW = (96.0, 106.0, 94.0, 100.0)  # open nearer the low


@pytest.mark.parametrize(
    ("policy", "bar1", "reason", "price"),
    [
        ("pessimistic", AMBIG_NEAR_HIGH, "stop_loss", 95.0),
        ("ohlc", AMBIG_NEAR_HIGH, "take_profit", 105.0),
        ("ohlc", AMBIG_NEAR_LOW, "take_profit", 105.0),
        ("adaptive", AMBIG_NEAR_HIGH, "take_profit", 105.0),
        ("adaptive", AMBIG_NEAR_LOW, "stop_loss", 95.0),
        ("pessimistic", AMBIG_NEAR_LOW, "stop_loss", 95.0),
    ],
)
def test_intrabar_policy_long(policy: str, bar1, reason: str, price: float) -> None:  # noqa: ANN001
    cfg = EngineConfig(stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0, intrabar=policy)
    res = run(cfg, [(100, 100, 100, 100), bar1, (100, 100, 100, 100)], [1, 0, 0])
    f = res.fills
    assert list(f["reason"]) == ["entry", reason]
    assert f["price"].iloc[1] == price
    # The policy is journaled on exactly the ambiguous fill.
    assert list(f["intrabar"]) == ["", policy]


@pytest.mark.parametrize(
    ("policy", "reason", "price"),
    [
        ("pessimistic", "stop_loss", 105.0),
        ("ohlc", "stop_loss", 105.0),
        ("adaptive", "take_profit", 95.0),
    ],
)
def test_intrabar_policy_short(policy: str, reason: str, price: float) -> None:
    """Short at 100: SL 105, TP 95. O->H->L->C reaches the high (the short's stop) first."""
    cfg = EngineConfig(
        stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0, intrabar=policy, long_short=True
    )
    res = run(cfg, [(100, 100, 100, 100), (96, 106, 94, 100)], [-1, 0])
    f = res.fills
    assert list(f["side"]) == ["sell", "buy"]
    assert list(f["reason"]) == ["entry", reason]
    assert f["price"].iloc[1] == price
    assert list(f["intrabar"]) == ["", policy]


def test_unambiguous_fills_record_no_policy() -> None:
    cfg = EngineConfig(stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0, intrabar="adaptive")
    bars = [(100,) * 4, (100, 101, 94, 96), (100,) * 4, (100, 106, 99, 100)]
    res = run(cfg, bars, [1, 0, 1, 0])
    assert list(res.fills["reason"]) == ["entry", "stop_loss", "entry", "take_profit"]
    assert (res.fills["intrabar"] == "").all()


# --- open first, gaps, entry bar -------------------------------------------------------------
def test_gap_through_stop_fills_at_open_without_slippage() -> None:
    cfg = EngineConfig(stop_loss_pct=0.05, fee_rate=0, slippage_bps=10)
    res = run(cfg, [(100,) * 4, (90, 92, 88, 91)], [1, 0])
    entry = 100 * 1.001
    assert res.fills["price"].iloc[0] == entry
    assert res.fills["reason"].iloc[1] == "stop_loss"
    assert res.fills["price"].iloc[1] == 90.0  # the open, no slippage


def test_gap_through_target_fills_at_open() -> None:
    cfg = EngineConfig(take_profit_pct=0.05, fee_rate=0)
    res = run(cfg, [(100,) * 4, (110, 111, 109, 110)], [1, 0])
    assert list(res.fills["reason"]) == ["entry", "take_profit"]
    assert res.fills["price"].iloc[1] == 110.0


def test_entry_bar_never_triggers_its_own_stop() -> None:
    """Bar 0's low is far below the SL of the position entered at bar 0's close."""
    cfg = EngineConfig(stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0)
    res = run(cfg, [(100, 120, 50, 100), (100, 101, 99, 100)], [1, 0])
    assert list(res.fills["reason"]) == ["entry"]


def test_stops_are_anchored_to_the_fill_price() -> None:
    """With 100 bps slippage the entry fills at 101; SL 5 % -> 95.95 (not 95)."""
    cfg = EngineConfig(stop_loss_pct=0.05, fee_rate=0, slippage_bps=100)
    res = run(cfg, [(100,) * 4, (100, 100, 95.96, 99), (99, 99, 95.5, 96)], [1, 0, 0])
    assert list(bar_of(res.fills)) == [0, 2]
    assert res.fills["price"].iloc[1] == 101.0 * (1 - 0.05)


# --- trailing ----------------------------------------------------------------------------------
def test_trailing_peak_updates_after_the_check() -> None:
    """Entry 100, trail 10 %. Bar 1: high 120 (new peak) and low 105: the check uses the old
    level 90, so no exit; the level becomes 108 afterwards. Bar 2: low 107 -> exit at 108."""
    cfg = EngineConfig(trailing_stop_pct=0.10, fee_rate=0)
    bars = [(100,) * 4, (110, 120, 105, 115), (112, 113, 107, 110)]
    res = run(cfg, bars, [1, 0, 0])
    assert list(res.fills["reason"]) == ["entry", "trailing_stop"]
    assert bar_of(res.fills) == [0, 2]
    assert res.fills["price"].iloc[1] == 120 * (1 - 0.10)


def test_tighter_of_fixed_and_trailing_stop_wins() -> None:
    cfg = EngineConfig(stop_loss_pct=0.05, trailing_stop_pct=0.10, fee_rate=0)
    # Before the peak moves the fixed SL (95) is tighter than the trail (90).
    res = run(cfg, [(100,) * 4, (100, 101, 94, 96)], [1, 0])
    assert res.fills["reason"].iloc[1] == "stop_loss" and res.fills["price"].iloc[1] == 95.0
    # After a peak at 120 the trail (108) is tighter.
    res = run(cfg, [(100,) * 4, (110, 120, 110, 115), (112, 113, 100, 110)], [1, 0, 0])
    assert res.fills["reason"].iloc[1] == "trailing_stop" and res.fills["price"].iloc[1] == 108.0


# --- signals, re-arm, exit_on_signal --------------------------------------------------------
FLAT = (100.0, 100.0, 100.0, 100.0)


def test_exit_on_signal_switch() -> None:
    on = run(EngineConfig(fee_rate=0, size_pct=1), [FLAT] * 3, [1, -1, 0])
    assert list(on.fills["reason"]) == ["entry", "exit"]
    off = run(EngineConfig(fee_rate=0, size_pct=1, exit_on_signal=False), [FLAT] * 3, [1, -1, 0])
    assert list(off.fills["reason"]) == ["entry"]


def test_levels_not_edges_and_rearm_after_stop() -> None:
    """A held +1 enters once; after a stop it re-enters only once the signal left +1."""
    cfg = EngineConfig(stop_loss_pct=0.05, fee_rate=0, size_pct=1)
    bars = [FLAT, FLAT, (100, 100, 90, 100), FLAT, FLAT, FLAT]
    res = run(cfg, bars, [1, 1, 1, 1, 0, 1])
    assert list(res.fills["reason"]) == ["entry", "stop_loss", "entry"]
    assert bar_of(res.fills) == [0, 2, 5]


def test_signal_exit_then_reentry_needs_no_rearm() -> None:
    res = run(EngineConfig(fee_rate=0, size_pct=1), [FLAT] * 3, [1, -1, 1])
    assert list(res.fills["reason"]) == ["entry", "exit", "entry"]


def test_long_short_reversal_in_one_slice() -> None:
    cfg = EngineConfig(fee_rate=0.001, size_pct=0.5, long_short=True)
    res = run(cfg, [FLAT] * 3, [-1, 1, 0])
    f = res.fills
    assert list(zip(f["side"], f["reason"], strict=True)) == [
        ("sell", "entry"),
        ("buy", "exit"),
        ("buy", "entry"),
    ]
    assert f["position_after"].iloc[0] < 0 and f["position_after"].iloc[1] == 0
    assert f["position_after"].iloc[2] > 0


def test_long_only_ignores_short_signals_when_flat() -> None:
    res = run(EngineConfig(fee_rate=0), [FLAT] * 3, [-1, -1, 0])
    assert len(res.fills) == 0


# --- sizing, fees and shared cash ---------------------------------------------------------------
def test_fraction_sizing_fee_included() -> None:
    cfg = EngineConfig(fee_rate=0.01, size_pct=0.5, initial_cash=1000.0)
    res = run(cfg, [FLAT], [1])
    f = res.fills.iloc[0]
    # 500 pays notional and fee: qty * 100 * 1.01 = 500.
    assert f["qty"] == pytest.approx(500 / 101, rel=1e-15)
    assert f["fee"] == pytest.approx(f["qty"] * 100 * 0.01, rel=1e-15)
    assert f["cash_after"] == pytest.approx(500.0, rel=1e-12)


def test_risk_sizing_loses_risk_pct_at_the_stop() -> None:
    cfg = EngineConfig(
        sizing="risk", risk_pct=0.01, stop_loss_pct=0.04, fee_rate=0, initial_cash=10_000.0
    )
    res = run(cfg, [FLAT, (100, 100, 90, 95)], [1, 0])
    f = res.fills
    loss = f["qty"].iloc[0] * (f["price"].iloc[0] - f["price"].iloc[1])
    assert loss == pytest.approx(100.0, rel=1e-12)  # 1 % of 10,000
    assert f["qty"].iloc[0] == pytest.approx(100.0 / (100 * 0.04), rel=1e-12)


def test_unfundable_entries_are_skipped_in_asset_order() -> None:
    """Three assets signal together; 40 % each: A and B fit, C does not (20 % cash left)."""
    cfg = EngineConfig(fee_rate=0, size_pct=0.4, initial_cash=1000.0)
    bars = np.array([[FLAT, FLAT, FLAT]])
    res = run(cfg, bars, [[1, 1, 1]], symbols=("A", "B", "C"))
    assert list(res.fills["symbol"]) == ["A", "B"]
    # C's signal is a level: it enters once cash frees up (A exits on bar 1).
    bars = np.array([[FLAT] * 3, [FLAT] * 3])
    res = run(cfg, bars, [[1, 1, 1], [-1, 1, 1]], symbols=("A", "B", "C"))
    assert list(zip(res.fills["symbol"], res.fills["reason"], strict=True)) == [
        ("A", "entry"),
        ("B", "entry"),
        ("A", "exit"),
        ("C", "entry"),
    ]


def gross_exposure(res, closes) -> np.ndarray:  # noqa: ANN001
    """Sum of |position| x close over assets, after each bar, as a fraction of equity."""
    f = res.fills
    pos = (
        f.groupby(["ts", "symbol"])["position_after"].last().unstack()
        .reindex(index=res.equity.index, columns=res.engine.symbols).ffill().fillna(0.0)
    )
    return (pos.abs().to_numpy() * np.asarray(closes)).sum(axis=1) / res.equity.to_numpy()


def test_short_proceeds_do_not_fund_a_long() -> None:
    """long_short, size_pct 1: a short of all equity on bar 0 leaves its proceeds in cash
    (1,000 + 1,000), but they are borrowed: free cash = cash - 2 x the short's notional at
    its fill price = 0 (vectorbt's lock_cash). B's long on bar 1 (and on bar 0, same slice)
    is unfunded and skipped; before, it bought 1,000 from those proceeds: 2x gross exposure
    for a user who asked for 100 % per position. Accounting keeps its meaning: cash_after
    is the cash, proceeds included; equity = cash + positions at the close."""
    cfg = EngineConfig(fee_rate=0, size_pct=1.0, long_short=True, initial_cash=1000.0)
    bars = np.array([[FLAT, FLAT], [FLAT, FLAT]])
    for sig in ([[-1, 0], [0, 1]], [[-1, 1], [0, 1]]):
        res = run(cfg, bars, sig, symbols=("A", "B"))
        f = res.fills
        assert list(zip(f["symbol"], f["side"], f["reason"], strict=True)) == [
            ("A", "sell", "entry")], sig
        assert f["cash_after"].iloc[0] == 2000.0
        np.testing.assert_array_equal(res.equity.to_numpy(), [1000.0, 1000.0])
        np.testing.assert_allclose(gross_exposure(res, [[100.0, 100.0]] * 2), [1.0, 1.0])
        assert res.engine.free_cash() == 0.0
    # Covering frees the locked cash: A's exit (buy signal = reversal) funds its own long
    # and B is skipped again on that bar (A's long took the whole equity), entering later
    # only when free cash allows.
    bars = np.array([[FLAT, FLAT], [FLAT, FLAT], [FLAT, FLAT]])
    res = run(cfg, bars, [[-1, 0], [1, 1], [-1, 1]], symbols=("A", "B"))
    assert list(zip(bar_of(res.fills), res.fills["symbol"], res.fills["reason"],
                    strict=True)) == [
        (0, "A", "entry"), (1, "A", "exit"), (1, "A", "entry"), (2, "A", "exit"),
        (2, "A", "entry")]


def test_short_locks_its_notional_for_later_entries() -> None:
    """size_pct 0.4, fee 0, cash 1,000: short A (400 locked, free 600), long B (400, free
    200); C's 40 % of equity (400) no longer fits in free cash and is skipped — before, the
    short's 400 of proceeds paid for it (gross 120 %). A short that moved against us keeps
    its lock at the fill price (vectorbt's debt), equity drops: C still does not fit."""
    cfg = EngineConfig(fee_rate=0, size_pct=0.4, long_short=True, initial_cash=1000.0)
    bars = np.array([[FLAT] * 3, [(110.0,) * 4, FLAT, FLAT]])
    res = run(cfg, bars, [[-1, 1, 1], [0, 1, 1]], symbols=("A", "B", "C"))
    f = res.fills
    assert list(zip(f["symbol"], f["side"], strict=True)) == [("A", "sell"), ("B", "buy")]
    assert res.engine.free_cash() == pytest.approx(200.0, rel=1e-15)
    assert res.engine.cash == pytest.approx(1000.0, rel=1e-15)  # +400 proceeds, -400 spent
    assert res.equity.iloc[-1] == pytest.approx(1000.0 - 4 * 10.0, rel=1e-15)


def test_free_cash_survives_a_daemon_checkpoint() -> None:
    """Free cash is derived from the saved state (A_POS, A_ENTRY, S_CASH): no new state
    column, so checkpoint blobs keep their layout. A daemon restarted with a short open
    still refuses the long its proceeds would have paid for, exactly as the uninterrupted
    engine (and the backtest) does."""
    cfg = EngineConfig(fee_rate=0.001, size_pct=0.6, long_short=True, initial_cash=1000.0)
    bars = [(100.0, 101.0, 99.0, 100.0), (100.0, 102.0, 99.0, 101.0), (101.0, 103.0, 100.0, 102.0)]
    sig = [[-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    eng = Engine(cfg, ["A", "B"], profile="p", run_id="r", source="paper")
    first = eng.step(HOUR, [bars[0][0]] * 2, [bars[0][1]] * 2, [bars[0][2]] * 2,
                     [bars[0][3]] * 2, sig[0])
    restored = Engine.from_bytes(eng.to_bytes())
    assert restored.free_cash() == eng.free_cash() < 0.6 * eng.equity()
    rest = [
        e.step((k + 1) * HOUR, [b[0]] * 2, [b[1]] * 2, [b[2]] * 2, [b[3]] * 2, sig[k])
        for e in (eng, restored) for k, b in list(enumerate(bars))[1:]
    ]
    assert all(len(f) == 0 for f in rest)  # B's long: unfunded before and after a restart
    batch = run(cfg, np.array([[b, b] for b in bars]), sig, symbols=("A", "B"))
    pd.testing.assert_frame_equal(batch.fills, first.assign(source="backtest"))


def test_discrete_entry_below_min_trade_value_is_skipped() -> None:
    """execution.min_trade_value held for portfolio trades only: in discrete mode it was
    accepted and ignored (a profile with 2,000 traded entries of 1,000 as before). Entries
    of 10 % of 1,000 = 100 quote: a minimum of 150 skips them (as an unfundable entry is
    skipped, the level retries later), 100 (equality) and 50 let them through. Exits are
    never held back by it: a position can always be closed."""
    bars = [FLAT, FLAT, FLAT]
    for minimum, entered in ((150.0, False), (100.0, True), (50.0, True)):
        cfg = EngineConfig(fee_rate=0, size_pct=0.1, initial_cash=1000.0, min_trade_value=minimum)
        res = run(cfg, bars, [1, 1, 1])
        assert list(res.fills["reason"]) == (["entry"] if entered else []), minimum
    cfg = EngineConfig(fee_rate=0, size_pct=0.5, initial_cash=1000.0, min_trade_value=400.0)
    bars = np.array([[FLAT, FLAT], [FLAT, FLAT], [(50.0,) * 4, FLAT]])
    res = run(cfg, bars, [[1, 0], [1, 1], [-1, 1]], symbols=("A", "B"))
    # bar 0: A 500 >= 400 enters; bar 1: B 50 % of 1,000 = 500 enters; bar 2: A exits at
    # 50 (a 250 sale, below the minimum: exits are never held back)
    assert list(zip(res.fills["symbol"], res.fills["reason"], strict=True)) == [
        ("A", "entry"), ("B", "entry"), ("A", "exit")]


def test_missing_bar_does_nothing_and_keeps_valuation() -> None:
    cfg = EngineConfig(stop_loss_pct=0.05, fee_rate=0, size_pct=1.0, initial_cash=1000.0)
    bars = [FLAT, (NAN, NAN, NAN, NAN), (100, 100, 99, 100)]
    res = run(cfg, bars, [1, -1, 0])  # the -1 on the missing bar is not seen
    assert list(res.fills["reason"]) == ["entry"]
    np.testing.assert_allclose(res.equity.to_numpy(), [1000.0, 1000.0, 1000.0])


# --- portfolio mode --------------------------------------------------------------------------------
def test_portfolio_sells_before_buys_cap_and_min_trade() -> None:
    cfg = EngineConfig(
        mode="portfolio", fee_rate=0, max_weight=0.5, min_trade_value=50.0, initial_cash=1000.0
    )
    bars = np.array([[FLAT, FLAT], [FLAT, FLAT], [FLAT, FLAT]])
    target = [[0.8, 0.2], [0.0, 0.5], [NAN, 0.52]]
    res = run(cfg, bars, target, symbols=("A", "B"))
    f = res.fills
    # bar 0: A capped to 0.5 -> 5 units, B 0.2 -> 2 units (A first: asset order, both buys)
    # bar 1: sell A (all) first, then buy B up to 5 units
    # bar 2: B +0.02 = 20 quote < min_trade_value -> skipped; A NaN -> kept (flat)
    assert list(zip(bar_of(f), f["symbol"], f["side"], f["qty"], strict=True)) == [
        (0, "A", "buy", 5.0),
        (0, "B", "buy", 2.0),
        (1, "A", "sell", 5.0),
        (1, "B", "buy", 3.0),
    ]


def test_portfolio_stop_overlay_zeroes_weight_until_rearmed() -> None:
    cfg = EngineConfig(mode="portfolio", fee_rate=0, stop_loss_pct=0.05, initial_cash=1000.0)
    bars = [FLAT, (100, 100, 90, 100), FLAT, FLAT, FLAT]
    target = [0.5, 0.5, 0.5, 0.0, 0.5]
    res = run(cfg, bars, target)
    f = res.fills
    assert list(zip(bar_of(f), f["reason"], strict=True)) == [
        (0, "rebalance"),
        (1, "stop_loss"),
        (4, "rebalance"),
    ]
    assert f["price"].iloc[1] == 95.0


def test_engine_step_equals_batch_on_hand_made_case() -> None:
    cfg = EngineConfig(stop_loss_pct=0.05, take_profit_pct=0.05, fee_rate=0.001)
    bars = np.array([FLAT, AMBIG_NEAR_HIGH, FLAT])
    sig = [1.0, 0.0, 0.0]
    res = run(cfg, bars, sig)
    eng = Engine(cfg, ["X"], profile="p", run_id="r", source="backtest")
    rows = [
        eng.step((k + 1) * HOUR, [b[0]], [b[1]], [b[2]], [b[3]], [sig[k]])
        for k, b in enumerate(bars)
    ]
    stepped = pd.concat(rows, ignore_index=True)
    pd.testing.assert_frame_equal(stepped, res.fills)

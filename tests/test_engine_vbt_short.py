"""long_short against vectorbt ``from_signals(direction both, upon_opposite_entry="reverse")``.

A separate file because vectorbt compiles its signal-function path for short entries on
every run (~10-30 s, not cached); keeping it apart keeps each file within the CI budget.
"""

from __future__ import annotations

import numpy as np
import pytest

vbt = pytest.importorskip("vectorbt")

from tandem.core.engine import Engine, EngineConfig  # noqa: E402
from tandem.core.engine.layout import (  # noqa: E402
    F_ASSET,
    F_FEE,
    F_POS_AFTER,
    F_PRICE,
    F_QTY,
    F_REASON,
    F_SIDE,
    REASON_ENTRY,
    REASON_EXIT,
)

from tests.test_engine_vbt import HOUR, market, ours  # noqa: E402


@pytest.fixture(scope="module")
def vbt_warm():
    return vbt


def merge_same_bar_fills(raw: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """Our reversal is two fills (exit, entry) at one price; vectorbt books one order."""
    rows: list[list[float]] = []
    for k in range(len(raw)):
        side, px = raw[k, F_SIDE], raw[k, F_PRICE]
        if rows and rows[-1][0] == bar[k] and rows[-1][3] == side and rows[-1][1] == px:
            rows[-1][2] += raw[k, F_QTY]
        else:
            rows.append([bar[k], px, raw[k, F_QTY], side])
    return np.array(rows)


@pytest.mark.parametrize("trailing", [False, True])
def test_long_short_same_orders_until_named_divergence(vbt_warm, trailing: bool) -> None:
    """long_short against ``direction="both"`` with ``upon_opposite_entry="reverse"``.

    Named divergence: when a stop fires on a bar whose signal points the other way, we
    exit at the stop and then enter the opposite side at the close (exits come before new
    signals, and the re-arm block only covers the stopped side); vectorbt ignores every
    user signal on a bar where a stop fired. Orders must agree exactly up to that bar.
    """
    o, h, lo, c, sig = market(21)
    stop = {"trailing_stop_pct": 0.015} if trailing else {"stop_loss_pct": 0.015}
    cfg = EngineConfig(
        take_profit_pct=0.02,
        fee_rate=0.001,
        slippage_bps=5,
        size_pct=1.0,
        long_short=True,
        **stop,
    )
    res, bar = ours(cfg, o, h, lo, c, sig)
    none = np.zeros_like(sig, dtype=bool)
    pf = vbt.Portfolio.from_signals(
        c,
        entries=sig == 1,
        exits=none,
        short_entries=sig == -1,
        short_exits=none,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.015,
        sl_trail=trailing,
        tp_stop=0.02,
        fees=0.001,
        slippage=0.0005,
        init_cash=10_000.0,
        stop_entry_price="fillprice",
        upon_opposite_entry="reverse",
    )
    raw = res.raw
    stop_bars = bar[raw[:, F_REASON] >= 2]
    entry_bars = bar[raw[:, F_REASON] == 0]
    first_div = int(np.intersect1d(stop_bars, entry_bars).min())
    mine = merge_same_bar_fills(raw, bar)
    rec = pf.orders.records
    k = int((mine[:, 0] < first_div).sum())
    assert k > 100 and int((rec["idx"] < first_div).sum()) == k
    early = raw[bar < first_div]
    assert (early[:, F_SIDE] < 0).sum() > 30  # shorts were exercised ...
    assert ((res.fills["reason"] == "exit") & (bar < first_div)).sum() >= 3  # ... and reversals
    np.testing.assert_array_equal(mine[:k, 0], rec["idx"][:k])
    np.testing.assert_array_equal(mine[:k, 1], rec["price"][:k])
    np.testing.assert_array_equal(mine[:k, 3], np.where(rec["side"][:k] == 0, 1.0, -1.0))
    np.testing.assert_allclose(mine[:k, 2], rec["size"][:k], rtol=1e-12)
    np.testing.assert_allclose(
        res.equity.to_numpy()[:first_div], pf.value().to_numpy()[:first_div], rtol=1e-10
    )
    # At the divergence bar we stop out and re-enter the other way; vectorbt only exits.
    at = res.fills[bar == first_div]
    assert at["reason"].iloc[0] in ("stop_loss", "trailing_stop", "take_profit")
    assert at["reason"].iloc[-1] == "entry"
    assert list(rec["idx"][k : k + 1]) == [first_div] and (rec["idx"] == first_div).sum() == 1


# --- several assets sharing cash: shorts lock their notional ---------------------------------
def shared_market(seed: int, n: int, m: int):
    """m random walks with sparse, isolated +1/-1 signals (several assets may share a bar)."""
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, m)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * 1.003
    lo = np.minimum(o, c) * 0.997
    u = rng.random((n, m))
    sig = np.where(u < 0.02, 1.0, np.where(u > 0.98, -1.0, 0.0))
    return o, h, lo, c, sig


def step_through(cfg: EngineConfig, o, h, lo, c, sig):  # noqa: ANN001
    """The daemon's driver (Engine.step_raw, one slice at a time): the fills as rows
    ``(bar, *fill)``, and after each slice cash, free cash, equity, and the equity the
    slice's entries were sized on (after its exits, before its entries)."""
    eng = Engine(cfg, [f"S{i}" for i in range(c.shape[1])], source="backtest")
    n = len(c)
    cash, free, equity, pre = (np.empty(n) for _ in range(4))
    rows = []
    for t in range(n):
        raw = eng.step_raw((t + 1) * HOUR, o[t], h[t], lo[t], c[t], sig[t])
        cash[t], free[t], equity[t] = eng.cash, eng.free_cash(), eng.equity()
        # Each entry at the close lowered equity by its fee and its slippage (qty x |price -
        # close|): add them back.
        ent = raw[raw[:, F_REASON] == REASON_ENTRY]
        at = c[t, ent[:, F_ASSET].astype(np.int64)]
        pre[t] = equity[t] + (ent[:, F_FEE] + ent[:, F_QTY] * np.abs(ent[:, F_PRICE] - at)).sum()
        rows += [(t, *r) for r in raw]
    return np.array(rows), cash, free, equity, pre


def per_bar_asset_orders(fills: np.ndarray) -> np.ndarray:
    """Rows ``(bar, asset, price, qty, side)``; a reversal's two legs (same price, same side)
    as one order, as vectorbt books it."""
    out: dict[tuple[int, int], list[float]] = {}
    for r in fills:
        key = (int(r[0]), int(r[1 + F_ASSET]))
        px, qty, side = r[1 + F_PRICE], r[1 + F_QTY], r[1 + F_SIDE]
        if key in out:
            assert out[key][0] == px and out[key][2] == side
            out[key][1] += qty
        else:
            out[key] = [px, qty, side]
    rows = np.array([(*k, *v) for k, v in out.items()])
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def first_divergent_bar(fills: np.ndarray, sig: np.ndarray) -> int:
    """The first bar of either named divergence (see the test), or the bar count."""
    bars = [len(sig)]
    for r in fills[fills[:, 1 + F_REASON] == REASON_EXIT]:
        t, i = int(r[0]), int(r[1 + F_ASSET])
        same = fills[(fills[:, 0] == t) & (fills[:, 1 + F_ASSET] == i)]
        if not (same[:, 1 + F_REASON] == REASON_ENTRY).any():
            bars.append(t)  # (1) an unfunded reversal: we cover, vectorbt stays short
        if (sig[t, :i] != 0).any():
            bars.append(t)  # (2) a cover whose cash an earlier asset's entry may take
    return min(bars)


def test_shared_cash_shorts_lock_notional_like_vectorbt_lock_cash(vbt_warm) -> None:
    """Four assets share cash, long_short, size_pct 0.4 (three positions would be 120 %):
    against ``from_signals(direction both, cash_sharing=True, group_by=True,
    lock_cash=True, allow_partial=False, upon_opposite_entry="reverse")``.

    vectorbt's ``lock_cash`` is its margin model: a short's proceeds stay in cash but free
    cash = cash - 2 x debt (debt = short size x fill price), and buys and short sales are
    limited by free cash (its default, ``lock_cash=False``, lets short proceeds fund longs:
    our old behaviour). ``allow_partial=False``: we skip an unfundable entry, never shrink
    it. Sizes: ours are size_pct of equity, vectorbt's ``percent`` is of *free cash*, so
    vectorbt gets our intended quantities as ``amount`` — for every signal, taken or
    skipped (the equity each slice's entries were sized on, rebuilt from equity after the
    slice). vectorbt then decides on its own which orders are funded and keeps its own
    cash, free cash and value; all must equal ours.

    Named divergences, both from per-asset vs per-slice ordering: (1) an unfunded reversal:
    we cover (exits are never held back) and skip the new leg; vectorbt rejects the whole
    reversal order and stays short; (2) a cover on a bar where another asset signals: our
    exits all come before the slice's entries, so the cover's freed cash can fund an
    earlier asset's entry (or an earlier asset's reversal leg); vectorbt processes asset by
    asset. Orders, cash, free cash and
    value must agree exactly up to the first such bar (this market has none: the whole run
    agrees: 63 orders, 32 of them sells into a short).
    """
    o, h, lo, c, sig = shared_market(3, n=1500, m=4)
    fee, slip, pct = 0.001, 0.0005, 0.4
    cfg = EngineConfig(
        fee_rate=fee, slippage_bps=5, size_pct=pct, long_short=True, initial_cash=10_000.0
    )
    fills, cash, free, equity, pre = step_through(cfg, o, h, lo, c, sig)
    price = c * (1.0 + slip * sig)
    qty = pct * pre[:, None] / (price * (1.0 + fee))
    none = np.zeros_like(sig, dtype=bool)
    pf = vbt.Portfolio.from_signals(
        c,
        entries=sig == 1,
        exits=none,
        short_entries=sig == -1,
        short_exits=none,
        size=qty,
        size_type="amount",
        fees=fee,
        slippage=slip,
        init_cash=10_000.0,
        cash_sharing=True,
        group_by=True,
        lock_cash=True,
        allow_partial=False,
        upon_opposite_entry="reverse",
    )
    div = first_divergent_bar(fills, sig)
    mine = per_bar_asset_orders(fills)
    rec = pf.orders.records
    theirs = np.column_stack(
        [rec["idx"], rec["col"], rec["price"], rec["size"], np.where(rec["side"] == 0, 1, -1)]
    )
    theirs = theirs[np.lexsort((theirs[:, 1], theirs[:, 0]))]
    mine, theirs = mine[mine[:, 0] < div], theirs[theirs[:, 0] < div]
    assert len(mine) == len(theirs) > 50, (len(mine), len(theirs), div)
    np.testing.assert_array_equal(mine[:, [0, 1, 4]], theirs[:, [0, 1, 4]])
    np.testing.assert_array_equal(mine[:, 2], theirs[:, 2])  # same slipped prices
    np.testing.assert_allclose(mine[:, 3], theirs[:, 3], rtol=1e-12)
    for mine_curve, vb in ((cash, pf.cash()), (free, pf.cash(free=True)), (equity, pf.value())):
        np.testing.assert_allclose(mine_curve[:div], vb.to_numpy()[:div], rtol=1e-10)
    # The rule was exercised: shorts were open while entries were skipped although cash
    # (short proceeds included) would have paid for them; vectorbt skipped them too.
    skipped = 0
    for t in range(1, div):
        if (sig[t] != 0).sum() != 1 or (fills[:, 0] == t).any():
            continue  # one signal, nothing traded on the bar: an unfunded entry (or held)
        i = int(np.nonzero(sig[t])[0][0])
        held = fills[(fills[:, 0] < t) & (fills[:, 1 + F_ASSET] == i)]
        if len(held) and held[-1, 1 + F_POS_AFTER] != 0:
            continue
        spend = pct * pre[t]
        skipped += bool(free[t - 1] < spend <= cash[t - 1])
    assert skipped >= 3, skipped
    assert (mine[:, 4] < 0).sum() > 20  # shorts opened (alone or by reversal) throughout

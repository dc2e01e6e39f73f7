"""long_short against vectorbt ``from_signals(direction both, upon_opposite_entry="reverse")``.

A separate file because vectorbt compiles its signal-function path for short entries on
every run (~10-30 s, not cached); keeping it apart keeps each file within the CI budget.
"""

from __future__ import annotations

import numpy as np
import pytest

vbt = pytest.importorskip("vectorbt")

from tandem.core.engine import EngineConfig  # noqa: E402
from tandem.core.engine.layout import F_PRICE, F_QTY, F_REASON, F_SIDE  # noqa: E402

from tests.test_engine_vbt import market, ours  # noqa: E402


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

"""Matching invariants (hypothesis): a journal matches itself; planted edits are found
exactly where they were planted, whatever the journal looks like."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.backtest.reconcile.classify import classify
from tandem.backtest.reconcile.drift import drift_frame, infer_initial_cash
from tandem.backtest.reconcile.evidence import ConfigDiff
from tandem.backtest.reconcile.match import (
    IDENTICAL,
    MISMATCHED,
    MISSING_BACKTEST,
    MISSING_PAPER,
    WITHIN,
    Tolerance,
    match_fills,
)
from tandem.core.journal import fills_frame

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]

row_st = st.tuples(
    st.integers(1, 40), st.integers(0, 2), st.sampled_from([1, -1]), st.floats(0.01, 10),
    st.floats(1, 1000), st.floats(0, 1), st.integers(0, 5), st.integers(0, 3),
    st.floats(0, 10), st.floats(0, 1e5),
)


def journal(rows):
    raw = np.array([(r[0] * 3_600_000, *r[1:]) for r in rows], dtype=np.float64).reshape(-1, 10)
    return fills_frame(raw, SYMBOLS, "p", "r", "backtest")


@settings(max_examples=15, deadline=None)
@given(st.lists(row_st, min_size=1, max_size=20), st.data())
def test_planted_edits_are_found_exactly(rows, data):
    bt = journal(rows)
    same = match_fills(bt.assign(source="paper", run_id="x"), bt)
    assert (same["status"] == IDENTICAL).all() and len(same) == len(bt)

    k = data.draw(st.integers(0, len(bt) - 1))
    col = data.draw(st.sampled_from(["qty", "price", "fee", "cash_after"]))
    paper = bt.copy()
    paper.loc[k, col] = paper.loc[k, col] * 1.5 + 1.0
    m = match_fills(paper, bt)
    bad = m[m["status"] != IDENTICAL]
    assert len(bad) == 1 and bad["status"].iloc[0] == MISMATCHED and bad["fields"].iloc[0] == col
    assert bad["fill_id_paper"].iloc[0] == bt.loc[k, "fill_id"]
    # A wide tolerance accepts it; the diff is then "within tolerance", not a difference.
    loose = match_fills(paper, bt, Tolerance(rel=1.0, abs=10.0))
    assert set(loose["status"]) <= {IDENTICAL, WITHIN}

    drop = data.draw(st.sets(st.integers(0, len(bt) - 1), max_size=len(bt)))
    m = match_fills(bt.drop(index=sorted(drop)), bt)
    assert (m["status"] == MISSING_PAPER).sum() == len(drop)
    m = match_fills(bt, bt.drop(index=sorted(drop)))
    assert (m["status"] == MISSING_BACKTEST).sum() == len(drop)
    # Same profile hash, no candle evidence: every difference is a logic difference (a bug).
    c = classify(match_fills(paper, bt), {}, {"p": ConfigDiff("p", "h", "h")})
    assert set(c["category"]) <= {"logic", "rounding"}


def test_drift_of_identical_journals_is_zero_and_initial_cash_inferred():
    rows = [
        (1, 0, 1, 1.0, 100.0, 0.1, 0, 0, 1.0, 899.9),
        (2, 0, -1, 1.0, 110.0, 0.11, 1, 0, 0.0, 1009.79),
    ]
    bt = journal(rows)
    assert infer_initial_cash(bt) == 1000.0
    d = drift_frame(bt, bt)
    assert (d["equity_drift"] == 0).all() and (d["pnl_drift"] == 0).all()
    # Independent arithmetic: realized PnL of the round trip = 110 - 100 - fees.
    assert d["pnl_backtest"].iloc[-1] == pytest.approx(110.0 - 100.0 - 0.1 - 0.11, rel=1e-12)
    assert d["equity_backtest"].iloc[-1] == 1009.79

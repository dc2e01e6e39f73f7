"""Fingerprints: sensitive to every content bit, blind to producer columns and row order.

Trades are cross-checked against ``tandem.core.journal.trades_table`` (an independent walk of the
same journal) and against a hand-written trade split; the hash encoding against hashlib
over a hand-built canonical string.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.fingerprint import (
    encode_rows,
    fingerprint_line,
    profile_fingerprints,
    run_fingerprint,
    trade_fingerprints,
    trade_ids,
)
from tandem.core.journal import fills_frame, trades_table

COLS = ["ts", "asset", "side", "qty", "price", "fee", "reason", "intrabar", "pos", "cash"]


def journal(rows: list[tuple], profile: str = "p", symbols=("BTC/USDT", "ETH/USDT")) -> pd.DataFrame:
    """Journal frame from numeric engine rows (through the real ``fills_frame``)."""
    raw = np.array(rows, dtype=np.float64).reshape(-1, 10)
    return fills_frame(raw, list(symbols), profile, "run-1", "backtest")


# ts, asset, side, qty, price, fee, reason(0 entry,1 exit,2 sl,3 tp), intrabar, pos_after, cash
BASE = [
    (1000, 0, +1, 1.0, 100.0, 0.1, 0, 0, 1.0, 899.9),
    (1000, 1, +1, 2.0, 50.0, 0.1, 0, 0, 2.0, 799.8),
    (2000, 0, -1, 1.0, 110.0, 0.11, 2, 1, 0.0, 909.69),
    (3000, 1, -1, 2.0, 40.0, 0.08, 1, 0, 0.0, 989.61),
    (4000, 0, +1, 0.5, 120.0, 0.06, 0, 0, 0.5, 929.55),
]


def test_encoding_is_exact_and_documented():
    df = journal(BASE[:1])
    row = encode_rows(df, ["fill_id", "ts", "qty", "price"])[0]
    assert row == "\x1f".join(["p:BTC/USDT:1000:entry:0", "1000", (1.0).hex(), (100.0).hex()])
    expected = hashlib.sha256()
    for r in encode_rows(df.sort_values(["profile", "ts", "fill_id"]), [
        "fill_id", "profile", "symbol", "ts", "side", "qty", "price", "fee", "reason", "intrabar",
        "position_after", "cash_after",
    ]):
        expected.update(r.encode() + b"\x1e")
    assert run_fingerprint(df) == expected.hexdigest()


def test_ignores_source_run_id_and_row_order_but_not_one_ulp():
    df = journal(BASE)
    fp = run_fingerprint(df)
    other = df.assign(source="paper", run_id="daemon-xyz").iloc[::-1]
    assert run_fingerprint(other) == fp
    bumped = df.copy()
    bumped.loc[2, "price"] = np.nextafter(bumped.loc[2, "price"], np.inf)
    assert run_fingerprint(bumped) != fp
    neg_zero = df.copy()
    neg_zero.loc[2, "position_after"] = -0.0
    assert run_fingerprint(neg_zero) == fp  # -0.0 == 0.0: same value, same hash


def test_trades_agree_with_trades_table_and_hand_split():
    df = journal(BASE)
    tf = trade_fingerprints(df)
    tt = trades_table(df)
    assert len(tf) == len(tt) == 3
    assert list(tf["entry_ts"]) == list(tt["entry_ts"])
    assert list(tf["closed"]) == [True, True, False]
    assert list(tf["n_fills"]) == [2, 2, 1]
    ids = trade_ids(df)
    assert ids[0] == ids[2] == "p:BTC/USDT:1000"
    assert ids[1] == ids[3] == "p:ETH/USDT:1000"
    assert ids[4] == "p:BTC/USDT:4000"


def test_trade_hash_is_local():
    """Changing one trade changes only that trade's hash (cash_after is not in it)."""
    df = journal(BASE)
    a = trade_fingerprints(df).set_index("trade_id")["fingerprint"]
    changed = df.copy()
    changed.loc[3, "price"] = 41.0  # ETH exit
    changed.loc[[3, 4], "cash_after"] += 2.0
    b = trade_fingerprints(changed).set_index("trade_id")["fingerprint"]
    differ = sorted(a.index[a != b])
    assert differ == ["p:ETH/USDT:1000"]


def test_reversal_splits_trades():
    rows = [
        (1000, 0, +1, 1.0, 100.0, 0.1, 0, 0, 1.0, 900.0),
        (2000, 0, -1, 1.0, 90.0, 0.1, 1, 0, 0.0, 990.0),  # exit leg
        (2000, 0, -1, 1.0, 90.0, 0.1, 0, 0, -1.0, 1080.0),  # entry leg of the short
        (3000, 0, +1, 1.0, 80.0, 0.1, 1, 0, 0.0, 1000.0),
    ]
    df = journal(rows)
    tf = trade_fingerprints(df)
    assert list(tf["entry_ts"]) == [1000, 2000] and list(tf["n_fills"]) == [2, 2]
    assert len(trades_table(df)) == 2


def test_profiles_and_line():
    df = pd.concat([journal(BASE, "a"), journal(BASE[:2], "b")], ignore_index=True)
    per = profile_fingerprints(df)
    assert set(per) == {"a", "b"} and per["a"] == run_fingerprint(journal(BASE, "a"))
    line = fingerprint_line(df)
    assert line.startswith(f"fingerprint run={run_fingerprint(df)[:12]} fills=7 trades=5")
    assert f"a={per['a'][:12]}" in line
    empty = journal([])
    assert fingerprint_line(empty).endswith("fills=0 trades=0")


row_st = st.tuples(
    st.integers(1, 30), st.integers(0, 1), st.sampled_from([1, -1]),
    st.floats(0.001, 10), st.floats(0.5, 1000), st.floats(0, 1), st.integers(0, 5),
    st.integers(0, 3), st.floats(-5, 5), st.floats(0, 1e5),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(row_st, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_run_hash_permutation_invariant_and_trades_cover_all_fills(rows, rnd):
    rows = [(r[0] * 1000, *r[1:]) for r in rows]
    df = journal(rows)
    shuffled = df.sample(frac=1.0, random_state=rnd.randint(0, 2**31))
    assert run_fingerprint(shuffled) == run_fingerprint(df)
    tf = trade_fingerprints(df)
    assert tf["n_fills"].sum() == len(df)
    assert trade_fingerprints(shuffled)["fingerprint"].tolist() == tf["fingerprint"].tolist()

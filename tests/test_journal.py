"""The fills journal: one schema (pydantic + Arrow), CSV/Parquet round trips, fill ids,
and the derived trades table checked against hand arithmetic (against vectorbt's trade
records in ``test_engine_vbt.py``, which shares one vectorbt compile)."""

from __future__ import annotations

import typing

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tandem.core.engine import EngineConfig, run_batch
from tandem.core.engine.layout import N_FILL_COLS
from tandem.core.journal import (
    FILLS_SCHEMA,
    Fill,
    fills_frame,
    fills_to_models,
    read_csv,
    read_parquet,
    trades_table,
    write_csv,
    write_parquet,
)

HOUR = 3_600_000
ARROW_OF = {int: pa.int64(), float: pa.float64(), str: pa.string()}


def test_pydantic_model_and_arrow_schema_agree() -> None:
    fields = Fill.model_fields
    assert list(fields) == FILLS_SCHEMA.names
    for name, info in fields.items():
        ann = info.annotation
        py = str if typing.get_origin(ann) is typing.Literal else ann
        assert FILLS_SCHEMA.field(name).type == ARROW_OF[py], name


def sample_run(n: int = 400):
    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 2)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * 1.01
    lo = np.minimum(o, c) * 0.99
    sig = rng.choice([-1.0, 0.0, 1.0], size=(n, 2), p=[0.05, 0.9, 0.05])
    cfg = EngineConfig(
        stop_loss_pct=0.01,
        take_profit_pct=0.01,
        intrabar="adaptive",
        size_pct=0.5,
        slippage_bps=3.3,
        fee_rate=0.00075,
    )
    ts = (np.arange(n) + 1) * HOUR
    return run_batch(
        cfg,
        ts,
        o,
        h,
        lo,
        c,
        sig,
        symbols=["BTC/USDT", "ETH/USDT"],
        profile="crypto_rating_all",
        run_id="run-1",
    )


def test_frame_dtypes_and_models() -> None:
    f = sample_run().fills
    assert len(f) > 20 and (f["intrabar"] != "").any() and (f["intrabar"] == "").any()
    assert list(f.columns) == FILLS_SCHEMA.names
    for field in FILLS_SCHEMA:
        col = f[field.name]
        if field.type == pa.string():
            assert pd.api.types.is_string_dtype(col), field.name
        else:
            assert col.dtype == np.dtype(field.type.to_pandas_dtype()), field.name
    models = fills_to_models(f)
    assert models[0].fill_id == f["fill_id"].iloc[0]
    assert all(m.qty > 0 for m in models)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_is_exact(tmp_path, fmt: str) -> None:  # noqa: ANN001
    f = sample_run().fills
    path = tmp_path / f"fills.{fmt}"
    (write_csv if fmt == "csv" else write_parquet)(f, path)
    back = (read_csv if fmt == "csv" else read_parquet)(path)
    pd.testing.assert_frame_equal(back, f, check_exact=True)
    if fmt == "parquet":
        assert pq.read_schema(path).remove_metadata() == FILLS_SCHEMA
    else:
        # Plain pandas reads it too, floats bit-exact.
        plain = pd.read_csv(path, float_precision="round_trip")
        assert (plain["price"].to_numpy() == f["price"].to_numpy()).all()


def test_csv_bytes_are_pandas_to_csv_of_the_float_reprs(tmp_path) -> None:  # noqa: ANN001
    """The CSV is byte for byte what pandas writes for the same rows with each float as its
    shortest repr — including -0.0, NaN, an empty intrabar and a field that needs quoting."""
    f = sample_run().fills.copy()
    f.loc[0, "qty"] = -0.0
    f.loc[1, "price"] = np.nan
    f.loc[2, "fill_id"] = 'odd,"id"\nx'
    f.loc[3, "intrabar"] = ""
    ref = f.copy()
    for col in ("qty", "price", "fee", "position_after", "cash_after"):
        ref[col] = [repr(float(x)) for x in ref[col]]
    ref.to_csv(tmp_path / "ref.csv", index=False)
    write_csv(f, tmp_path / "ours.csv")
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_empty_journal_round_trips(tmp_path) -> None:  # noqa: ANN001
    f = fills_frame(np.empty((0, N_FILL_COLS)), ["A"], "p", "r", "paper")
    assert list(f.columns) == FILLS_SCHEMA.names and len(f) == 0
    write_parquet(f, tmp_path / "e.parquet")
    assert len(read_parquet(tmp_path / "e.parquet")) == 0


def test_fill_id_seq_counts_same_key() -> None:
    #         ts   asset side qty price fee reason intrabar pos  cash
    raw = np.array(
        [
            [7200, 0, 1, 1.0, 10.0, 0.0, 5, 0, 1.0, 90.0],
            [7200, 1, 1, 1.0, 10.0, 0.0, 5, 0, 1.0, 80.0],
            [7200, 0, 1, 1.0, 10.0, 0.0, 5, 0, 2.0, 70.0],
            [7200, 0, -1, 2.0, 10.0, 0.0, 2, 1, 0.0, 90.0],
        ]
    )
    f = fills_frame(raw, ["A/USDT", "B/USDT"], "prof", "r", "paper")
    assert list(f["fill_id"]) == [
        "prof:A/USDT:7200:rebalance:0",
        "prof:B/USDT:7200:rebalance:0",
        "prof:A/USDT:7200:rebalance:1",
        "prof:A/USDT:7200:stop_loss:0",
    ]
    assert list(f["intrabar"]) == ["", "", "", "pessimistic"]
    with pytest.raises(ValueError, match="source"):
        fills_frame(raw, ["A/USDT", "B/USDT"], "prof", "r", "live")


def test_trades_table_by_hand() -> None:
    raw = np.array(
        [
            # long: buy 2 @ 10 (fee .02), sell 2 @ 12 (fee .024)
            [1000, 0, 1, 2.0, 10.0, 0.02, 0, 0, 2.0, 79.98],
            [2000, 0, -1, 2.0, 12.0, 0.024, 3, 0, 0.0, 103.956],
            # short: sell 1 @ 50 (fee .05), buy 1 @ 40 (fee .04) -> +10 - .09
            [3000, 1, -1, 1.0, 50.0, 0.05, 0, 0, -1.0, 153.906],
            [5000, 1, 1, 1.0, 40.0, 0.04, 1, 0, 0.0, 113.866],
            # open long
            [6000, 0, 1, 1.0, 11.0, 0.0, 0, 0, 1.0, 102.866],
        ]
    )
    t = trades_table(fills_frame(raw, ["A", "B"], "p", "r", "backtest"))
    assert list(t["direction"]) == ["long", "short", "long"]
    assert t["pnl"].iloc[0] == pytest.approx(4.0 - 0.044)
    assert t["return"].iloc[0] == pytest.approx((4.0 - 0.044) / 20.0)
    assert t["pnl"].iloc[1] == pytest.approx(10.0 - 0.09)
    assert t["duration_ms"].iloc[1] == 2000
    assert t["exit_reason"].tolist()[:2] == ["take_profit", "exit"]
    assert np.isnan(t["pnl"].iloc[2]) and pd.isna(t["exit_ts"].iloc[2])
    # whole ms, missing for the open trade: Int64, not floats made of them by the NaN
    assert str(t["exit_ts"].dtype) == str(t["duration_ms"].dtype) == "Int64"
    assert t["exit_ts"].tolist()[:2] == [2000, 5000] and pd.isna(t["duration_ms"].iloc[2])


def test_trades_csv_writes_whole_ms_and_nothing_for_an_open_trade(tmp_path) -> None:
    """trades.csv printed ``exit_ts`` and ``duration_ms`` as ``2000.0`` (an open trade's
    NaN made the columns float): whole ms now, an empty field for the open trade, the text
    ``trades_table(fills).to_csv(index=False)`` gives."""
    from tandem.backtest.runner import _write_frame_csv
    from tandem.core.journal import trade_csv_columns, trade_rows

    raw = np.array([
        [1000, 0, 1, 2.0, 10.0, 0.02, 0, 0, 2.0, 79.98],
        [2000, 0, -1, 2.0, 12.0, 0.024, 3, 0, 0.0, 103.956],
        [6000, 0, 1, 1.0, 11.0, 0.0, 0, 0, 1.0, 102.866],  # open long
    ])
    fills = fills_frame(raw, ["A", "B"], "p", "r", "backtest")
    path = tmp_path / "trades.csv"
    _write_frame_csv(trade_csv_columns(trade_rows(fills)), path)
    text = path.read_text()
    assert text == trades_table(fills).to_csv(index=False)
    back = pd.read_csv(path)
    assert back["exit_ts"].tolist()[0] == 2000 and pd.isna(back["exit_ts"].iloc[1])
    rows = text.splitlines()
    head = rows[0].split(",")
    closed, open_ = rows[1].split(","), rows[2].split(",")
    for col, want in (("exit_ts", "2000"), ("duration_ms", "1000")):
        assert closed[head.index(col)] == want and open_[head.index(col)] == ""

"""The fills journal: one schema for backtest and paper, writers/readers, trades, equity.

The schema is defined once, here, as the pydantic model :class:`Fill` plus the Arrow schema
:data:`FILLS_SCHEMA` (same columns, same order; a test keeps them in step). Numeric fill
rows from the engine kernels become journal rows with :func:`fills_frame`; ``fill_id`` is
``{profile}:{symbol}:{ts}:{reason}:{seq}`` where ``seq`` counts earlier fills with the same
profile, symbol, ts and reason (0 for the first), so ids depend only on the fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from tandem.core.arrow_numpy import column_values, table_from_columns
from tandem.core.engine.layout import (
    F_ASSET,
    F_CASH_AFTER,
    F_FEE,
    F_INTRABAR,
    F_POS_AFTER,
    F_PRICE,
    F_QTY,
    F_REASON,
    F_SIDE,
    F_TS,
    REASON_NAMES,
)
from tandem.core.engine.params import INTRABAR_NAMES

# pandas and pyarrow are imported by the functions that use them: the daemon's hot path
# (fill_records) needs neither, and together they are ~100 MB of its resident memory.
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Reason = Literal["entry", "exit", "stop_loss", "take_profit", "trailing_stop", "rebalance"]


class Fill(BaseModel):
    """One journal row (DESIGN.md, "The fills journal")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fill_id: str
    source: Literal["backtest", "paper"]
    run_id: str
    profile: str
    symbol: str
    ts: int
    side: Literal["buy", "sell"]
    qty: float
    price: float
    fee: float
    reason: Reason
    intrabar: Literal["", "pessimistic", "ohlc", "adaptive"]
    position_after: float
    cash_after: float


#: The journal columns and their Arrow types (the fills contract, docs/CONTRACTS.md).
FILL_TYPES: tuple[tuple[str, str], ...] = (
    ("fill_id", "string"),
    ("source", "string"),
    ("run_id", "string"),
    ("profile", "string"),
    ("symbol", "string"),
    ("ts", "int64"),
    ("side", "string"),
    ("qty", "float64"),
    ("price", "float64"),
    ("fee", "float64"),
    ("reason", "string"),
    ("intrabar", "string"),
    ("position_after", "float64"),
    ("cash_after", "float64"),
)
FILL_COLUMNS: list[str] = [name for name, _ in FILL_TYPES]
#: Journal columns written as floats (shortest round-trip repr in CSV).
_FLOAT_COLUMNS = ("qty", "price", "fee", "position_after", "cash_after")


@cache
def fills_schema() -> pa.Schema:
    """The journal's Arrow schema (built on first use: pyarrow is imported lazily)."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in FILL_TYPES])


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: FILLS_SCHEMA / ARROW_SCHEMA, lazily
    if name in ("FILLS_SCHEMA", "ARROW_SCHEMA"):
        return fills_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_fill_id(profile: str, symbol: str, ts: int, reason: str, seq: int) -> str:
    """The deterministic id of a fill."""
    return f"{profile}:{symbol}:{ts}:{reason}:{seq}"


def empty_fills_frame() -> pd.DataFrame:
    """A zero-row journal frame with the schema's dtypes."""
    return fills_schema().empty_table().to_pandas()


def fill_records(
    raw: np.ndarray,
    symbols: Sequence[str],
    profile: str,
    run_id: str,
    source: Literal["backtest", "paper"],
) -> list[dict[str, Any]]:
    """Journal rows as plain dicts: :func:`fills_frame`'s mapping without the pandas round
    trip (~15 ms per call), for the daemon's one-slice-at-a-time path. The parity tests hold
    the two to bit-equality."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, str], int] = {}
    # Python floats in one C loop: indexing a numpy row returns numpy scalars (~12 per fill,
    # most of the mapping's time); the values are the same doubles.
    for f in raw.tolist():
        sym = symbols[int(f[F_ASSET])]
        ts = int(f[F_TS])
        reason = REASON_NAMES[int(f[F_REASON])]
        seq = seen.get((sym, ts, reason), 0)
        seen[(sym, ts, reason)] = seq + 1
        rows.append(
            {
                "fill_id": make_fill_id(profile, sym, ts, reason, seq),
                "source": source,
                "run_id": run_id,
                "profile": profile,
                "symbol": sym,
                "ts": ts,
                "side": "buy" if f[F_SIDE] > 0 else "sell",
                "qty": float(f[F_QTY]),
                "price": float(f[F_PRICE]),
                "fee": float(f[F_FEE]),
                "reason": reason,
                "intrabar": INTRABAR_NAMES[int(f[F_INTRABAR])],
                "position_after": float(f[F_POS_AFTER]),
                "cash_after": float(f[F_CASH_AFTER]),
            }
        )
    return rows


def fills_frame(
    raw: np.ndarray,
    symbols: Sequence[str],
    profile: str,
    run_id: str,
    source: Literal["backtest", "paper"],
) -> pd.DataFrame:
    """Journal rows (schema :data:`FILLS_SCHEMA`) from the engine's numeric fill rows."""
    return fills_table(raw, symbols, profile, run_id, source).to_pandas()


def fills_table(
    raw: np.ndarray,
    symbols: Sequence[str],
    profile: str,
    run_id: str,
    source: Literal["backtest", "paper"],
) -> pa.Table:
    """:func:`fills_frame` as an Arrow table: what the backtest command writes, without
    importing pandas (~0.3 s of a process that only writes files)."""
    if source not in ("backtest", "paper"):
        raise ValueError(f"source must be 'backtest' or 'paper', got {source!r}")
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, raw.shape[-1] if raw.ndim else 0)
    if raw.shape[0] == 0:
        return fills_schema().empty_table()
    asset = raw[:, F_ASSET].astype(np.int64)
    reason_code = raw[:, F_REASON].astype(np.int64)
    ts = raw[:, F_TS].astype(np.int64)
    sym = np.asarray(list(symbols), dtype=object)[asset]
    reason = np.asarray(REASON_NAMES, dtype=object)[reason_code]
    # seq = earlier fills with the same (symbol, ts, reason): a dict walk over the rows
    # (one pass, ~10x faster than a three-key pandas groupby().cumcount()).
    seen: dict[tuple[int, int, int], int] = {}
    seq = []
    for key in zip(asset.tolist(), ts.tolist(), reason_code.tolist(), strict=True):
        k = seen.get(key, 0)
        seen[key] = k + 1
        seq.append(k)
    n = raw.shape[0]
    columns = {
        "fill_id": [
            make_fill_id(profile, s, t, r, q)
            for s, t, r, q in zip(sym.tolist(), ts.tolist(), reason.tolist(), seq, strict=True)
        ],
        "source": [source] * n,
        "run_id": [run_id] * n,
        "profile": [profile] * n,
        "symbol": sym,
        "ts": ts,
        "side": np.where(raw[:, F_SIDE] > 0, "buy", "sell").astype(object),
        "qty": raw[:, F_QTY],
        "price": raw[:, F_PRICE],
        "fee": raw[:, F_FEE],
        "reason": reason,
        "intrabar": np.asarray(INTRABAR_NAMES, dtype=object)[raw[:, F_INTRABAR].astype(np.int64)],
        "position_after": raw[:, F_POS_AFTER],
        "cash_after": raw[:, F_CASH_AFTER],
    }
    return table_from_columns(columns, fills_schema())


def _conform(df: pd.DataFrame) -> pd.DataFrame:
    """Column order and dtypes exactly as the Arrow schema (object strings, int64, float64)."""
    import pyarrow as pa

    missing = [c for c in FILL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"fills frame lacks columns {missing}")
    return pa.Table.from_pandas(
        df[FILL_COLUMNS], schema=fills_schema(), preserve_index=False
    ).to_pandas()


def fills_to_models(df: pd.DataFrame) -> list[Fill]:
    """Validated :class:`Fill` models from a journal frame."""
    return [Fill(**rec) for rec in df[FILL_COLUMNS].to_dict("records")]


def write_parquet(fills: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a journal (frame or Arrow table) to Parquet with the canonical schema.

    Only the Arrow schema is stored, not pandas' description of a frame: the same fills
    give the same file whether they came as a frame or a table, whichever pandas version
    is installed (a frame read back has a RangeIndex and the schema's dtypes either way).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(fills, pa.Table):
        table = fills.select(FILL_COLUMNS)
        if not table.schema.equals(fills_schema()):  # cast imports pyarrow.compute (~0.1 s)
            table = table.cast(fills_schema())
    else:
        table = pa.Table.from_pandas(fills[FILL_COLUMNS], schema=fills_schema(),
                                     preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a journal Parquet file; the schema is enforced."""
    import pyarrow.parquet as pq

    # read_table(schema=...) fills a column the file lacks with nulls: a journal without
    # its fee column read as NaN fees (every fill a 'logic' difference in reconcile)
    missing = [c for c in FILL_COLUMNS if c not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"fills lack columns {missing}")
    table = pq.read_table(path, schema=fills_schema())
    return table.to_pandas()


def write_csv(fills: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a journal (frame or Arrow table) to CSV. Floats use the shortest repr that
    round-trips exactly.

    Python's csv writer (minimal quoting, ``\\n`` line ends) — what ``DataFrame.to_csv``
    runs underneath, without its per-block formatting, which cost ~10x the writing itself.
    """
    import csv

    columns = []
    for col in FILL_COLUMNS:
        values = column_values(fills, col)
        if col in _FLOAT_COLUMNS:
            values = values.astype(np.float64)
        columns.append(values.tolist())  # Python floats print as their shortest repr
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(FILL_COLUMNS)
        writer.writerows(zip(*columns, strict=True))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a journal CSV back with the canonical dtypes (empty ``intrabar`` stays ``""``)."""
    import pyarrow.csv as pa_csv

    convert = pa_csv.ConvertOptions(
        column_types=fills_schema(),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    table = pa_csv.read_csv(path, convert_options=convert)
    return table.select(FILL_COLUMNS).cast(fills_schema()).to_pandas()


# ------------------------------------------------------------------------------------------
# Derived tables


#: The columns of a trades table, in order.
TRADE_COLUMNS: list[str] = [
    "symbol", "direction", "entry_ts", "exit_ts", "qty", "entry_price", "exit_price", "fees",
    "pnl", "return", "duration_ms", "exit_reason",
]


#: Whole milliseconds that an unfinished trade lacks: nullable integers (pandas ``Int64``)
#: in :func:`trades_table` and ``trades.csv`` (``1612137600000``, empty when open), not the
#: floats a NaN made of them (``1612137600000.0``).
TRADE_INT_COLUMNS: tuple[str, ...] = ("exit_ts", "duration_ms")


def trades_table(fills: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """Round trips per symbol: from a flat position back to flat (or through zero).

    Columns: ``symbol, direction (long/short), entry_ts, exit_ts, qty, entry_price``
    (VWAP of the fills that grew the position), ``exit_price`` (VWAP of those that shrank
    it), ``fees, pnl`` (quote, net of all fees), ``return`` (pnl / entry notional),
    ``duration_ms, exit_reason``. An unfinished trade has missing exit fields (NaN; ``<NA>``
    in the ``Int64`` columns ``exit_ts`` and ``duration_ms``) and is kept.
    Rows in ``(entry_ts, symbol)`` order.
    """
    return trades_frame(trade_rows(fills))


def trades_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """:func:`trade_rows` as the :func:`trades_table` frame (``exit_ts``, ``duration_ms``:
    ``Int64``)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    for col in TRADE_INT_COLUMNS:
        frame[col] = frame[col].astype("Int64")
    return frame


def trade_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """:func:`trade_rows` as NumPy columns for computing (stats, the report), without
    pandas: ``exit_ts`` and ``duration_ms`` are float there (NaN for an open trade); see
    :func:`trade_csv_columns` for what ``trades.csv`` prints."""
    out: dict[str, np.ndarray] = {}
    for col in TRADE_COLUMNS:
        values = [r[col] for r in rows]
        text = col in ("symbol", "direction", "exit_reason")
        out[col] = np.array(values, dtype=object if text else None)
    return out


def trade_csv_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """:func:`trade_columns` with ``exit_ts`` and ``duration_ms`` as whole numbers (None
    for an open trade): the columns ``trades.csv`` is written from, the text
    ``trades_table(fills).to_csv(index=False)`` gives."""
    out = trade_columns(rows)
    for col in TRADE_INT_COLUMNS:
        out[col] = np.array([None if v != v else int(v) for v in out[col].tolist()],
                            dtype=object)
    return out


def trade_rows(fills: pd.DataFrame | pa.Table) -> list[dict[str, Any]]:
    """The rows of :func:`trades_table` as dicts (pandas is not needed to build them)."""
    # Plain Python lists, not groupby + itertuples: ~10x faster on a year of fills (the
    # per-row pandas access dominated the backtest's post-processing); same values, same
    # order of float additions.
    n = len(fills)
    cols_in = ("symbol", "ts", "side", "qty", "price", "fee", "reason", "position_after")
    sym, ts, side, qty, price, fee, reason, pos_after = (
        column_values(fills, c).tolist() if n else [] for c in cols_in
    )
    groups: dict[str, list[int]] = {}  # symbol -> its rows; dicts keep first-seen order
    for k, s in enumerate(sym):
        if isinstance(s, str):  # groupby's rule: rows without a symbol belong to no trade
            groups.setdefault(s, []).append(k)
    rows: list[dict] = []
    for symbol, idx in groups.items():
        cur: dict | None = None
        for k in idx:
            q = qty[k]
            signed = q if side[k] == "buy" else -q
            if cur is None:
                cur = _new_trade(symbol, ts[k], 1.0 if signed > 0 else -1.0)
            if (signed > 0) == (cur["_dir"] > 0):  # the fill grows the trade
                cur["_in_qty"] += q
                cur["_in_val"] += q * price[k]
            else:
                cur["_out_qty"] += q
                cur["_out_val"] += q * price[k]
                cur["exit_reason"] = reason[k]
                cur["exit_ts"] = ts[k]
            cur["fees"] += fee[k]
            if pos_after[k] == 0.0:
                rows.append(_finish_trade(cur))
                cur = None
        if cur is not None:
            rows.append(_finish_trade(cur, open_=True))
    # (entry_ts, symbol), ties in first-seen order: a stable sort, as the table always had.
    rows.sort(key=lambda r: (r["entry_ts"], r["symbol"]))
    return rows


def _new_trade(symbol: str, ts: int, direction: float) -> dict:
    return {
        "symbol": symbol,
        "_dir": direction,
        "entry_ts": ts,
        "exit_ts": np.nan,
        "_in_qty": 0.0,
        "_in_val": 0.0,
        "_out_qty": 0.0,
        "_out_val": 0.0,
        "fees": 0.0,
        "exit_reason": "",
    }


def _finish_trade(t: dict, open_: bool = False) -> dict:
    entry_price = t["_in_val"] / t["_in_qty"]
    exit_price = t["_out_val"] / t["_out_qty"] if t["_out_qty"] > 0 else np.nan
    if open_:
        pnl = np.nan
        ret = np.nan
        exit_ts = np.nan
    else:
        gross = (t["_out_val"] - t["_in_val"]) * t["_dir"]
        pnl = gross - t["fees"]
        ret = pnl / t["_in_val"]
        exit_ts = t["exit_ts"]
    return {
        "symbol": t["symbol"],
        "direction": "long" if t["_dir"] > 0 else "short",
        "entry_ts": t["entry_ts"],
        "exit_ts": exit_ts,
        "qty": t["_in_qty"],
        "entry_price": entry_price,
        "exit_price": exit_price,
        "fees": t["fees"],
        "pnl": pnl,
        "return": ret,
        "duration_ms": exit_ts - t["entry_ts"] if not open_ else np.nan,
        "exit_reason": t["exit_reason"] if not open_ else "",
    }


def equity_series(
    fills: pd.DataFrame,
    ts_close: np.ndarray,
    closes: pd.DataFrame | np.ndarray,
    symbols: Sequence[str],
    initial_cash: float,
) -> pd.Series:
    """Equity per bar rebuilt from the journal alone: last ``cash_after`` + Σ position × close.

    ``closes`` is ``n_bars x n_assets`` (columns in ``symbols`` order); a missing close
    (NaN) values the position at the asset's last known close, as the engine does.
    """
    import pandas as pd

    ts_close = np.asarray(ts_close, dtype=np.int64)
    close = np.asarray(closes, dtype=np.float64)
    close_ff = pd.DataFrame(close).ffill().to_numpy()
    cash = np.full(ts_close.shape[0], float(initial_cash))
    pos = np.zeros_like(close_ff)
    if len(fills):
        # The last fill of a bar holds that bar's closing cash / position.
        last = fills.groupby("ts", sort=True).tail(1)
        idx = np.searchsorted(ts_close, last["ts"].to_numpy())
        cash_at = pd.Series(last["cash_after"].to_numpy(), index=idx)
        cash = (
            pd.Series(cash_at).reindex(range(len(ts_close))).ffill().fillna(initial_cash).to_numpy()
        )
        for j, sym in enumerate(symbols):
            fs = fills[fills["symbol"] == sym].groupby("ts", sort=True).tail(1)
            if not len(fs):
                continue
            k = np.searchsorted(ts_close, fs["ts"].to_numpy())
            s = pd.Series(fs["position_after"].to_numpy(), index=k)
            pos[:, j] = s.reindex(range(len(ts_close))).ffill().fillna(0.0).to_numpy()
    held = np.where(pos != 0.0, pos * close_ff, 0.0).sum(axis=1)
    return pd.Series(cash + held, index=pd.Index(ts_close, name="ts"), name="equity")

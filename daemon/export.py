"""Export the daemon's fills journal to CSV and Parquet, in the backtest's schema."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from daemon.state import JOURNAL_COLUMNS, StateStore

_ARROW = {
    "ts": pa.int64(), "qty": pa.float64(), "price": pa.float64(), "fee": pa.float64(),
    "position_after": pa.float64(), "cash_after": pa.float64(),
}


def journal_arrow_schema() -> pa.Schema:
    """Arrow schema of the journal; the core's, when the core defines one."""
    try:  # one definition of the schema lives in core; fall back to DESIGN.md's table
        from core.journal import ARROW_SCHEMA  # type: ignore[attr-defined]

        return ARROW_SCHEMA
    except Exception:  # noqa: BLE001 - any import/attr problem means "no core schema yet"
        return pa.schema([(c, _ARROW.get(c, pa.string())) for c in JOURNAL_COLUMNS])


def write_journal(df: pd.DataFrame, out_dir: Path, stem: str = "fills") -> list[Path]:
    """Write ``df`` as ``stem.csv`` and ``stem.parquet`` via temp files + atomic rename,
    so a reader never sees a half-written export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = df[list(JOURNAL_COLUMNS)]
    csv_path, pq_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.parquet"
    tmp_csv, tmp_pq = csv_path.with_suffix(".csv.tmp"), pq_path.with_suffix(".parquet.tmp")
    df.to_csv(tmp_csv, index=False)
    table = pa.Table.from_pandas(df, schema=journal_arrow_schema(), preserve_index=False)
    pq.write_table(table, tmp_pq)
    os.replace(tmp_csv, csv_path)
    os.replace(tmp_pq, pq_path)
    return [csv_path, pq_path]


def export_fills(store: StateStore, out_dir: Path) -> list[Path]:
    """Export the whole journal held in ``store``."""
    return write_journal(store.fills_frame(), Path(out_dir))

"""Export the daemon's fills journal to CSV and Parquet with the core's journal writers —
the same schema and float formatting as the backtest's ``fills.csv``/``fills.parquet``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.core.journal import write_csv, write_parquet
from tandem.daemon.state import StateStore

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def write_journal(df: pd.DataFrame | pa.Table, out_dir: Path, stem: str = "fills") -> list[Path]:
    """Write ``df`` as ``stem.csv`` and ``stem.parquet`` via temp files + atomic rename,
    so a reader never sees a half-written export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, pq_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.parquet"
    tmp_csv, tmp_pq = out_dir / f".{stem}.csv.tmp", out_dir / f".{stem}.parquet.tmp"
    try:
        write_csv(df, tmp_csv)
        write_parquet(df, tmp_pq)
        os.replace(tmp_csv, csv_path)
        os.replace(tmp_pq, pq_path)
    except BaseException:
        # A failed write (disk full...) must not leave hidden half files to pile up.
        for tmp in (tmp_csv, tmp_pq):
            if tmp.is_file():
                tmp.unlink()
        raise
    return [csv_path, pq_path]


def export_fills(store: StateStore, out_dir: Path) -> list[Path]:
    """Export the whole journal held in ``store``."""
    return write_journal(store.fills_table(), Path(out_dir))

"""Export the daemon's fills journal to CSV and Parquet with the core's journal writers —
the same schema and float formatting as the backtest's ``fills.csv``/``fills.parquet``."""

from __future__ import annotations

import os
import uuid
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
    # Temporary names of this writer only: with fixed ones, a second export into the same
    # folder at once (the daemon's --export-dir and a user's export-fills, two cron jobs)
    # truncated the first one's half-written file and renamed it away: a mixed fills.csv.
    tmp_csv = _own_temp(out_dir, f".{stem}.csv.")
    try:
        tmp_pq = _own_temp(out_dir, f".{stem}.parquet.")
    except BaseException:
        tmp_csv.unlink(missing_ok=True)
        raise
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


def _own_temp(folder: Path, prefix: str) -> Path:
    """A new empty file in ``folder`` that no other writer uses (created exclusively; mode
    0666 less the umask, as a plain ``open`` gives the export: mkstemp's 0600 would hide it
    from another user's reader)."""
    while True:
        path = folder / f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path


def export_fills(store: StateStore, out_dir: Path) -> list[Path]:
    """Export the whole journal held in ``store``."""
    return write_journal(store.fills_table(), Path(out_dir))

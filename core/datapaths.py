"""What a candle-data path is, told from the path alone (no pandas/pyarrow: the live daemon
checks its ``TANDEM_DATA_DIR`` with it and imports the store only when it uses one)."""

from __future__ import annotations

from pathlib import Path


def reads_as_csv_folder(path: str | Path, exchange: str | None = None) -> bool:
    """True when :func:`tandem.core.store.open_candles` reads ``path`` as a CSV folder: a
    folder holding ``*.csv`` and no ``<exchange>/`` store folder. A writer of the candle
    store (``download``, the daemon's warm-up tail) must not create ``<exchange>/`` there:
    from then on every reader took the folder for a store holding only those few bars, and
    a backtest of the CSVs silently ran on them instead."""
    p = Path(path)
    return p.is_dir() and not (p / (exchange or "binance")).is_dir() and any(p.glob("*.csv"))

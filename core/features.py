"""Wide feature matrix: one row per (asset, base bar) with every timeframe's ratings and
component votes — the input a research model would use — written to Parquet.

Columns: ``symbol``, ``ts`` (bar open, ms), ``ts_close``, then for each timeframe ``tf``
(base first) ``rating_ma_<tf>``, ``rating_osc_<tf>``, ``rating_all_<tf>`` (float64) and
``vote_<name>_<tf>`` for every ``VOTE_NAMES`` entry (float32: -1/0/+1/NaN are exact), and
the combiner's ``score``, ``signal`` (int8) and ``target`` for the profile. HTF columns
hold the last *closed* values, exactly what the strategy saw at that bar's close. Rows
where the asset has no bar are left out.

Assets are processed in chunks so the whole universe fits in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tandem.core.mtf import MtfConfig, compute_mtf_ratings, use_htf_mask
from tandem.core.ratings import N_RATING_OUT, OUT_VOTES, VOTE_NAMES
from tandem.core.signals import compute_signals

if TYPE_CHECKING:
    from tandem.core.manifest import Profile

RATING_NAMES = ("rating_ma", "rating_osc", "rating_all")


def feature_columns(timeframes: Sequence[str]) -> list[str]:
    """Names of the per-timeframe feature columns, in file order."""
    cols = []
    for tf in timeframes:
        cols += [f"{r}_{tf}" for r in RATING_NAMES]
        cols += [f"vote_{v}_{tf}" for v in VOTE_NAMES]
    return cols


def wide_frame(
    profile: Profile,
    symbols: Sequence[str],
    ts: np.ndarray,
    close: np.ndarray,
    ratings: np.ndarray,
    signal: np.ndarray | None = None,
    score: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long/wide frame from MTF output ``ratings`` ``(n_bars, n_assets, n_tf, N_RATING_OUT)``."""
    n_bars, n_assets, n_tf, k = ratings.shape
    if k != N_RATING_OUT:
        raise ValueError("feature export needs the votes: compute_mtf_ratings(..., votes=True)")
    base_ms = MtfConfig.from_profile(profile).base_ms
    have = ~np.isnan(close)  # (n_bars, n_assets)
    # asset-major rows: (asset 0: all bars), (asset 1: ...)
    rows = np.transpose(have).reshape(-1)
    data: dict[str, np.ndarray] = {
        "symbol": np.repeat(np.asarray(symbols, dtype=object), n_bars)[rows],
        "ts": np.tile(ts, n_assets)[rows],
        "ts_close": np.tile(ts + base_ms, n_assets)[rows],
    }
    flat = np.transpose(ratings, (1, 0, 2, 3)).reshape(n_assets * n_bars, n_tf, k)[rows]
    for f, tf in enumerate(profile.timeframes):
        for c, name in enumerate(RATING_NAMES):
            data[f"{name}_{tf}"] = flat[:, f, c]
        for v, name in enumerate(VOTE_NAMES):
            data[f"vote_{name}_{tf}"] = flat[:, f, OUT_VOTES + v].astype(np.float32)
    for name, arr in (("score", score), ("signal", signal), ("target", target)):
        if arr is not None:
            data[name] = np.transpose(arr).reshape(-1)[rows]
    return pd.DataFrame(data)


def export_features(
    profile: Profile,
    path: str | Path,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    symbols: Sequence[str] | None = None,
    *,
    chunk_assets: int = 16,
) -> int:
    """Compute the profile's MTF ratings with votes and write the wide matrix to Parquet.

    Candles are aligned arrays (``ts`` bar open times; prices ``(n_bars, n_assets)`` in
    ``symbols`` order, default ``profile.assets``). Returns the number of rows written.
    Portfolio targets are normalised over all assets, so signals are computed on the whole
    set first (ratings only), then features per chunk of assets.
    """
    syms = list(profile.assets if symbols is None else symbols)
    ts = np.asarray(ts, dtype=np.int64)
    prices = [np.asarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    cfg = MtfConfig.from_profile(profile)
    mask = use_htf_mask(profile, syms)
    ratings, _ = compute_mtf_ratings(cfg, ts, *prices, mask)
    sig = compute_signals(profile, ratings, ts + cfg.base_ms, syms)
    del ratings
    writer: pq.ParquetWriter | None = None
    n_rows = 0
    try:
        for a in range(0, len(syms), chunk_assets):
            b = min(a + chunk_assets, len(syms))
            part = [p[:, a:b] for p in prices]
            r, _ = compute_mtf_ratings(cfg, ts, *part, mask[a:b], votes=True)
            frame = wide_frame(
                profile, syms[a:b], ts, part[3], r,
                sig.signal[:, a:b], sig.score[:, a:b], sig.target[:, a:b],
            )
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                # A first chunk without a bar types ``symbol`` as null from its empty
                # object column: the file's schema names it a string, or the next chunk's
                # names would not fit it.
                i = table.schema.get_field_index("symbol")
                writer = pq.ParquetWriter(str(path), table.schema.set(i, pa.field("symbol", pa.string())))
            writer.write_table(table.cast(writer.schema))
            n_rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return n_rows

"""Wide feature matrix export: Parquet layout, rows, and values restated from the votes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tandem.core.features import RATING_NAMES, export_features, feature_columns
from tandem.core.manifest import parse_manifest
from tandem.core.ratings import N_MA_VOTES, VOTE_NAMES
from tandem.core.signals import signals_from_candles

from tests.conftest import REPO_ROOT

DOC = json.loads((REPO_ROOT / "manifest.json").read_text())
H = 3_600_000


def _synthetic(n=24 * 40, n_assets=5, seed=4):
    rng = np.random.default_rng(seed)
    ts = (np.arange(n) + 24 * 18_000) * H
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, n_assets)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * 1.004
    lo = np.minimum(o, c) * 0.996
    v = rng.random(c.shape) * 10 + 1
    for a in (o, h, lo, c, v):
        a[rng.random(c.shape) < 0.02] = np.nan
    return ts, [o, h, lo, c, v]


def test_export_roundtrip(tmp_path: Path) -> None:
    prof = parse_manifest(DOC).profile("crypto_rating_all_portfolio")
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOGE/USDT"]  # 3 core + 2 base-only
    ts, p = _synthetic()
    path = tmp_path / "features.parquet"
    n = export_features(prof, path, ts, *p, symbols=syms, chunk_assets=2)
    table = pq.read_table(path)
    df = table.to_pandas()
    assert n == len(df) == int((~np.isnan(p[3])).sum())
    assert list(df.columns) == ["symbol", "ts", "ts_close", *feature_columns(prof.timeframes), "score", "signal", "target"]
    assert len(feature_columns(prof.timeframes)) == 3 * (3 + len(VOTE_NAMES))
    assert (df["ts_close"] - df["ts"] == H).all()
    # Ratings restated from the exported votes (RATINGS.md: means of available votes).
    for tf in prof.timeframes:
        votes = df[[f"vote_{v}_{tf}" for v in VOTE_NAMES]].to_numpy(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN, as specified
            ma = np.nanmean(votes[:, :N_MA_VOTES], axis=1)
            osc = np.nanmean(votes[:, N_MA_VOTES:], axis=1)
        both = np.where(np.isnan(ma), osc, np.where(np.isnan(osc), ma, (ma + osc) / 2))
        for name, ref in zip(RATING_NAMES, (ma, osc, both), strict=True):
            np.testing.assert_allclose(df[f"{name}_{tf}"], ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    # base-only assets carry no HTF columns
    non_core = df["symbol"].isin(["ADA/USDT", "DOGE/USDT"])
    assert df.loc[non_core, "rating_all_4h"].isna().all()
    assert df.loc[~non_core, "rating_all_1d"].notna().any()
    # signals are the same ones the pipeline produces, on the same (asset, bar)
    _, s, _ = signals_from_candles(prof, ts, *p, symbols=syms)
    for j, sym in enumerate(syms):
        rows = df[df["symbol"] == sym]
        have = ~np.isnan(p[3][:, j])
        assert np.array_equal(rows["ts"].to_numpy(), ts[have])
        assert np.array_equal(rows["signal"].to_numpy(), s.signal[have, j])
        assert np.array_equal(rows["target"].to_numpy(), s.target[have, j], equal_nan=True)


def test_export_when_the_first_chunk_of_assets_has_no_bar(tmp_path: Path) -> None:
    """A chunk without a single bar (assets listed later than the range) typed the file's
    ``symbol`` column as null, and the next chunk's names did not fit it: a traceback."""
    prof = parse_manifest(DOC).profile("crypto_rating_all_portfolio")
    syms = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "DOGE/USDT"]
    ts, p = _synthetic()
    for a in p:
        a[:, :2] = np.nan  # the first chunk (2 assets) has no bar at all
    path = tmp_path / "features.parquet"
    n = export_features(prof, path, ts, *p, symbols=syms, chunk_assets=2)
    df = pq.read_table(path).to_pandas()
    assert n == len(df) == int((~np.isnan(p[3])).sum()) > 0
    assert set(df["symbol"]) == {"SOL/USDT", "ADA/USDT", "DOGE/USDT"}

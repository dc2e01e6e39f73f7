"""Figures for issue 4: MTF batch throughput, slice step latency, warm-up sensitivity.

Run from the repo root: ``.venv/bin/python bench/mtf.py``. Needs the real universe in
``../shared/data`` (or ``$TANDEM_TEST_DATA``).
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, ".")
DATA = Path(
    os.environ.get("TANDEM_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
from tandem.core.aggregate import aggregate_candles  # noqa: E402
from tandem.core.lookahead import warmup_sensitivity  # noqa: E402
from tandem.core.manifest import load_manifest  # noqa: E402
from tandem.core.mtf import MtfConfig, MtfRatingStates, compute_mtf_ratings  # noqa: E402

if not (DATA / "binance_USDT_1h_universe.parquet").exists():
    sys.exit(f"needs {DATA}/binance_USDT_1h_universe.parquet (set TANDEM_TEST_DATA)")

df = pd.read_parquet(DATA / "binance_USDT_1h_universe.parquet")
syms = sorted(df.symbol.unique())
w = {
    c: df.pivot(index="timestamp", columns="symbol", values=c)[syms]
    for c in ("open", "high", "low", "close", "volume")
}
ts = w["close"].index.to_numpy(np.int64)
P = [w[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]
cfg = MtfConfig("1h", ["4h", "1d"])
compute_mtf_ratings(cfg, ts[:50], *(x[:50] for x in P))  # compile
for _ in range(2):
    t = time.perf_counter()
    r, _ = compute_mtf_ratings(cfg, ts, *P)
    dt = time.perf_counter() - t
    print(
        f"MTF batch 1h+4h+1d, {len(syms)} assets x {len(ts)} bars: {dt:.2f} s = {len(syms) * len(ts) / dt / 1e3:.0f}k asset-bars/s"
    )
m = MtfRatingStates("1h", ["4h", "1d"], [True] * len(syms))
m.step_slice(ts[0], *(x[0] for x in P))
t = time.perf_counter()
n = 500
for i in range(1, n + 1):
    m.step_slice(ts[i], *(x[i] for x in P))
print(
    f"MtfRatingStates.step_slice, {len(syms)} assets: {(time.perf_counter() - t) / n * 1e3:.2f} ms per slice; checkpoint {len(m.to_bytes()) / 1e6:.1f} MB"
)
prof = load_manifest("manifest.json").profile("crypto_rating_all")
print("derived warmup_bars crypto_rating_all:", prof.warmup)
t = time.perf_counter()
aggregate_candles(pd.read_csv(DATA / "binance_BTC-USDT_5m.csv"), "5m", "1h")
print(f"aggregate 65.7k 5m bars -> 1h: {(time.perf_counter() - t) * 1e3:.0f} ms (incl. CSV read)")
core = prof.core_assets
idx = [syms.index(s) for s in core]
q = [x[:, idx] for x in P]
start = 24 * 150
recs = warmup_sensitivity(
    prof,
    ts[: start + 24 * 60],
    *(x[: start + 24 * 60] for x in q),
    start=start,
    lengths=[24 * 5, 24 * 20, 24 * 50, 24 * 100, 24 * 150],
    symbols=core,
)
print(
    "warm-up sensitivity (BTC/ETH/SOL/XRP, rating_all, eval 60 days from day 150, baseline 150 days):"
)
print(pd.DataFrame(recs).to_string(index=False))

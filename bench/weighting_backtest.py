"""Issue 17: a 100-asset × 1-year portfolio backtest (1h bars, daily rebalancing) per
weighting, warm (second run, kernels compiled), against the ``score`` weighting's time.

Run from the repo root: ``.venv/bin/python bench/weighting_backtest.py``. Synthetic candles
(backtest.demo_data); the shipped ``crypto_rating_all`` profile with 100 assets, a 200-bar
warm-up and ``execution.mode = portfolio``. Target: each weighting within 1.3× of score.
"""

import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/weighting.py
import numpy as np  # noqa: E402

sys.path.insert(0, ".")
from backtest.demo_data import generate_candles  # noqa: E402
from backtest.runner import run_backtest  # noqa: E402
from core.manifest import load_manifest  # noqa: E402
from core.store import AlignedCandles  # noqa: E402

N, BARS, WARM = 100, 24 * 365, 200
syms = [f"A{i:03d}/USDT" for i in range(N)]
c = generate_candles(syms, start="2024-01-01", n_bars=BARS + WARM, seed=5)
ts = c[syms[0]]["ts"].to_numpy(np.int64)
a = AlignedCandles(ts=ts, symbols=tuple(syms), **{
    k: np.column_stack([c[s][k].to_numpy(np.float64) for s in syms])
    for k in ("open", "high", "low", "close", "volume")})
doc = json.loads(Path("manifest.json").read_text())
base = doc["profiles"]["crypto_rating_all"]
tmp = Path(tempfile.mkdtemp())
times = {}
for weighting in ("score", "equal", "inverse_vol", "min_variance", "risk_parity", "hrp"):
    p = copy.deepcopy(base)
    p.update(core_assets=syms[:4], universe=syms, warmup_bars=WARM)
    p["execution"]["mode"] = "portfolio"
    p["portfolio"] = {"rebalance_every": "1d", "max_weight": 0.05}
    if weighting != "score":
        p["portfolio"].update(weighting=weighting, lookback=168)
    f = tmp / f"{weighting}.json"
    f.write_text(json.dumps({"version": 1, "default_profile": "b", "profiles": {"b": p}}))
    prof = load_manifest(f).profile("b")
    for _ in range(2):  # the second run is warm
        t0 = time.perf_counter()
        res = run_backtest(prof, a, start=int(ts[WARM]), report=False, progress=False)
        times[weighting] = time.perf_counter() - t0
    print(f"{weighting:12s} {times[weighting]:7.2f} s  ({times[weighting] / times['score']:.2f}x score)"
          f"  fills {len(res.fills)}  ratings+signals+weights {res.timings['ratings_signals']:.2f} s",
          flush=True)

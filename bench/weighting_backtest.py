"""Issue 17: a 100-asset × 1-year portfolio backtest (1h bars, daily rebalancing) per
weighting, warm (kernels compiled; the best of ``REPS`` rounds, as the machine is shared),
against the ``score`` weighting's time.

Run from the repo root: ``.venv/bin/python bench/weighting_backtest.py``. Synthetic candles
(tandem.backtest.demo_data); the shipped ``crypto_rating_all`` profile with 100 assets, a 200-bar
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
from tandem.backtest.demo_data import generate_candles  # noqa: E402
from tandem.backtest.runner import run_backtest  # noqa: E402
from tandem.core.manifest import load_manifest  # noqa: E402
from tandem.core.store import AlignedCandles  # noqa: E402

N, BARS, WARM, REPS = 100, 24 * 365, 200, 7
syms = [f"A{i:03d}/USDT" for i in range(N)]
c = generate_candles(syms, start="2024-01-01", n_bars=BARS + WARM, seed=5)
ts = c[syms[0]]["ts"].to_numpy(np.int64)
a = AlignedCandles(ts=ts, symbols=tuple(syms), **{
    k: np.column_stack([c[s][k].to_numpy(np.float64) for s in syms])
    for k in ("open", "high", "low", "close", "volume")})
doc = json.loads(Path("manifest.json").read_text())
base = doc["profiles"]["crypto_rating_all"]
tmp = Path(tempfile.mkdtemp())
profiles = {}
for weighting in ("score", "equal", "inverse_vol", "min_variance", "risk_parity", "hrp"):
    p = copy.deepcopy(base)
    p.update(core_assets=syms[:4], universe=syms, warmup_bars=WARM)
    p["execution"]["mode"] = "portfolio"
    p["portfolio"] = {"rebalance_every": "1d", "max_weight": 0.05}
    if weighting != "score":
        p["portfolio"].update(weighting=weighting, lookback=168)
    f = tmp / f"{weighting}.json"
    f.write_text(json.dumps({"version": 1, "default_profile": "b", "profiles": {"b": p}}))
    profiles[weighting] = load_manifest(f).profile("b")
    run_backtest(profiles[weighting], a, start=int(ts[WARM]), report=False, progress=False)
# Rounds over all weightings (not one weighting's runs back to back): load from the other
# sessions drifts, and each weighting should see the same drift.
times = {w: [] for w in profiles}
fills = {}
for _ in range(REPS):
    for weighting, prof in profiles.items():
        t0 = time.perf_counter()
        res = run_backtest(prof, a, start=int(ts[WARM]), report=False, progress=False)
        times[weighting].append((time.perf_counter() - t0, res.timings["ratings_signals"]))
        fills[weighting] = len(res.fills)
score = min(times["score"])[0]
for weighting, ts_ in times.items():
    best, rs = min(ts_)
    print(f"{weighting:12s} {best:7.2f} s  ({best / score:.2f}x score)  fills {fills[weighting]}"
          f"  ratings+signals+weights {rs:.2f} s", flush=True)

"""Issue 17: one portfolio rebalance for 126 assets in the daemon's slice step.

Run from the repo root: ``.venv/bin/python bench/weighting.py``. Times
:func:`tandem.core.weighting.weights_step_nb` — exactly the call ``tandem.daemon.strategy.ProfileStepper``
makes per trading slice — on a rebalance slice (window update + weights), per weighting,
with a full return window (lookback 252 base bars). Synthetic prices: the cost does not
depend on the values. Target: < 2 ms per rebalance. ``max_weight`` 0.25.
"""

import os
import sys
import time

# min_variance / risk_parity call BLAS (np.dot in numba -> scipy's OpenBLAS) on small
# matrices: its thread pool thrashes on a busy 2-core box (Ledoit-Wolf 0.5 ms -> 30 ms).
# One BLAS thread is the setting to run the daemon with; override to compare.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, ".")
from tandem.core.weighting import WEIGHTINGS, new_weight_state, weights_step_nb  # noqa: E402

N, LOOKBACK, REPS = 126, 252, 2000
rng = np.random.default_rng(0)
closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (LOOKBACK + 2 + REPS, N)), axis=0))
sig = np.ones(N, dtype=np.int8)
for name, method in WEIGHTINGS.items():
    state = new_weight_state(N, LOOKBACK)
    target = np.full(N, 1.0 / N)
    for t in range(LOOKBACK + 2):  # fill the window (and compile)
        weights_step_nb(closes[t], sig, target.copy(), True, state, method, 0.25, 0.0, 0.0, 0.0)
    times = np.empty(REPS)
    for k in range(REPS):
        tgt = np.full(N, 1.0 / N)
        c = closes[LOOKBACK + 2 + k]
        t0 = time.perf_counter()
        weights_step_nb(c, sig, tgt, True, state, method, 0.25, 0.0, 0.0, 0.0)
        times[k] = time.perf_counter() - t0
    print(f"{name:12s} {N} assets lookback {LOOKBACK}: median {np.median(times) * 1e6:8.1f} us, "
          f"p99 {np.quantile(times, 0.99) * 1e6:8.1f} us per rebalance slice")

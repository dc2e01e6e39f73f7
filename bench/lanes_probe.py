"""Probe for issue 2: the same streaming arithmetic laid out per asset vs in lanes across assets.

The rating kernel steps one asset at a time with its state in one flat array (the layout the
daemon checkpoints). This probe times a slice of that work — 6 SMAs over a doubled close
ring, 9 EMAs seeded with their first SMA, their 12 votes and the mean vote — in two layouts
over the same bars:

* ``per_asset``: per asset, all bars (the kernel's shape today);
* ``lanes``: per bar, all assets, each quantity a row of ``n_assets`` values (struct of
  arrays), so LLVM vectorizes every statement across assets.

Both give bit-identical outputs (the same operations in the same order for each asset; the
probe checks it). Not product code: the measurement that chose the shape of the batch
kernel, core/indicators/rating_lanes.py (which steps each asset on its own real bars, so
missing bars keep the lanes uniform). bench/ratings.py times that kernel.

    .venv/bin/python bench/lanes_probe.py
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

SMA_N = np.array([10, 20, 30, 50, 100, 200], np.int64)
EMA_N = np.array([10, 20, 30, 50, 100, 200, 12, 26, 13], np.int64)
EMA_A = 2.0 / (EMA_N + 1.0)
EMA_B = 1.0 - EMA_A
N_SMA = 6
N_EMA = 9
RING = 200


def _sign(x: float, ma: float) -> float:
    return 1.0 if x > ma else (-1.0 if x < ma else 0.0)


sign_nb = njit(_sign)


@njit
def per_asset(c: np.ndarray, out: np.ndarray) -> None:
    """One asset at a time over all bars; state in one flat array per asset."""
    n_bars, n_assets = c.shape
    sma_sum, ring, ema, ema_sum = 0, N_SMA, N_SMA + 2 * RING, N_SMA + 2 * RING + N_EMA
    for a in range(n_assets):
        s = np.zeros(ema_sum + N_EMA)
        col = c[:, a].copy()
        for t in range(n_bars):
            x = col[t]
            newest = ring + t % RING + RING
            for k in range(N_SMA):
                if t >= SMA_N[k]:
                    s[sma_sum + k] += x - s[newest - SMA_N[k]]
                else:
                    s[sma_sum + k] += x
            s[ring + t % RING] = x
            s[newest] = x
            votes = 0.0
            count = 0.0
            for k in range(N_SMA):
                if t + 1 >= SMA_N[k]:
                    votes += sign_nb(x, s[sma_sum + k] / SMA_N[k])
                    count += 1.0
            for k in range(N_EMA):
                if t >= EMA_N[k]:
                    s[ema + k] = EMA_A[k] * x + EMA_B[k] * s[ema + k]
                else:
                    s[ema_sum + k] += x
                    if t + 1 >= EMA_N[k]:
                        s[ema + k] = s[ema_sum + k] / EMA_N[k]
                if k < 6 and t + 1 >= EMA_N[k]:
                    votes += sign_nb(x, s[ema + k])
                    count += 1.0
            out[t, a] = votes / count if count > 0 else np.nan


@njit
def lanes(c: np.ndarray, out: np.ndarray) -> None:
    """All assets step bar ``t`` together: every statement is a loop over assets."""
    n_bars, n_assets = c.shape
    ema = np.zeros((N_EMA, n_assets))
    ema_sum = np.zeros((N_EMA, n_assets))
    sma_sum = np.zeros((N_SMA, n_assets))
    ring = np.zeros((2 * RING, n_assets))
    votes = np.zeros(n_assets)
    count = np.zeros(n_assets)
    for t in range(n_bars):
        x = c[t]
        newest = t % RING + RING
        for k in range(N_SMA):
            acc = sma_sum[k]
            if t >= SMA_N[k]:
                leaving = ring[newest - SMA_N[k]]
                for a in range(n_assets):
                    acc[a] += x[a] - leaving[a]
            else:
                for a in range(n_assets):
                    acc[a] += x[a]
        for a in range(n_assets):
            ring[t % RING, a] = x[a]
            ring[newest, a] = x[a]
            votes[a] = 0.0
            count[a] = 0.0
        for k in range(N_SMA):
            if t + 1 >= SMA_N[k]:
                acc = sma_sum[k]
                for a in range(n_assets):
                    votes[a] += sign_nb(x[a], acc[a] / SMA_N[k])
                    count[a] += 1.0
        for k in range(N_EMA):
            e = ema[k]
            if t >= EMA_N[k]:
                alpha, beta = EMA_A[k], EMA_B[k]
                for a in range(n_assets):
                    e[a] = alpha * x[a] + beta * e[a]
            else:
                seed = ema_sum[k]
                for a in range(n_assets):
                    seed[a] += x[a]
                if t + 1 >= EMA_N[k]:
                    for a in range(n_assets):
                        e[a] = seed[a] / EMA_N[k]
            if k < 6 and t + 1 >= EMA_N[k]:
                for a in range(n_assets):
                    votes[a] += sign_nb(x[a], e[a])
                    count[a] += 1.0
        for a in range(n_assets):
            out[t, a] = votes[a] / count[a] if count[a] > 0 else np.nan


def main() -> None:
    rng = np.random.default_rng(1)
    n_bars, n_assets = 8760, 100
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), 0))
    outs = {name: np.empty((n_bars, n_assets)) for name in ("per_asset", "lanes")}
    kernels = {"per_asset": per_asset, "lanes": lanes}
    for name, kernel in kernels.items():
        kernel(close, outs[name])  # compile
    same = np.array_equal(outs["per_asset"], outs["lanes"], equal_nan=True)
    print(f"{n_assets} assets x {n_bars} bars; outputs bit-identical: {same}")
    best = dict.fromkeys(kernels, np.inf)
    for _ in range(5):
        for name, kernel in kernels.items():
            t0 = time.thread_time()
            kernel(close, outs[name])
            best[name] = min(best[name], time.thread_time() - t0)
    for name, secs in best.items():
        print(f"  {name:9s}: {secs / n_bars / n_assets * 1e9:6.1f} ns per asset-bar (best of 5, 1 thread)")
    print(f"  lanes are {best['per_asset'] / best['lanes']:.1f}x faster")


if __name__ == "__main__":
    main()

"""Benchmark: full TradingView ratings (all indicators + votes) vs TA-Lib computing the
same indicators alone, over a universe of assets; plus cold (first JIT) and warm (cached)
start time. Prints figures; not a test.

Tandem's kernel runs one asset after the other (what the daemon steps, bar by bar, and
what the backtest's MTF batch calls per asset), timed on one thread against TA-Lib's one
thread.

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/ratings.py [--assets 100] [--bars 8760]

Data: the real Binance 1h universe in ../shared/data (or $TANDEM_TEST_DATA) when present
(its series hold 5,482 bars, so it is reported as found), and always a synthetic universe
of ``--assets`` x ``--bars`` random-walk candles.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_FIRST_RATING = (
    "import time; t0 = time.perf_counter();"
    "import numpy as np; from tandem.core.ratings import RatingState;"
    "r = RatingState(); r.step(0, 1.0, 1.1, 0.9, 1.05, 5.0);"
    "print(time.perf_counter() - t0)"
)


def start_time(cache_dir: str, code: str = _FIRST_RATING) -> float:
    """Seconds from interpreter start to the first rating (import + JIT or cache load).

    Also prints the child's CPU seconds: on a shared, loaded machine the wall time of a
    compile swings by 2x, its CPU time much less.
    """
    import resource

    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"  (child process: {wall:.2f} s wall, {cpu:.2f} s CPU)")
    return wall


def synthetic(n_assets: int, n_bars: int, seed: int = 1) -> list[np.ndarray]:
    """Random-walk OHLCV, n_bars x n_assets, C-contiguous."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * (1 + rng.random((n_bars, n_assets)) * 0.005)
    lo = np.minimum(o, c) * (1 - rng.random((n_bars, n_assets)) * 0.005)
    v = rng.random((n_bars, n_assets)) * 100.0
    return [np.ascontiguousarray(x) for x in (o, h, lo, c, v)]


def real_universe(n_assets: int) -> list[np.ndarray] | None:
    """The first n_assets complete series of the shared Binance 1h universe, or None."""
    folder = Path(os.environ.get("TANDEM_TEST_DATA", REPO.parent / "shared" / "data"))
    path = folder / "binance_USDT_1h_universe.parquet"
    if not path.exists():
        return None
    import pandas as pd

    df = pd.read_parquet(path)
    counts = df.groupby("symbol").size()
    full = counts[counts == counts.max()].index[:n_assets]
    df = df[df.symbol.isin(full)]
    out = []
    for k in ("open", "high", "low", "close", "volume"):
        wide = df.pivot(index="timestamp", columns="symbol", values=k)
        out.append(np.ascontiguousarray(wide.to_numpy(np.float64)))
    return out


def talib_indicators(o, h, lo, c, v) -> None:
    """Every indicator the rating uses, one asset, with TA-Lib (HMA/VWMA/AO/BBP/Ichimoku
    composed from TA-Lib's WMA/SMA/EMA/MAX/MIN)."""
    import talib

    for n in (10, 20, 30, 50, 100, 200):
        talib.SMA(c, n)
        talib.EMA(c, n)
    talib.WMA(2 * talib.WMA(c, 4) - talib.WMA(c, 9), 3)
    talib.SMA(c * v, 20) / talib.SMA(v, 20)
    for n in (9, 26, 52):
        talib.MAX(h, n)
        talib.MIN(lo, n)
    talib.RSI(c, 14)
    talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    talib.CCI(c, c, c, 20)
    talib.ADX(h, lo, c, 14)
    talib.PLUS_DI(h, lo, c, 14)
    talib.MINUS_DI(h, lo, c, 14)
    hl2 = (h + lo) / 2
    talib.SMA(hl2, 5) - talib.SMA(hl2, 34)
    talib.MOM(c, 10)
    talib.MACD(c, 12, 26, 9)
    talib.STOCHRSI(c, 14, 14, 3, 0)
    talib.WILLR(h, lo, c, 14)
    e = talib.EMA(c, 13)
    h - e
    lo - e
    talib.ULTOSC(h, lo, c, 7, 14, 28)


def best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(name: str, cols: list[np.ndarray], reps: int) -> None:
    from tandem.core.ratings import new_rating_state, ratings_nb

    n_bars, n_assets = cols[0].shape
    per_asset = [[np.ascontiguousarray(x[:, a]) for x in cols] for a in range(n_assets)]
    ab = n_bars * n_assets

    def ta() -> None:
        for a in range(n_assets):
            talib_indicators(*per_asset[a])

    def scalar() -> None:  # the daemon's kernel, one asset after the other
        for a in range(n_assets):
            ratings_nb(*per_asset[a], new_rating_state())

    scalar()  # nothing below pays for compilation
    t_ta = best_of(ta, reps)
    t_scalar = best_of(scalar, reps)

    def line(label: str, t: float) -> None:
        print(
            f"  {label:52s}: {t:7.3f} s  {ab / t / 1e6:6.2f} M asset-bars/s"
            f"  {t / ab * 1e9:7.1f} ns/asset-bar  {t / t_ta:5.2f}x TA-Lib"
        )

    print(f"\n{name}: {n_assets} assets x {n_bars} bars = {ab:,} asset-bars (best of {reps})")
    line("TA-Lib, indicators only, 1 thread", t_ta)
    line("Tandem kernel per asset, every vote stored, 1 thread", t_scalar)
    verdict = "meets" if t_scalar < t_ta else "MISSES"
    print(
        f"  target (full rating, every vote stored, 1 thread < TA-Lib's indicators, 1 thread):"
        f" {t_scalar / t_ta:.2f}x -> {verdict}"
    )


def warmup_sensitivity(cols: list[np.ndarray], eval_from: int = 2000) -> None:
    """How much ratings move with the warm-up length (the "recursive analysis" question):
    start each asset ``w`` bars before ``eval_from`` instead of at its first bar and
    compare every rating from ``eval_from`` on with the full-history one."""
    from tandem.core.ratings import new_rating_state, ratings_nb

    n_bars, n_assets = cols[0].shape
    assets = range(min(n_assets, 20))
    print(f"\nwarm-up sensitivity ({len(assets)} assets, bars {eval_from}..{n_bars}):")
    print("  warm-up bars | rating_all differs on | max |diff| | votes differing")
    full = {
        a: ratings_nb(*[np.ascontiguousarray(x[:, a]) for x in cols], new_rating_state())
        for a in assets
    }
    for w in (200, 300, 500, 1000, 1500):
        n_diff = n_tot = n_vote = n_votes = 0
        worst = 0.0
        for a in assets:
            part = ratings_nb(
                *[np.ascontiguousarray(x[eval_from - w :, a]) for x in cols], new_rating_state()
            )
            got = part[w:, 2]
            ref = full[a][eval_from:, 2]
            d = np.abs(got - ref)
            n_diff += int((d > 0).sum())
            n_tot += d.size
            worst = max(worst, float(np.nanmax(d)))
            dv = part[w:, 3:] != full[a][eval_from:, 3:]
            n_vote += int(dv.sum())
            n_votes += dv.size
        print(
            f"  {w:12d} | {100 * n_diff / n_tot:8.3f} % of bars     | {worst:9.4f} |"
            f" {100 * n_vote / n_votes:.4f} %"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--bars", type=int, default=8760)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start (JIT) probe")
    args = ap.parse_args()

    cache = os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as empty:
            cold = start_time(empty)
        print(f"cold start (empty numba cache, JIT compile) to first rating: {cold:6.2f} s")
    start_time(cache)  # populate the cache if needed
    warm = start_time(cache)
    print(f"warm start (cached)  to first rating:                         {warm:6.2f} s")

    os.environ.setdefault("NUMBA_CACHE_DIR", cache)
    real = real_universe(args.assets)
    if real is not None:
        run("real Binance 1h universe", real, args.reps)
    run("synthetic random walk", synthetic(args.assets, args.bars), args.reps)
    warmup_sensitivity(real if real is not None else synthetic(20, 5000))


if __name__ == "__main__":
    main()

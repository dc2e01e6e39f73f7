"""Benchmark: the Tandem engine vs vectorbt ``Portfolio.from_signals`` on the same inputs.

100 assets x 8,760 hourly bars (one year), ~1 % signal density, SL 3 % and TP 6 % on, fees
0.1 %, shared cash. Prints warm times (best of N), the first-call (compile) time of each
measured in a fresh interpreter with an empty numba cache, and the daemon path's per-slice
latency (``Engine.step_raw``).

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/engine.py [--assets 100] [--bars 8760]
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOUR = 3_600_000


def make_inputs(n_bars: int, n_assets: int, density: float = 0.01, seed: int = 42):
    """Random-walk OHLC and sparse +1/-1 signals (half entries, half exits)."""
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_assets)), axis=0))
    o = np.vstack([c[:1], c[:-1]]) * np.exp(rng.normal(0, 0.002, (n_bars, n_assets)))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.005, (n_bars, n_assets))))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.005, (n_bars, n_assets))))
    u = rng.random((n_bars, n_assets))
    sig = np.where(u < density / 2, 1.0, np.where(u > 1 - density / 2, -1.0, 0.0))
    ts = (np.arange(n_bars, dtype=np.int64) + 1) * HOUR
    return ts, o, h, lo, c, sig


def run_ours(inputs, cfg):  # noqa: ANN001
    from tandem.core.engine import run_batch_raw

    ts, o, h, lo, c, sig = inputs
    return run_batch_raw(cfg, ts, o, h, lo, c, sig)


def run_vbt(inputs):  # noqa: ANN001
    import vectorbt as vbt

    _, o, h, lo, c, sig = inputs
    return vbt.Portfolio.from_signals(
        c,
        sig == 1,
        sig == -1,
        open=o,
        high=h,
        low=lo,
        sl_stop=0.03,
        tp_stop=0.06,
        fees=0.001,
        size=0.05,
        size_type="percent",
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        stop_entry_price="fillprice",
    )


def our_config():  # noqa: ANN201
    from tandem.core.engine import EngineConfig

    return EngineConfig(
        stop_loss_pct=0.03,
        take_profit_pct=0.06,
        fee_rate=0.001,
        size_pct=0.05,
        initial_cash=100_000.0,
    )


def best_of(fn, repeat: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def first_call(which: str, n_bars: int, n_assets: int) -> float:
    """Seconds of the first call in a fresh interpreter with an empty numba cache."""
    code = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench.engine import make_inputs, run_ours, run_vbt, our_config\n"
        f"x = make_inputs({n_bars}, {n_assets})\n"
        "import vectorbt, tandem.core.engine\n"
        "t = time.perf_counter()\n"
        f"run_ours(x, our_config()) if {which!r} == 'ours' else run_vbt(x)\n"
        "print(time.perf_counter() - t)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--bars", type=int, default=8760)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the first-call runs")
    args = ap.parse_args()

    inputs = make_inputs(args.bars, args.assets)
    cfg = our_config()
    n_sig = int((inputs[-1] != 0).sum())
    print(
        f"inputs: {args.bars} bars x {args.assets} assets, {n_sig} signals "
        f"({n_sig / inputs[-1].size:.2%}), SL 3% / TP 6%, fee 0.1%, shared cash"
    )

    t0 = time.perf_counter()
    raw, equity, _ = run_ours(inputs, cfg)
    t_ours_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    pf = run_vbt(inputs)
    t_vbt_first = time.perf_counter() - t0
    print(
        f"fills: ours {len(raw)}, vectorbt {len(pf.orders.records)} "
        "(sizing rules differ: % of equity vs % of cash; same workload)"
    )
    print(
        f"first call in this process (numba cache as found): ours {t_ours_first:.2f} s, "
        f"vectorbt {t_vbt_first:.2f} s"
    )

    t_ours = best_of(lambda: run_ours(inputs, cfg), args.repeat)
    t_vbt = best_of(lambda: run_vbt(inputs), args.repeat)
    cells = args.bars * args.assets
    print(
        f"warm, best of {args.repeat}: ours {t_ours * 1e3:.1f} ms "
        f"({cells / t_ours / 1e6:.1f} M asset-bars/s), vectorbt {t_vbt * 1e3:.1f} ms "
        f"-> speed-up {t_vbt / t_ours:.1f}x"
    )

    from tandem.core.engine import Engine

    eng = Engine(cfg, [f"A{j}" for j in range(args.assets)])
    ts, o, h, lo, c, sig = inputs
    k = min(2000, args.bars)
    t0 = time.perf_counter()
    for t in range(k):
        eng.step_raw(ts[t], o[t], h[t], lo[t], c[t], sig[t])
    per = (time.perf_counter() - t0) / k
    print(f"daemon path: Engine.step_raw over {args.assets} assets: {per * 1e6:.0f} us/slice")

    if not args.no_compile:
        print("first call in a fresh interpreter, empty numba cache (compile + run):")
        print(f"  ours     {first_call('ours', args.bars, args.assets):.2f} s")
        print(f"  vectorbt {first_call('vbt', args.bars, args.assets):.2f} s")


if __name__ == "__main__":
    main()

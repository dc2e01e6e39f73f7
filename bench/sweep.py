"""Benchmark of ``tandem-backtest sweep``'s kernel (tandem.core.trials) — issue 14's figures.

(a) 1,000 trials × 100 assets × 1 year of 1h bars (8,760 bars, 876k asset-bars per trial),
    discrete mode, warm (numba cache loaded, one untimed warm-up call): trials/s and
    asset-bar-trials/s in one process, then with ``--workers`` Dask processes.
(b) The same 100-trial SL/TP grid through vectorbt ``Portfolio.from_signals`` with arrays
    of ``sl_stop``/``tp_stop`` over the same entry/exit signals (100 assets, cash shared per
    trial), timed side by side; and equal fills where the rules coincide: one asset,
    all-in sizing, same fees, no slippage, vectorbt entries on the rising edges of the
    +1 signal (Tandem enters on the level but re-arms only when the signal leaves +1).
(c) trials/s on a Dask LocalCluster with 1 and 2 worker processes.

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/sweep.py [--trials 1000] [--assets 100]

Measured 2026-12-02 on the shared 2-core box (load average 5-10 from other jobs):
(a) in one process 70.3 s (14.2 trials/s, 12.5 M asset-bar-trials/s); LocalCluster of 2
    workers 39.2 s (25.5 trials/s, 22.3 M asset-bar-trials/s) — target < 60 s;
(b) Tandem 1.85 s vs vectorbt 20.0 s (10.8×; 7.2× in a busier run), 100/100 trials with
    identical fills (22,720 fills) where the rules coincide;
(c) 1,000 trials: 1 worker 24.5 trials/s, 2 workers 35.0 trials/s (1.43×, other jobs
    competing for the same two cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

YEAR_BARS = 8760
WARM = 24 * 30


def setup(n_assets: int, n_bars: int):
    from tandem.backtest.demo_data import generate_candles
    from tandem.backtest.runner import with_overrides
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.core.manifest import load_manifest, parse_manifest
    from tandem.core.store import align

    syms = [f"A{k:03d}/USDT" for k in range(n_assets)]
    base = load_manifest(ROOT / "manifest.json").profile("crypto_rating_all")
    data = base.model_dump(mode="json")
    data.update(core_assets=syms[:4], universe=syms, warmup_bars=WARM)
    data["execution"].update(mode="discrete", slippage_bps=0.0)
    prof = parse_manifest({"profiles": {"bench": data}}).profile("bench")
    prof = with_overrides(prof)
    candles = align(generate_candles(syms, start="2023-01-01", n_bars=n_bars + WARM, seed=3), syms)
    t0 = time.perf_counter()
    sd = load_sweep_data(prof, candles)
    return prof, sd, candles, time.perf_counter() - t0


def grid(n: int) -> list[dict]:
    """n trials: SL × TP × entry threshold (10 × 10 × n/100)."""
    sl = [round(0.01 + 0.005 * k, 4) for k in range(10)]
    tp = [round(0.02 + 0.01 * k, 4) for k in range(10)]
    ent = [round(0.05 + 0.02 * k, 4) for k in range(max(1, n // 100))]
    out = [{"entry_threshold": e, "exit_rules.stop_loss_pct": s, "exit_rules.take_profit_pct": t,
            "exit_rules.trailing_stop_pct": None} for e in ent for s in sl for t in tp]
    return out[:n]


def run_in_process(prof, sd, trials):
    from tandem.backtest.sweep.evaluate import profile_rows
    from tandem.backtest.sweep.space import trial_profile
    from tandem.core.trials import run_trials

    profiles = [trial_profile(prof, p)[0] for p in trials]
    batch = profile_rows(profiles, sd)
    lo, hi, ppy, smp = sd.seg_arrays()
    args = (sd.ratings, sd.ts_close, sd.open, sd.high, sd.low, sd.close, sd.mtf_mask, batch,
            lo, hi, ppy, smp, sd.sample_idx)
    t0 = time.perf_counter()
    stats, *_ = run_trials(*args)
    return time.perf_counter() - t0, stats


def run_dask(prof, sd, trials, workers: int) -> float:
    from tandem.backtest.sweep.driver import _chunks
    from tandem.backtest.sweep.executor import DaskExecutor

    ex = DaskExecutor(sd, prof, workers=workers)
    try:
        items = list(enumerate(trials))
        from tandem.backtest.sweep.evaluate import evaluate_chunk

        # every worker loads the numba cache before the clock starts
        warm = [ex.client.submit(evaluate_chunk, ex.data_f, ex.base_f, items[:2], pure=False,
                                 workers=[addr]) for addr in ex.client.scheduler_info()["workers"]]
        ex.client.gather(warm)
        t0 = time.perf_counter()
        n = sum(len(df) for _, df in ex.run(_chunks(items, workers)))
        dt = time.perf_counter() - t0
        assert n == len(trials)
        return dt
    finally:
        ex.close()


def vbt_side_by_side(prof, sd, n_assets: int) -> None:
    import vectorbt as vbt
    from tandem.backtest.sweep.evaluate import profile_rows
    from tandem.backtest.sweep.space import trial_profile
    from tandem.core.signals import signals_rows_nb

    trials = grid(100)
    p0 = trial_profile(prof, trials[0])[0]
    b = profile_rows([p0], sd)
    sp, w = b.sparams[0], b.weights[0]
    n_bars, n_a = sd.close.shape
    sig = np.zeros((n_bars, n_a), dtype=np.int8)
    sc, tg = np.empty((n_bars, n_a)), np.empty((n_bars, n_a))
    signals_rows_nb(sd.ts_close, sd.ratings[0], sd.mtf_mask, w, int(sp[1]), sp[2], sp[3], sp[4],
                    False, sp[6], np.int64(sp[7]), np.int64(sp[8]), sig, sc, tg)
    entries, exits = sig == 1, sig == -1
    sl = np.array([t["exit_rules.stop_loss_pct"] for t in trials])
    tp = np.array([t["exit_rules.take_profit_pct"] for t in trials])
    k = len(trials)
    kw = dict(open=np.tile(sd.open, k), high=np.tile(sd.high, k), low=np.tile(sd.low, k),
              fees=float(prof.execution.fee_rate), init_cash=float(prof.initial_cash),
              stop_entry_price="fillprice", stop_exit_price="stoplimit",
              size=float(prof.execution.size_pct), size_type="percent",
              group_by=np.repeat(np.arange(k), n_a), cash_sharing=True)
    close = np.tile(sd.close, k)
    ent, exi = np.tile(entries, k), np.tile(exits, k)
    sls, tps = np.repeat(sl, n_a)[None, :], np.repeat(tp, n_a)[None, :]
    # warm vectorbt's numba on a small slice, then time the full grid
    vbt.Portfolio.from_signals(close[:50], ent[:50], exi[:50], sl_stop=sls, tp_stop=tps,
                               **{**kw, "open": kw["open"][:50], "high": kw["high"][:50],
                                  "low": kw["low"][:50]}).orders.count()
    t0 = time.perf_counter()
    pf = vbt.Portfolio.from_signals(close, ent, exi, sl_stop=sls, tp_stop=tps, **kw)
    _ = pf.orders.count()
    t_vbt = time.perf_counter() - t0
    t_tandem, _ = run_in_process(prof, sd, trials)
    print(f"(b) 100-trial SL/TP grid, {n_a} assets × {n_bars} bars: Tandem {t_tandem:.2f} s "
          f"(combiner + engine + stats per trial), vectorbt from_signals {t_vbt:.2f} s "
          f"(signals given) → Tandem {t_vbt / t_tandem:.1f}× faster")
    fills_equal(prof, sd, trials, vbt)


def fills_equal(prof, sd, trials, vbt) -> None:
    """One asset, all-in, no slippage: Tandem's fills = vectorbt's orders, per trial."""
    from tandem.backtest.sweep.data import SweepData
    from tandem.backtest.sweep.driver import single_trial
    from tandem.core.engine.layout import F_PRICE, F_QTY, F_SIDE, F_TS
    from tandem.core.signals import signals_rows_nb

    one = SweepData(symbols=sd.symbols[:1], ts_open=sd.ts_open, ts_close=sd.ts_close,
                    open=np.ascontiguousarray(sd.open[:, :1]), high=np.ascontiguousarray(sd.high[:, :1]),
                    low=np.ascontiguousarray(sd.low[:, :1]), close=np.ascontiguousarray(sd.close[:, :1]),
                    ratings=np.ascontiguousarray(sd.ratings[:, :, :1]), rating_cols=sd.rating_cols,
                    mtf_mask=sd.mtf_mask[:1], segments=sd.segments, base_ms=sd.base_ms,
                    fingerprint="", sample_idx=sd.sample_idx)
    same = 0
    n_fills = 0
    for t in trials:
        params = {**t, "execution.size_pct": 1.0}
        _, raw, p = single_trial(one, prof, params, 0, keep_fills=4096)
        sig = np.zeros((len(one.ts_close), 1), dtype=np.int8)
        x = np.empty((len(one.ts_close), 1))
        w = np.asarray(p.tf_weights())
        signals_rows_nb(one.ts_close, one.ratings[0], one.mtf_mask, w, 0, p.entry_threshold,
                        p.exit_threshold, 0.0, False, 1.0, np.int64(1), np.int64(0), sig, x, x.copy())
        s = sig[:, 0]
        up = s == 1
        edge = up & ~np.r_[False, up[:-1]]
        pf = vbt.Portfolio.from_signals(
            one.close[:, 0], edge, s == -1, open=one.open[:, 0], high=one.high[:, 0],
            low=one.low[:, 0], sl_stop=p.exit_rules.stop_loss_pct,
            tp_stop=p.exit_rules.take_profit_pct, fees=p.execution.fee_rate,
            init_cash=p.initial_cash, stop_entry_price="fillprice", stop_exit_price="stoplimit")
        rec = pf.orders.records
        bar = np.searchsorted(one.ts_close, raw[:, F_TS].astype(np.int64))
        ok = (len(rec) == len(raw) and np.array_equal(bar, rec["idx"])
              and np.array_equal(raw[:, F_SIDE], np.where(rec["side"] == 0, 1.0, -1.0))
              and np.array_equal(raw[:, F_PRICE], rec["price"])
              and np.allclose(raw[:, F_QTY], rec["size"], rtol=1e-12))
        same += ok
        n_fills += len(raw)
    print(f"    fills where the rules coincide (1 asset, all-in, same fees, no slippage): "
          f"{same}/{len(trials)} trials identical ({n_fills} fills)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--bars", type=int, default=YEAR_BARS)
    ap.add_argument("--scaling-trials", type=int, default=200)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    prof, sd, _, t_load = setup(a.assets, a.bars)
    n_bars, n_assets = sd.close.shape
    print(f"data: {n_assets} assets × {n_bars} tradable 1h bars; ratings once in {t_load:.1f} s")
    run_in_process(prof, sd, grid(4))  # warm: load the numba cache
    if "a" not in skip:
        trials = grid(a.trials)
        dt, stats = run_in_process(prof, sd, trials)
        cells = len(trials) * n_bars * n_assets
        print(f"(a) {len(trials)} trials in one process: {dt:.1f} s → {len(trials) / dt:.1f} "
              f"trials/s, {cells / dt / 1e6:.1f} M asset-bar-trials/s "
              f"(mean trades/trial {np.nanmean(stats[:, 0, 6]):.0f})")
        dt2 = run_dask(prof, sd, trials, 2)
        print(f"    {len(trials)} trials on a LocalCluster of 2 workers: {dt2:.1f} s → "
              f"{len(trials) / dt2:.1f} trials/s, {cells / dt2 / 1e6:.1f} M asset-bar-trials/s")
    if "b" not in skip:
        vbt_side_by_side(prof, sd, n_assets)
    if "c" not in skip:
        trials = grid(a.scaling_trials)
        r = {}
        for wk in (1, 2):
            dt = run_dask(prof, sd, trials, wk)
            r[wk] = len(trials) / dt
            print(f"(c) LocalCluster {wk} worker(s): {r[wk]:.1f} trials/s")
        print(f"    2 vs 1 worker: {r[2] / r[1]:.2f}×")


if __name__ == "__main__":
    main()

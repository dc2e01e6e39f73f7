"""Benchmark: Tandem's backtest end to end vs. the same job done "by hand".

Job: N assets (default 100) × one year of 1h candles, timeframes 1h/4h/1d, profile
``crypto_rating_all`` (wide MTF combiner) with every asset on MTF, SL 5 % / TP 15 %.

* **Tandem**: :func:`tandem.backtest.runner.run_backtest` — load from the candle store → MTF
  ratings → signals → engine → fills, trades, equity, stats (no files written).
* **Baseline** (what a user would write without us): pandas ``read_parquet`` per asset,
  pandas ``resample`` for 4h/1d, TA-Lib for every indicator, NumPy for the 26 votes and
  ratings, HTF values shifted to their close and forward-filled, the weighted score, then
  ``vectorbt.Portfolio.from_signals`` with ``sl_stop``/``tp_stop`` and cash sharing
  (each entry buys 10 % of the *initial* cash, skipped when cash is short: vectorbt's
  from_signals cannot size by current equity, which Tandem's engine does).

Both run in this process, each once to warm up (numba/vectorbt compiles) and then timed;
the printed ratio is baseline / Tandem (warm), imports and process start left out (for the
whole-process comparison a user sees: ``bench/commands.py --versus``). Cold: fresh interpreters run the Tandem job
once each — with an empty ``NUMBA_CACHE_DIR`` and the JIT warm-up worker of
:mod:`tandem.core.warmup` forced on (``TANDEM_WARMUP=1``; by default it starts on two or more
CPUs), with an empty cache compiling everything in one process (``TANDEM_WARMUP=0``; its
breakdown shows where the cold seconds go: imports, compile per top-level kernel, run), and
with the cache filled ("warm process": cache loads only).

The candles are generated (seeded GBM with volatility clusters, :mod:`tandem.backtest.demo_data`)
into a temporary candle store, so the benchmark needs no downloaded data.

    .venv/bin/python bench/backtest.py [--assets 100] [--days 365] [--skip-cold | --cold-only]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the fresh-process runs count their imports from here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOUR = 3_600_000
START = "2024-01-01"


def make_store(folder: Path, n_assets: int, days: int, seed: int = 1) -> list[str]:
    """Write generated candles into a candle store; return the symbols."""
    from tandem.backtest.demo_data import generate_candles
    from tandem.core.store import CandleStore

    syms = [f"A{i:03d}/USDT" for i in range(n_assets)]
    candles = generate_candles(syms, start=START, n_bars=24 * days, seed=seed)
    store = CandleStore(folder, exchange="binance", timeframe="1h")
    for s, df in candles.items():
        store.append(s, df)
    return syms


def bench_profile(symbols: list[str]):  # noqa: ANN201 - core.manifest.Profile
    """crypto_rating_all with every asset on MTF, no warm-up cut, SL/TP only (as vectorbt)."""
    from tandem.core.manifest import load_manifest, parse_manifest

    prof = load_manifest(ROOT / "manifest.json").profile("crypto_rating_all")
    data = prof.model_dump(mode="json")
    data.update(core_assets=symbols, universe=[], warmup_bars=0)
    data["exit_rules"]["trailing_stop_pct"] = None
    return parse_manifest({"profiles": {"bench": data}}, source="bench").profile("bench")


# --------------------------------------------------------------------------- Tandem


def run_tandem(store_dir: Path, symbols: list[str]) -> tuple[float, object]:
    """One end-to-end Tandem run; returns (seconds, result)."""
    from tandem.backtest.runner import run_backtest
    from tandem.core.store import CandleStore

    prof = bench_profile(symbols)
    t0 = time.perf_counter()
    store = CandleStore(store_dir, exchange="binance", timeframe="1h")
    res = run_backtest(prof, store, None, None, None, progress=False, report=False)
    return time.perf_counter() - t0, res


# --------------------------------------------------------------------------- baseline


def run_baseline(store_dir: Path, symbols: list[str], **params: float) -> tuple[float, dict]:
    """The same job by hand (:func:`reference.reference_job`: pandas resample + TA-Lib +
    NumPy + vectorbt) on the store's files; returns (seconds, outputs)."""
    from reference import reference_job

    t0 = time.perf_counter()
    frames = {}
    for s in symbols:
        df = pd.read_parquet(store_dir / "binance" / s.replace("/", "-") / "1h.parquet")
        frames[s] = df.set_index(pd.to_datetime(df["ts"], unit="ms", utc=True))
    out = reference_job(frames, **params)
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------- cold runs


class _CompileTimes:
    """numba ``numba:compile`` listener: seconds per top-level kernel (compile, or cache
    load when the cache has it), nested callee compiles included in their caller."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, float, float]] = []
        self.top: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # process CPU seconds (compiles are single-threaded)

    def install(self) -> None:
        from numba.core import event

        listener = self

        class _L(event.Listener):
            def on_start(self, ev) -> None:  # noqa: ANN001
                listener.stack.append((ev.data["dispatcher"].py_func.__qualname__,
                                       time.perf_counter(), time.process_time()))

            def on_end(self, ev) -> None:  # noqa: ANN001
                name, t0, c0 = listener.stack.pop()
                if not listener.stack:
                    listener.top[name] = listener.top.get(name, 0.0) + time.perf_counter() - t0
                    listener.cpu[name] = listener.cpu.get(name, 0.0) + time.process_time() - c0

        event.register("numba:compile", _L())


def child(store_dir: str, n_assets: int) -> None:
    """Fresh-interpreter Tandem run (for cold/warm process timings); prints JSON."""
    import tandem.backtest.runner  # noqa: F401 - what a user's first run imports anyway
    import tandem.core.engine  # noqa: F401
    import tandem.core.mtf  # noqa: F401
    import tandem.core.signals  # noqa: F401

    t_import = time.perf_counter() - _T0
    times = _CompileTimes()
    times.install()
    syms = [f"A{i:03d}/USDT" for i in range(n_assets)]
    secs, res = run_tandem(Path(store_dir), syms)
    from tandem.core import warmup

    prof = bench_profile(syms)
    workers = {j: warmup.job_seconds(prof, j) for g in warmup.BACKTEST_GROUPS for j in g}
    print(json.dumps({"run_s": secs, "process_s": time.perf_counter() - _T0,
                      "main_cpu_s": time.process_time(),
                      "import_s": t_import, "fills": len(res.fills), "timings": res.timings,
                      "jit": times.top, "jit_cpu": times.cpu, "workers": workers}))


def fresh_process(store_dir: Path, n_assets: int, cache_dir: Path, warmup: bool = True) -> dict:
    """One child run; adds its wall time and the CPU seconds of it and its workers (the
    machine is shared: CPU seconds show the work, wall seconds what a user waits)."""
    import resource

    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), TANDEM_WARMUP="1" if warmup else "0")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(store_dir), "--assets",
                          str(n_assets)], capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["wall_s"] = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return data


#: Top-level kernels by pipeline stage (anything else is reported as "other").
STAGES = {"mtf_batch_nb": "ratings", "signals_rows_nb": "signals", "run_batch_nb": "engine"}


def describe_process(label: str, d: dict) -> str:
    """One paragraph: where a fresh process spent its seconds."""
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, sec in d["jit"].items():
        stage = STAGES.get(name, "other")
        stages[stage] = stages.get(stage, 0.0) + sec
        cpu[stage] = cpu.get(stage, 0.0) + d["jit_cpu"].get(name, 0.0)
    jit = sum(stages.values())
    t = d["timings"]
    waits = {k[5:]: v for k, v in t.items() if k.startswith("wait_")}
    lines = [
        f"{label}: wall {d['wall_s']:.1f} s (CPU {d['cpu_s']:.1f} s incl. workers, "
        f"{d['main_cpu_s']:.1f} s in the main process) = "
        f"interpreter+imports {d['import_s']:.1f} s + run {d['run_s']:.1f} s"
        f" (+ exit {d['wall_s'] - d['process_s']:.1f} s)",
        "    compiles in the main process " + f"{jit:.1f} s" + (": " if stages else "") + ", ".join(
            f"{k} {v:.2f} (CPU {cpu[k]:.2f})"
            for k, v in sorted(stages.items(), key=lambda kv: -kv[1])),
        f"    run stages: load {t['load']:.2f}, ratings+signals {t['ratings_signals']:.2f}"
        f" (with the rating kernel's compile: a C callable, not in the list above), "
        f"engine {t['engine']:.2f}, stats {t['stats']:.2f} s (JIT and waits included)",
    ]
    if waits:
        work = ", ".join(f"{k} {v:.1f} s" for k, v in d["workers"].items() if v is not None)
        lines.append("    waited for the JIT warm-up worker: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in waits.items()) + f" (worker jobs: {work})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--skip-cold", action="store_true", help="skip the fresh-process runs")
    ap.add_argument("--cold-only", action="store_true",
                    help="only the fresh-process runs (no in-process warm run, no baseline)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from tandem.backtest.logs import configure_logging

    configure_logging("warning")  # figures only; the runner's info logs would interleave
    if args.child:
        child(args.child, args.assets)
        return

    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        store_dir = Path(tmp) / "store"
        t0 = time.perf_counter()
        syms = make_store(store_dir, args.assets, args.days)
        print(f"data: {args.assets} assets × {24 * args.days} 1h bars (generated, "
              f"{time.perf_counter() - t0:.1f} s); timeframes 1h/4h/1d, wide MTF, SL 5% TP 15%")

        if not args.skip_cold:
            cache = Path(tmp) / "numba_cache"
            cold = fresh_process(store_dir, args.assets, cache)
            warm_proc = fresh_process(store_dir, args.assets, cache)
            cold_serial = fresh_process(store_dir, args.assets, Path(tmp) / "numba_cache_2",
                                        warmup=False)
            print(f"tandem cold (fresh process, empty NUMBA_CACHE_DIR): wall {cold['wall_s']:.1f} s"
                  "  (target < 20 s)")
            print(describe_process("  cold, JIT warm-up worker (TANDEM_WARMUP=1)", cold))
            print(describe_process("  cold, all compiled in one process (TANDEM_WARMUP=0)",
                                   cold_serial))
            print(describe_process("  warm process (cache filled)", warm_proc), flush=True)
        if args.cold_only:
            return

        run_tandem(store_dir, syms)  # in-process warm-up (cache load / compile)
        t_ours, res = min((run_tandem(store_dir, syms) for _ in range(2)), key=lambda r: r[0])
        prof = bench_profile(syms)
        kw = dict(weights=dict(zip(prof.timeframes, prof.tf_weights(), strict=True)),
                  sl=prof.exit_rules.stop_loss_pct, tp=prof.exit_rules.take_profit_pct,
                  fee=prof.execution.fee_rate, slip=prof.execution.slippage_bps / 1e4,
                  size=prof.execution.size_pct, cash=prof.initial_cash)
        run_baseline(store_dir, syms, **kw)  # warm-up: vectorbt's numba compiles
        t_base, base = run_baseline(store_dir, syms, **kw)

        # Sanity: the baseline does the same job (signals agree where both are defined).
        from tandem.core.signals import signals_from_candles
        from tandem.core.store import CandleStore

        a = CandleStore(store_dir, "binance", "1h").load_aligned(syms, "1h")
        _, ours, _ = signals_from_candles(prof, a.ts, a.open, a.high, a.low, a.close, a.volume,
                                          syms)
        bs = base["score"].to_numpy()
        theirs = np.where(bs > 0.1, 1, np.where(bs < -0.1, -1, 0))
        both = np.isfinite(bs) & np.isfinite(ours.score)
        agree = float((theirs[both] == ours.signal[both]).mean())
        after = both.copy()
        after[: 24 * 250] = False  # once the 1d exponential seeds have converged
        agree_late = float((theirs[after] == ours.signal[after]).mean()) if after.any() else float("nan")

        t = res.timings
        print(f"tandem warm (in-process): {t_ours:.2f} s  [load {t['load']:.2f}, ratings+signals "
              f"{t['ratings_signals']:.2f}, engine {t['engine']:.2f}, stats {t['stats']:.2f}]  "
              f"fills {len(res.fills)}")
        print(f"baseline (pandas resample + TA-Lib + NumPy + vectorbt from_signals): "
              f"{t_base:.2f} s  orders {base['n_orders']}")
        print(f"ratio baseline / tandem (warm): {t_base / t_ours:.1f}x  (target >= 5x)")
        print(f"signal agreement with the baseline: {100 * agree:.2f}% of defined bars, "
              f"{100 * agree_late:.2f}% after day 250 (TA-Lib seeds EMAs differently)")


if __name__ == "__main__":
    main()

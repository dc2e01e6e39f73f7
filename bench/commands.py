"""Benchmark: the commands a user types, timed as whole processes (what they wait for).

* ``tandem-backtest --help`` and ``tandem-daemon --help``;
* ``tandem-backtest run --no-report`` on 100 and on 10 pairs of the shared 1h universe
  (1h/4h/1d, the whole 5,482 bars: ``--warmup-bars 0``), and the same 100-pair run with the
  report (HTML + PNG): the difference is what the report adds;
* the README's main job, ``tandem-daemon replay --sample --bars 200``.

Each command runs once untimed (fills numba's cache), then ``--runs`` times; the figures are
min / median / max wall seconds. ``--busy`` keeps one core spinning in another process
meanwhile (a busy machine); ``--cold`` adds one run of each on an empty numba cache.
``--warmup-ab`` instead runs each command on an empty numba cache with the warm-up worker
(``TANDEM_WARMUP`` unset: on two or more CPUs) and without it (``TANDEM_WARMUP=0``: compiling
in one process), in turn, ``--runs`` pairs: whether the worker machinery ever makes a first
run slower (with ``--busy``: on a busy machine). ``--versus`` instead times the 100-pair run against the reference job
(:mod:`bench/reference.py`: pandas resample + TA-Lib + vectorbt ``from_signals`` on the same
pairs), each one job per process, in turn (A B A B ...; both warm), and prints the ratio
reference / Tandem pair by pair: pairing keeps it meaningful on a machine whose speed drifts.
Needs ``../shared/data`` (or ``$TANDEM_TEST_DATA``) for the universe runs; they are skipped
without it.

The commands run as a user's would: Python writes bytecode (``PYTHONDONTWRITEBYTECODE`` is
dropped from their environment; with it set, every run compiled the project's sources again).

    .venv/bin/python bench/commands.py [--runs 5] [--busy] [--cold] [--only run100,help]
    .venv/bin/python bench/commands.py --versus [--runs 5]
    .venv/bin/python bench/commands.py --warmup-ab --runs 3 [--busy] --only "replay,run 100 pairs --no"
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _universe() -> Path | None:
    env = os.environ.get("TANDEM_TEST_DATA")
    folder = Path(env) if env else ROOT.parent / "shared" / "data"
    path = folder / "binance_USDT_1h_universe.parquet"
    return path if path.exists() else None


def _manifests(universe: Path, folder: Path) -> dict[int, Path]:
    """Manifests whose one profile trades the first N complete pairs of the universe."""
    import pandas as pd

    counts = pd.read_parquet(universe, columns=["symbol"])["symbol"].value_counts()
    symbols = sorted(counts[counts == counts.max()].index)
    base = json.loads((ROOT / "manifest.json").read_text())["profiles"]["crypto_rating_all"]
    out = {}
    for n in (100, 10):
        profile = dict(base, core_assets=symbols[:n], universe=[])
        path = folder / f"manifest{n}.json"
        path.write_text(json.dumps({"version": 1, "profiles": {f"u{n}": profile}}))
        out[n] = path
    return out


def _spin(stop: mp.Event) -> None:  # a busy core
    while not stop.is_set():
        sum(range(10_000))


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return took


def _versus(ours: tuple[str, list[str]], theirs: tuple[str, list[str]], env: dict[str, str],
            runs: int) -> None:
    """Both commands in turn, once each untimed (caches), then ``runs`` pairs."""
    _time(ours[1], env), _time(theirs[1], env)
    pairs = [(_time(ours[1], env), _time(theirs[1], env)) for _ in range(runs)]
    for (name, _), times in ((ours, [a for a, _ in pairs]), (theirs, [b for _, b in pairs])):
        print(f"{name:34} {min(times):7.2f} {statistics.median(times):7.2f} {max(times):7.2f}")
    ratios = [b / a for a, b in pairs]
    print(f"{'ratio reference / tandem':34} {min(ratios):7.2f} {statistics.median(ratios):7.2f} "
          f"{max(ratios):7.2f}   (pair by pair; target >= 5)")


def _warmup_ab(commands: dict[str, list[str]], env: dict[str, str], work: Path,
               runs: int) -> None:
    """Each command cold, with the warm-up worker (A) and compiling in one process (B), in
    turn; the ratio A/B pair by pair (pairing keeps it meaningful on a drifting machine)."""
    cache = work / "ab-cache"

    def cold(cmd: list[str], mode: str) -> float:
        shutil.rmtree(cache, ignore_errors=True)
        run_env = dict(env, NUMBA_CACHE_DIR=str(cache))
        run_env.pop("TANDEM_WARMUP", None)
        if mode == "0":
            run_env["TANDEM_WARMUP"] = "0"
        return _time(cmd, run_env)

    for name, cmd in commands.items():
        pairs = [(cold(cmd, "auto"), cold(cmd, "0")) for _ in range(runs)]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
        ratios = [x / y for x, y in pairs]
        print(f"{name + ' cold, worker':34} {min(a):7.2f} {statistics.median(a):7.2f} {max(a):7.2f}")
        print(f"{name + ' cold, one process':34} {min(b):7.2f} {statistics.median(b):7.2f} "
              f"{max(b):7.2f}")
        print(f"{'  ratio worker / one process':34} {min(ratios):7.2f} "
              f"{statistics.median(ratios):7.2f} {max(ratios):7.2f}   (pair by pair)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--busy", action="store_true", help="one core kept busy meanwhile")
    ap.add_argument("--cold", action="store_true", help="also one run on an empty numba cache")
    ap.add_argument("--only", help="comma-separated subset of the command names")
    ap.add_argument("--versus", action="store_true",
                    help="the 100-pair run against the reference job, in turn")
    ap.add_argument("--warmup-ab", action="store_true",
                    help="cold runs with the warm-up worker against compiling in one process")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    env = dict(os.environ, TANDEM_LOG_LEVEL="warning")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    bt, dm = str(BIN / "tandem-backtest"), str(BIN / "tandem-daemon")
    commands: dict[str, list[str]] = {
        "help backtest": [bt, "--help"],
        "help daemon": [dm, "--help"],
    }
    universe = _universe()
    if universe is not None:
        manifests = _manifests(universe, work)
        for n, report in ((100, False), (10, False), (100, True)):
            cmd = [bt, "run", "--manifest", str(manifests[n]), "--profile", f"u{n}",
                   "--data", str(universe), "--warmup-bars", "0", "--out", str(work / f"r{n}")]
            name = f"run {n} pairs" + ("" if report else " --no-report")
            commands[name] = cmd + ([] if report else ["--no-report"])
    else:
        print("no shared universe: the run figures are skipped", file=sys.stderr)
    commands["replay --sample --bars 200"] = [dm, "replay", "--sample", "--bars", "200",
                                              "--out", str(work / "paper")]
    if args.versus:
        if universe is None:
            raise SystemExit("--versus needs the shared universe")
        reference = [sys.executable, str(ROOT / "bench" / "reference.py"), "--data", str(universe),
                     "--assets", "100"]
        commands = {"run 100 pairs --no-report": commands["run 100 pairs --no-report"],
                    "reference job, 100 pairs": reference}
    elif args.only:
        keep = [k.strip() for k in args.only.split(",")]
        commands = {k: v for k, v in commands.items() if any(k.startswith(w) for w in keep)}

    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,), daemon=True) if args.busy else None
    if spinner:
        spinner.start()
    try:
        print(f"{'command':34} {'min':>7} {'median':>7} {'max':>7}   (wall s, {args.runs} runs"
              f"{', one core busy' if args.busy else ''})")
        if args.versus:
            _versus(*commands.items(), env=env, runs=args.runs)
            return
        if args.warmup_ab:
            _warmup_ab(commands, env, work, args.runs)
            return
        for name, cmd in commands.items():
            if args.cold:
                cold = dict(env, NUMBA_CACHE_DIR=str(work / "cold-cache"))
                shutil.rmtree(work / "cold-cache", ignore_errors=True)
                print(f"{name + ' (cold)':34} {_time(cmd, cold):7.2f}")
            _time(cmd, env)  # warm the cache
            runs = [_time(cmd, env) for _ in range(args.runs)]
            print(f"{name:34} {min(runs):7.2f} {statistics.median(runs):7.2f} {max(runs):7.2f}")
    finally:
        stop.set()
        if spinner:
            spinner.join()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

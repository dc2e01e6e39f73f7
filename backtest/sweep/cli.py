"""``tandem-backtest sweep``: options, validation before any work, and the summary.

Everything the user can get wrong (space file, paths, durations, --out, the profile name to
write) is checked before candles are loaded or a worker is started; each problem is one
``error:`` line and exit 2. Data problems and an unreachable scheduler exit 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SWEEP_EPILOG = """\
space file (YAML or JSON): dotted manifest paths → a list of values or a range, e.g.
  entry_threshold: [0.05, 0.1, 0.2]
  exit_rules.stop_loss_pct: {low: 0.02, high: 0.10, step: 0.01}
  exit_rules.intrabar: [pessimistic, ohlc]
  execution.size_pct: {low: 0.05, high: 0.5, log: true}     # random/tpe only
  portfolio.weighting: [score, equal, inverse_vol, hrp]     # portfolio mode
  portfolio.lookback: {low: 24, high: 168, step: 24}        # whole base bars
{fields}
A value the manifest refuses, by itself or with every value of the other swept fields
(min_weight above max_weight), is an error before any work.
outputs in --out: results.parquet (one row per trial x fold), best.json, daily_returns.parquet,
sweep.html + PNGs, parts/ (chunk results, for --resume).
"""


def _sweepable_text() -> str:
    """The sweepable fields, from the list the space check uses (so the help cannot drift)."""
    import textwrap

    from tandem.backtest.sweep.space import RATING_FIELDS, SWEEPABLE

    text = (f"sweepable fields: {', '.join(SWEEPABLE)}, mtf.weights.<timeframe>; not the "
            f"fields the shared ratings depend on ({', '.join(RATING_FIELDS)}).")
    return textwrap.fill(text, width=92, break_long_words=False, break_on_hyphens=False)


def _duration(text: str) -> int:
    from tandem.backtest.sweep.data import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return parse


_count = _int_at_least(1)
MAX_TRIALS = 1_000_000  # as MAX_GRID_TRIALS (not imported: --help stays light)


def trials_arg(text: str) -> int:
    """argparse type of ``--trials``: 1 .. MAX_TRIALS. Random/TPE trials are built in memory
    up front; a typo such as 10000000000 hung (or ran out of memory) without a word."""
    v = _count(text)
    if v > MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_TRIALS:,}, got {v:,}")
    return v


_workers = _int_at_least(0)
SEED_MAX = 2**32 - 1  # numpy's legacy RandomState (Optuna's TPE) takes 0 .. 2**32 - 1


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: an integer 0 .. 2**32 - 1. A negative one or a bigger one
    raised a numpy ValueError traceback after the data was loaded."""
    v = _workers(text)
    if v > SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be <= {SEED_MAX}, got {v}")
    return v


def add_sweep_parser(sub: Any, add_profile: Callable, add_data: Callable, epilog: str) -> None:
    p = sub.add_parser(
        "sweep", help="parameter sweep: grid/random/TPE search, walk-forward, DSR/PBO, Dask",
        description="Search profile parameters. The ratings are computed once; each trial "
                    "(the profile with the space's fields replaced, validated by the manifest "
                    "model) runs only the combiner and the engine, many trials per kernel "
                    "call, in this process or on a Dask cluster. Reports the in-sample (and "
                    "walk-forward out-of-sample) statistics of every trial, the winner, its "
                    "Deflated Sharpe Ratio and the Probability of Backtest Overfitting.",
        epilog=_SWEEP_EPILOG.replace("{fields}", _sweepable_text()) + "\n" + epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_profile(p)
    add_data(p)
    p.add_argument("--space", type=Path, required=True,
                   help="search space file (YAML or JSON; see below)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--search", choices=["grid", "random", "tpe"], default="grid",
                   help="grid = every combination (ranges need a step); random = --trials "
                   "seeded draws; tpe = Optuna's TPE sampler, asked in fixed batches of 16 "
                   "and told the (first fold's) in-sample objective (default: grid)")
    p.add_argument("--trials", type=trials_arg, help="number of trials for random/tpe (default 100); "
                   "with grid, keep only the first N combinations")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of random/tpe (default: 0)")
    p.add_argument("--walk-forward", type=_count, metavar="FOLDS",
                   help="walk-forward with FOLDS folds laid end to end, ending at the data end "
                   "(or --to); needs --train and --test")
    p.add_argument("--train", type=_duration, help="in-sample length per fold, e.g. 180d")
    p.add_argument("--test", type=_duration, help="out-of-sample length per fold, e.g. 60d")
    p.add_argument("--anchored", action="store_true", help="every fold's training starts at "
                   "the first fold's (expanding window) instead of rolling")
    p.add_argument("--objective", default="sharpe",
                   choices=["sharpe", "sortino", "calmar", "total_return", "profit_factor"],
                   help="what the winner maximises in-sample (calmar = CAGR / |max drawdown|; "
                   "default: sharpe)")
    p.add_argument("--workers", type=_workers, help="N >= 1: a local Dask cluster of N worker "
                   "processes; 0: this process, one chunk of trials at a time. Default: this "
                   "process, a thread per core (no cluster to start: the fastest on one "
                   "machine)")
    p.add_argument("--scheduler", metavar="URL", help="use an existing Dask cluster, e.g. "
                   "tcp://HOST:8786 (workers need tandem installed)")
    p.add_argument("--resume", action="store_true", help="reuse the chunk results already in "
                   "--out/parts (keyed by parameters + data fingerprint) and run only the rest")
    p.add_argument("--write-profile", metavar="NAME", help="add the chosen parameters as "
                   "profile NAME to a copy of the manifest (--out/manifest.json unless "
                   "--manifest-out) and print its profile hash")
    p.add_argument("--manifest-out", type=Path, help="where --write-profile writes the manifest")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with trials/s and ETA (default: on in a terminal)")


def cmd_sweep(args: argparse.Namespace, settings_fn: Callable, profile_fn: Callable,
              source_fn: Callable) -> int:
    from tandem.backtest.runner import ConfigError  # exit 2 in tandem-backtest's main
    from tandem.backtest.sweep.space import MAX_GRID_TRIALS, SpaceError, load_space

    settings = settings_fn()
    base, manifest_path = profile_fn(args, settings)
    if args.warmup_bars is not None:
        from tandem.backtest.runner import with_overrides

        # The written profile carries it too, so `run --profile NAME` loads the same bars.
        base = with_overrides(base, warmup_bars=args.warmup_bars)
    # --- validate everything before any work --------------------------------------------
    try:
        dims = load_space(args.space, base)
    except SpaceError as exc:
        raise ConfigError(str(exc)) from None
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder")
    from tandem.core.outpaths import OutPathError, check_out_dir, check_out_file

    try:  # under a file, or not writable: failed after the data was loaded, with a traceback
        check_out_dir(args.out, "--out")
        if args.write_profile:
            check_out_file(args.manifest_out or args.out / "manifest.json", "--manifest-out")
    except OutPathError as exc:
        raise ConfigError(str(exc)) from None
    if args.walk_forward is not None and (args.train is None or args.test is None):
        raise ConfigError("--walk-forward needs --train and --test (e.g. --train 180d --test 60d)")
    if args.walk_forward is None and (args.train or args.test or args.anchored):
        raise ConfigError("--train/--test/--anchored only apply with --walk-forward FOLDS")
    if args.workers is not None and args.scheduler:
        raise ConfigError("give either --workers or --scheduler, not both")
    if args.manifest_out is not None and not args.write_profile:
        raise ConfigError("--manifest-out only applies with --write-profile NAME")
    if args.search == "grid":
        try:
            sizes = [len(d.grid()) for d in dims]
        except SpaceError as exc:
            raise ConfigError(str(exc)) from None
        if math.prod(sizes) > MAX_GRID_TRIALS:
            raise ConfigError(
                f"the grid has {math.prod(sizes):,} trials ({' x '.join(map(str, sizes))}); at "
                f"most {MAX_GRID_TRIALS:,}: coarser steps, fewer values, or --search random/tpe "
                f"--trials N")
    manifest_out = args.manifest_out or args.out / "manifest.json"
    doc = None
    if args.write_profile:
        from tandem.backtest.sweep.profile_out import ProfileOutError, check_target

        try:
            doc = check_target(manifest_path, args.write_profile, manifest_out, base,
                               args.symbols)
        except ProfileOutError as exc:
            raise ConfigError(str(exc)) from None
    if args.scheduler:
        from tandem.backtest.sweep.executor import connect_check

        connect_check(args.scheduler)  # exit 1 within seconds, before loading anything
    # --- work ---------------------------------------------------------------------------
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.driver import SweepConfig, run_sweep, write_outputs
    from tandem.backtest.sweep.executor import make_executor

    source, _ = source_fn(args, settings, base)
    strategies = [base.strategy] + [v for d in dims if d.path == "strategy"
                                    for v in (d.values or ()) if isinstance(v, str)]
    strategies = [s for s in strategies if s in ("rating_all", "rating_ma", "rating_osc")]
    wf = (None if args.walk_forward is None
          else (args.walk_forward, args.train, args.test, args.anchored))
    data = load_sweep_data(base, source, args.start, args.end, args.symbols, strategies, wf)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = SweepConfig(search=args.search, trials=args.trials, seed=args.seed,
                      objective=args.objective, resume=args.resume, progress=args.progress)
    executor = make_executor(data, base, args.workers, args.scheduler)
    try:
        outcome = run_sweep(base, data, dims, cfg, args.out, executor)
    finally:
        executor.close()
    if args.write_profile and outcome.best["params"] is not None:
        from tandem.backtest.sweep.profile_out import write_profile

        outcome.best["profile_name"] = args.write_profile
        outcome.best["manifest"] = str(manifest_out)
        outcome.best["profile_hash"] = write_profile(doc, base, args.write_profile,
                                                     outcome.best["params"], manifest_out,
                                                     args.symbols)
    files = write_outputs(outcome, args.out, dims)
    _summary(outcome, files, args)
    if args.write_profile and outcome.best["params"] is None:
        # Exit 0 without the asked-for profile broke `sweep --write-profile X && run
        # --profile X` one step later, with an unrelated message.
        from tandem.backtest.runner import DataError

        where = " in the last fold" if args.walk_forward is not None else ""
        raise DataError(f"no winner: profile {args.write_profile!r} not written (no valid "
                        f"trial with a finite in-sample {args.objective}{where}; see "
                        f"{args.out / 'results.parquet'})")
    return 0


def _invalid_reasons(results: Any, top: int = 3) -> list[tuple[str, int]]:
    """The most frequent messages of invalid trials: "0 valid" alone hid that a whole
    field's values were refused (a percent given as 5 instead of 0.05)."""
    bad = results.loc[~results["valid"] & (results["fold"] == results["fold"].min()), "error"]
    counts = bad.str.replace(r"^trial: profile '[^']*', ", "", regex=True).value_counts()
    return [(str(k), int(v)) for k, v in counts.head(top).items()]


def _undefined_objectives(results: Any, objective: str) -> int:
    """Valid trials (first fold) whose in-sample objective is NaN or infinite."""
    from tandem.backtest.sweep.driver import objective_values

    first = results[results["fold"] == results["fold"].min()]
    return int((first["valid"] & objective_values(first, objective, "is").isna()).sum())


def _summary(outcome: Any, files: dict[str, Path], args: argparse.Namespace) -> None:
    b = outcome.best
    out = sys.stdout
    distinct = (f"{b['n_distinct']} distinct, " if b.get("n_distinct", b["n_trials"])
                != b["n_trials"] else "")
    print(f"trials        {b['n_trials']} ({distinct}{b['n_valid']} valid), search "
          f"{b['search']}, objective {b['objective']}", file=out)
    for reason, n in _invalid_reasons(outcome.results):
        print(f"invalid       {n} x {reason}", file=out)
    if n_undefined := _undefined_objectives(outcome.results, b["objective"]):
        # A valid trial whose objective is NaN or infinite never wins (fold_winners): say
        # so, since "profit factor inf" (no losing trade) reads like the best there is.
        print(f"no objective  {n_undefined} valid trial(s) have no finite in-sample "
              f"{b['objective']} (e.g. no losing trade, no drawdown) and cannot win", file=out)
    if b.get("no_effect"):
        # Every value of these gave the same numbers: the winner's value for them is only
        # the first of a tie, not a finding (a unit mistake, or a setting the profile ignores).
        tie = "; the winner's value for it is arbitrary" if b["trial"] is not None else ""
        print(f"no effect     {', '.join(b['no_effect'])}: each value gave the same results "
              f"as the others (a unit mistake? a setting this profile does not use?){tie}",
              file=out)
    if b["trial"] is None:
        print("winner        none (no valid trial with a finite objective)", file=out)
    else:
        print(f"winner        trial {b['trial']}: {b['params']}", file=out)
        print(f"in-sample     {b['objective']} = {b['value']:.4f}", file=out)
    # Every fold with walk-forward: --walk-forward 1 printed no out-of-sample figure at all.
    for f in b["folds"] if args.walk_forward is not None else []:
        oos = f.get("oos_value")
        print(f"fold {f['fold']:<8} trial {f['trial']}  IS {f.get('is_value', float('nan')):.4f}"
              f"  OOS {'n/a' if oos is None else f'{oos:.4f}'}", file=out)
    if b.get("dsr") is not None:
        print(f"DSR           {b['dsr']:.4f}", file=out)
    if b.get("pbo") is not None:
        pbo = b.get("overfit", {}).get("pbo", {})
        part = (f" (the last {pbo['n_obs']} of {pbo['n_obs'] + pbo['dropped_rows']} days)"
                if pbo.get("dropped_rows") else "")
        print(f"PBO           {b['pbo']:.4f}{part}", file=out)
    if b.get("profile_hash"):
        print(f"profile       {b['profile_name']} written to {b['manifest']} "
              f"(profile hash {b['profile_hash']})", file=out)
    print(f"output        {args.out}", file=out)
    page = files.get("html") or files.get("sweep.html")  # write_sweep_report names it "html"
    if page is not None:
        print(f"report        {page}", file=out)

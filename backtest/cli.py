"""``tandem-backtest``: run, demo, download, look-ahead probe and feature export.

Each subcommand is a thin shell over library calls (:mod:`tandem.backtest.runner`, the core);
this module only parses arguments, resolves defaults (``TANDEM_*`` settings), prints
results and maps errors to exit codes:

* 0 — success;
* 1 — the data cannot serve the request (no candles in range, missing symbol file, corrupt
  file), or the look-ahead probe found a difference;
* 2 — usage or configuration error (bad option, unknown profile, invalid manifest/settings).

Every error is one line on stderr starting with ``error:``; nothing is written before the
inputs are validated.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.core.cliparser import OneLineParser
from tandem.core.exiting import exit_fast
from tandem.core.utc import ms_from_iso

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
DEMO_FIRST_TRADABLE = 1_704_067_200_000  # 2024-01-01T00:00Z

_EPILOG = """\
exit codes: 0 ok · 1 data problem (no candles in range, missing symbol, corrupt file) or
look-ahead difference · 2 usage/config error (bad option, unknown profile, invalid manifest).
Defaults come from TANDEM_MANIFEST_PATH, TANDEM_PROFILE and TANDEM_DATA_DIR (see .env.example).
Dates are UTC: 2021-02-01, 2021-02-01T12:00 or epoch milliseconds; --from is inclusive and
--to exclusive, on bar open times."""


class UsageError(Exception):
    """Bad arguments or configuration → exit 2."""


def _date(text: str) -> int:
    """argparse type: a UTC date/time or epoch ms → epoch ms."""
    if text.strip().lstrip("-").isdigit():
        ms = int(text)
        from tandem.core.candles import ms_option_problem

        if (problem := ms_option_problem(ms)) is not None:  # seconds read as ms: 1970
            raise argparse.ArgumentTypeError(f"{text[:40]} {problem}")
    elif (iso := ms_from_iso(text)) is not None:
        ms = iso
    else:
        import pandas as pd  # the forms ISO 8601 lacks ("Feb 1 2021"); pandas costs ~0.3 s

        try:
            ts = pd.Timestamp(text)
            if ts is pd.NaT:
                raise ValueError(text)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            ms = int(ts.value // 1_000_000)  # OverflowError past 2262 (pandas' ns range)
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            ms = -1  # a date, but one pandas cannot hold: the range message below
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(
                f"not a date: {text[:40]!r} (use e.g. 2021-02-01 or 2021-02-01T12:00, UTC)"
            ) from None
    if not 0 <= ms <= _MAX_MS:  # past it, pandas fails later with OutOfBoundsDatetime
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is outside 1970-01-01 .. 2262-04-11")
    return ms


_MAX_MS = 9_223_372_036_854  # pandas' last representable time (2262-04-11), in ms


def _symbols(text: str) -> list[str]:
    """argparse type: comma-separated ccxt symbols."""
    out = [s.strip() for s in text.split(",") if s.strip()]
    if not out:
        raise argparse.ArgumentTypeError("empty symbol list")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _at_least_one(text: str) -> int:
    """argparse type: an integer >= 1 (``lookahead --cuts 0`` probed 5 cuts anyway)."""
    v = _positive_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


# ------------------------------------------------------------------------------ parser


def _add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="manifest profile to use (default: TANDEM_PROFILE, else "
                   "the manifest's default_profile)")
    p.add_argument("--manifest", type=Path, help="strategy manifest JSON (default: "
                   "TANDEM_MANIFEST_PATH, else ./manifest.json, else the repository's)")


def _add_data_args(p: argparse.ArgumentParser, *, dates: bool = True) -> None:
    p.add_argument("--data", type=Path, help="candles: a candle-store folder "
                   "(<exchange>/<BASE-QUOTE>/<tf>.parquet), a folder of CSVs named "
                   "<exchange>_<BASE-QUOTE>_<tf>.csv (the ../shared/data format), or a long-format "
                   "universe .parquet (default: TANDEM_DATA_DIR, else ./data)")
    p.add_argument("--symbols", type=_symbols, help="comma-separated subset of the profile's "
                   "assets to run (default: all core assets and universe, manifest order)")
    if dates:
        p.add_argument("--from", dest="start", type=_date, help="first tradable bar (open time, "
                       "UTC, inclusive); the warm-up bars before it are loaded as well. Default: "
                       "the first bar of the data plus the warm-up")
        p.add_argument("--to", dest="end", type=_date, help="end of the run (open time, UTC, "
                       "exclusive). Default: the last bar of the data")
    p.add_argument("--warmup-bars", type=_positive_int, help="override the profile's warm-up "
                   "(base bars fed before the first tradable bar; nothing trades during them)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of ``tandem-backtest`` (also used to render ``--help``)."""
    # One line on a bad option (the usage block came first, then the error).
    parser = OneLineParser(
        prog="tandem-backtest",
        description="Backtest Tandem strategy profiles on stored candles with the same numba "
                    "core the paper-trading daemon runs.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="stderr log verbosity (default: warning)")
    parser.add_argument("--log-json", action="store_true", help="structured JSON log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run", help="backtest a profile and write fills, trades, equity, stats and a report",
        description="Load candles, compute multi-timeframe ratings and signals, drive the core "
                    "engine over every time slice, and write fills.csv, fills.parquet (the "
                    "journal format), trades.csv, equity.csv, stats.json, report.html and "
                    "equity.png into --out.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_args(run)
    _add_data_args(run)
    run.add_argument("--out", type=Path, help="output folder (default: runs/<profile>-<mode>)")
    run.add_argument("--mode", choices=["discrete", "portfolio"], help="override the profile's "
                     "execution mode: discrete = entries/exits from signals; portfolio = "
                     "target weights at each rebalance bar")
    run.add_argument("--run-id", help="run id written in the journal (default: derived from "
                     "profile, assets and range, so a rerun is byte-identical)")
    run.add_argument("--chart", action="append", metavar="SYMBOL", help="asset(s) to show "
                     "with trade markers in report.html (repeatable; default: core assets, "
                     "then the most traded)")
    run.add_argument("--no-report", action="store_true", help="skip report.html / equity.png")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar (default: on for long runs in a terminal)")
    from tandem.backtest.reconcile.cli import (
        add_candles_from,
        register_fingerprints,
        register_reconcile,
    )

    add_candles_from(run)  # --candles-from <daemon db> (reconcile room)

    demo = sub.add_parser(
        "demo", help="generate demo candles and backtest the default profile on them",
        description="Draw realistic synthetic candles (seeded GBM with volatility clusters) "
                    "for the profile's assets into a candle store, backtest the profile on "
                    "them and print the statistics and where the report is. Needs no "
                    "downloaded data and no network.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_args(demo)
    demo.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    demo.add_argument("--days", type=_positive_int, default=180,
                      help="tradable days to generate after the warm-up (default: 180)")
    demo.add_argument("--seed", type=_positive_int, default=7,  # numpy refuses a negative one
                      help="random seed, >= 0 (default: 7)")
    demo.add_argument("--mode", choices=["discrete", "portfolio"],
                      help="override the profile's execution mode")

    from tandem.backtest.download_cli import (
        DOWNLOAD_DESCRIPTION,
        DOWNLOAD_HELP,
        add_download_arguments,
    )

    dl = sub.add_parser("download", help=DOWNLOAD_HELP, description=DOWNLOAD_DESCRIPTION,
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_download_arguments(dl)  # the download room owns its options

    la = sub.add_parser(
        "lookahead", help="look-ahead probe: signals on truncated data equal the full run",
        description="For many cut points t, recompute the profile's signals on the bars up to "
                    "t only and compare with the full run's signals up to t. Any difference "
                    "means a look-ahead bug; the command then exits 1.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_args(la)
    _add_data_args(la)
    la.add_argument("--cuts", type=_at_least_one, default=20,
                    help="number of cut points, >= 1 (default: 20)")
    la.add_argument("--warmup-lengths", type=lambda t: [_positive_int(x) for x in t.split(",")],
                    metavar="N,N,...", help="also report how much ratings and signals move "
                    "when the warm-up is only N bars instead of all bars before --from "
                    "(freqtrade's recursive analysis), e.g. 0,500,2000")

    fe = sub.add_parser(
        "features", help="write the wide feature matrix (every timeframe's ratings) as Parquet",
        description="One row per (asset, base bar) with each timeframe's ratings and component "
                    "votes (last closed values), the input a research model would use.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_args(fe)
    _add_data_args(fe)
    fe.add_argument("--out", type=Path, help="output Parquet file "
                    "(default: runs/<profile>-features.parquet)")
    from tandem.backtest.sweep.cli import add_sweep_parser

    add_sweep_parser(sub, _add_profile_args, _add_data_args, _EPILOG)
    register_reconcile(sub)  # tandem-backtest reconcile (reconcile room)
    register_fingerprints(sub)  # tandem-backtest fingerprints (reconcile room)
    return parser


# ------------------------------------------------------------------------------ helpers


def _settings() -> Any:
    from tandem.core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    # TANDEM_NUMBA_CACHE_DIR was applied by the daemon only: the backtest compiled into the
    # default folder whatever .env said. Before any kernel module is imported.
    settings.apply_numba_cache_dir()
    return settings


def _profile(args: argparse.Namespace, settings: Any, *, mode: str | None = None,
             warmup: int | None = None) -> Any:
    """Load the manifest and the profile (with CLI overrides); UsageError on any problem."""
    from tandem.backtest.runner import ConfigError, with_overrides
    from tandem.core.manifest import ManifestError, load_manifest, resolve_manifest_path

    path = resolve_manifest_path(args.manifest, settings.manifest_path)
    try:
        prof = load_manifest(path).profile(args.profile or settings.profile)
        return with_overrides(prof, mode=mode, warmup_bars=warmup)
    except (ManifestError, ConfigError) as exc:
        raise UsageError(str(exc)) from None


def _profile_only(args: argparse.Namespace, settings: Any) -> tuple[Any, Path]:
    """The profile and the manifest path it came from (sweep writes a copy of it)."""
    from tandem.core.manifest import ManifestError, load_manifest, resolve_manifest_path

    path = resolve_manifest_path(args.manifest, settings.manifest_path)
    try:
        return load_manifest(path).profile(args.profile or settings.profile), path
    except ManifestError as exc:
        raise UsageError(str(exc)) from None


def _source(args: argparse.Namespace, settings: Any, profile: Any) -> tuple[Any, str]:
    from tandem.core.store import CandleStoreError, open_candles

    path = args.data if args.data is not None else Path(settings.data_dir)
    try:
        # The label goes into stats.json, where `reconcile` finds the history to compare
        # with: absolute, so that it names these candles from any working directory (a
        # relative `data` found nothing there, or another folder of the same name).
        return (open_candles(path, exchange=profile.exchange, timeframe=profile.base_timeframe),
                str(Path(path).resolve()))
    except CandleStoreError as exc:
        from tandem.backtest.runner import DataError

        msg = str(exc)
        if args.data is None and not path.exists():
            # A first-time user runs without --data; tell them where candles come from.
            msg += (" (no --data given and TANDEM_DATA_DIR/./data is absent: pass --data PATH, "
                    "fetch candles with `tandem-backtest download`, or try `tandem-backtest demo`)")
        raise DataError(msg) from None


def _check_out(path: Path, *, folder: bool) -> None:
    """``--out`` must be writable as a folder (or a file for ``features``): checked before
    any candle is loaded, so a bad path costs no compute (UsageError, exit 2)."""
    from tandem.core.outpaths import OutPathError, check_out_dir, check_out_file

    try:
        (check_out_dir if folder else check_out_file)(path, "--out")
    except OutPathError as exc:
        raise UsageError(str(exc)) from None


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.2f}%"
    return f"{v:,.3f}" if isinstance(v, float) else str(v)


def _exit_rules_text(profile: Any) -> str:
    """The SL/TP/trailing levels as percentages: the manifest takes fractions (0.05 = 5 %),
    and a ``take_profit_pct: 5`` meant as 5 % runs as +500 %; shown, it cannot pass unseen."""
    er = profile.exit_rules
    parts = [(name, getattr(er, field)) for name, field in (
        ("stop-loss", "stop_loss_pct"), ("take-profit", "take_profit_pct"),
        ("trailing", "trailing_stop_pct"))]
    return " · ".join(f"{name} {_fmt(v, True) if v else 'off'}" for name, v in parts)


def _costs_text(profile: Any) -> str:
    """Fee and slippage as the engine applies them: ``fee_rate`` is a fraction (0.001 =
    0.1 %), and a ``0.075`` meant as Binance's 0.075 % runs as 7.5 % a fill (-30 % on a
    month of real candles, exit 0); shown, it cannot pass unseen."""
    ex = profile.execution
    fee = f"{100 * ex.fee_rate:.4g}%"
    return (f"fee {fee} of each fill's value · slippage {ex.slippage_bps:g} bps "
            f"({ex.slippage_bps / 100:.4g}%) · min trade {ex.min_trade_value:g}")


def _funding_rows(profile: Any) -> list[tuple[str, str]]:
    """With ``long_short``, the funding rule (the engine's "Funding"): short proceeds once
    paid for longs, 2x gross exposure at ``size_pct`` 1 without a word; now the rule that
    prevents it is printed. No row for long-only profiles (their summary is unchanged)."""
    if not profile.execution.long_short:
        return []
    return [("funding", "entries from free cash: a short locks its proceeds and as much "
                        "again (no leverage; an entry that does not fit is skipped)")]


_SKIP_LABELS = (("unfunded", "unfunded"), ("below_min_trade_value", "below min trade"))


def _skipped_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """Entry signals the engine did not act on, by cause: fewer trades than signals once
    went without a word. Counted per bar and asset while flat (a signal held 5 bars counts
    5), hence "signal bars". No row when none (stats.json always has the count)."""
    n = stats.get("n_entries_skipped")
    if not n:
        return []
    by = stats.get("entries_skipped") or {}
    parts = " · ".join(f"{label} {by[k]}" for k, label in _SKIP_LABELS if by.get(k))
    return [("entries skipped", f"{n} signal bars ({parts})")]


def _gaps_note(n_bars: int, periods: int | None) -> str:
    """`` of 2880 periods (gaps: CAGR/Sharpe count bars)`` when slices are missing."""
    if not periods or periods <= n_bars:
        return ""
    return f" of {periods} periods (gaps: CAGR, Sharpe, Sortino count bars)"


def print_summary(result: Any, out: Any = None, profile: Any = None) -> None:
    """Headline statistics and file locations, for people (stdout); with ``profile``, also
    its exit rules."""
    from tandem.backtest.report import without_bars_note

    out = out or sys.stdout
    s, m = result.stats, result.meta
    rows = [
        ("profile", f"{m['profile']} ({m['strategy']}, {m['mtf']} MTF {'/'.join(m['timeframes'])}, "
                    f"{m['mode']})"),
        *([("exit rules", _exit_rules_text(profile)), ("costs", _costs_text(profile)),
           *_funding_rows(profile)] if profile is not None else []),
        ("data", f"{m['first_tradable_bar']} → {m['last_bar']} · {s['n_bars']} bars"
                 f"{_gaps_note(s['n_bars'], m.get('bar_periods'))} · "
                 f"{m['n_assets']} assets{without_bars_note(m)} · warm-up "
                 f"{m['warmup_bars_available']}/{m['warmup_bars']}"),
        ("total return", _fmt(s["total_return"], True)),
        ("CAGR", _fmt(s["cagr"], True)),
        ("Sharpe / Sortino", f"{_fmt(s['sharpe'])} / {_fmt(s['sortino'])}"),
        ("max drawdown", _fmt(s["max_drawdown"], True)),
        ("trades (open)", f"{s['n_trades']} ({s['n_open_trades']})"),
        *_skipped_rows(s),
        ("win rate", _fmt(s["win_rate"], True)),
        ("profit factor", _fmt(s["profit_factor"])),
        ("exposure", _fmt(s["exposure"], True)),
        ("fees", _fmt(s["fees"])),
        ("final equity", _fmt(s["final_equity"])),
        ("run id", result.run_id),
        ("fingerprint", m["run_fingerprint"][:16]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
    if result.files:
        folder = Path(next(iter(result.files.values()))).parent
        print(f"{'output':<{width}}  {folder}", file=out)
        if "report.html" in result.files:
            print(f"{'report':<{width}}  {result.files['report.html']}", file=out)


# ------------------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    from tandem.backtest.runner import run_backtest

    settings = _settings()
    profile = _profile(args, settings, mode=args.mode, warmup=args.warmup_bars)
    from tandem.backtest.reconcile.cli import candles_from_source

    if args.run_id is not None and not args.run_id.strip():
        raise UsageError("--run-id is empty (a journal's missing run id reads as empty)")
    if args.chart and args.no_report:  # the chart lives in report.html: it was ignored
        raise UsageError("--chart draws into report.html, which --no-report skips; drop one")
    traded = args.symbols or profile.assets
    stray = [s for s in args.chart or () if s not in traded]
    if stray:  # the report dropped it silently and showed no asset chart at all
        raise UsageError(f"--chart {stray[0]}: not among the run's assets "
                         f"({', '.join(traded[:10])}{' ...' if len(traded) > 10 else ''})")
    out = args.out or Path("runs") / f"{profile.name}-{profile.execution.mode}"
    _check_out(out, folder=True)  # before minutes of compute, not after
    source = candles_from_source(args, profile.base_timeframe)  # run --candles-from <daemon db>
    if source is not None:
        label = "daemon db " + ", ".join(str(p) for p in args.candles_from)
    else:
        source, label = _source(args, settings, profile)
    result = run_backtest(profile, source, args.start, args.end, out, symbols=args.symbols,
                          run_id=args.run_id, data_label=label, chart_symbols=args.chart,
                          progress=args.progress, report=not args.no_report)
    print_summary(result, profile=profile)
    from tandem.core.fingerprint import fingerprint_line

    # The same line tandem-daemon prints; the run hash is the one the runner computed.
    print(fingerprint_line(result.fills_table, run_hash=result.meta["run_fingerprint"]))
    return EXIT_OK


DEMO_MARKER = ".tandem-demo"


def _fresh_demo_store(store_dir: Path) -> None:
    """Clear the candles an earlier demo wrote into ``store_dir``; refuse anything else.

    The store keeps the first bar written at each ts, so a rerun into the same ``--out``
    with another seed or profile silently backtested the *old* candles under the new label.
    A folder the demo did not write (no marker) may hold real candles: never delete it.
    """
    import shutil

    if not store_dir.exists():
        return
    if not (store_dir / DEMO_MARKER).is_file():
        raise UsageError(f"{store_dir} exists and was not written by `tandem-backtest demo`; "
                         "pick another --out")
    shutil.rmtree(store_dir)


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from tandem.backtest.demo_data import generate_candles
    from tandem.backtest.runner import run_backtest
    from tandem.core.store import CandleStore
    from tandem.core.timeframes import timeframe_to_ms

    settings = _settings()
    profile = _profile(args, settings, mode=args.mode)
    if args.out is not None:
        _check_out(args.out, folder=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="tandem-demo-"))
    store_dir = out / "candles"
    base_ms = timeframe_to_ms(profile.base_timeframe)
    tradable = args.days * 86_400_000 // base_ms
    if tradable <= 0:
        raise UsageError("--days must be at least one day")
    _fresh_demo_store(store_dir)
    # First tradable bar: 2024-01-01 UTC; the data starts a whole warm-up earlier (floored
    # to a day so the first 4h/1d buckets are complete).
    first_tradable = DEMO_FIRST_TRADABLE
    start = (first_tradable - profile.warmup * base_ms) // 86_400_000 * 86_400_000
    n_bars = (first_tradable - start) // base_ms + tradable
    t0 = time.perf_counter()
    tf = profile.base_timeframe
    candles = generate_candles(profile.assets, start=start, n_bars=n_bars, timeframe=tf,
                               seed=args.seed)
    store = CandleStore(store_dir, exchange=profile.exchange, timeframe=tf)
    for sym, frame in candles.items():
        store.append(sym, frame)
    (store_dir / DEMO_MARKER).write_text(f"generated by tandem-backtest demo, seed {args.seed}\n")
    print(f"demo candles: {len(candles)} assets × {n_bars} {tf} bars (warm-up "
          f"{n_bars - tradable} + {tradable} tradable, seed {args.seed}) in {store_dir} "
          f"[{time.perf_counter() - t0:.1f} s]")
    # A fresh install spends ~1-2 min compiling the numba core here with no output at all;
    # say so, or a first-time user takes the silence for a hang.
    print("backtesting… (the first run compiles the numba core, 1-2 min; later runs reuse "
          "the compile cache)", flush=True)
    result = run_backtest(profile, store, first_tradable, None, out,
                          data_label=f"demo (seed {args.seed})", progress=None)
    print_summary(result, profile=profile)
    print(f"\nopen {result.files['report.html']} in a browser to see the equity curve, "
          "drawdown and trades.")
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from tandem.backtest.download_cli import cli_main

    settings = _settings()  # TANDEM_DATA_DIR from .env too, as `run` reads it
    profile = None
    if args.profile is not None or args.manifest is not None:
        profile, _ = _profile_only(args, settings)
        if args.exchange is not None and args.exchange != profile.exchange:
            # the store keeps one folder per venue: these candles would not be the profile's
            raise UsageError(f"--exchange {args.exchange}: profile {profile.name!r} trades on "
                             f"{profile.exchange}")
    return cli_main(args, settings, profile)


def cmd_lookahead(args: argparse.Namespace) -> int:
    from tandem.backtest.runner import load_window
    from tandem.core.lookahead import lookahead_probe, warmup_sensitivity

    settings = _settings()
    profile = _profile(args, settings, warmup=args.warmup_bars)
    source, _ = _source(args, settings, profile)
    w = load_window(profile, source, args.start, args.end, args.symbols)
    a = w.candles
    prices = (a.open, a.high, a.low, a.close, a.volume)
    report = lookahead_probe(profile, a.ts, *prices, symbols=w.symbols, n_cuts=args.cuts)
    print(report.summary())
    if args.warmup_lengths:
        lengths = sorted({min(x, w.k0) for x in args.warmup_lengths} | {w.k0})
        # Lengths count the bars loaded before the first tradable one (rows); `run` reports
        # bar periods, which count the gaps too: both are printed, or they seemed to disagree.
        print(f"\nwarm-up sensitivity (from the first tradable bar on, vs the {w.k0} bars "
              f"loaded before it; {w.warmup_available} bar periods with the gaps, as `run` "
              "reports them):")
        for rec in warmup_sensitivity(profile, a.ts, *prices, w.k0, lengths, symbols=w.symbols):
            diffs = "  ".join(f"max|Δ| {tf} {rec[f'max_diff_{tf}']:.4f} (NaN {rec[f'nan_{tf}']})"
                              for tf in profile.timeframes)
            # Portfolio mode trades the target weights, which moved ~4x as often as the
            # signals on real data (weights are normalised over every asset's score): the
            # signals' figure alone understated how much a short warm-up changes the run.
            weights = (f"  weights differ {100 * rec['target_diff']:.2f}% (max|Δw| "
                       f"{rec['max_target_diff']:.4f})"
                       if profile.execution.mode == "portfolio" else "")
            print(f"  warm-up {rec['warmup_bars']:>6} bars: {diffs}  signals differ "
                  f"{100 * rec['signal_diff']:.2f}%{weights}")
    return EXIT_OK if report.ok else EXIT_DATA


def cmd_features(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tandem.backtest.runner import DataError, load_window
    from tandem.core.features import export_features

    settings = _settings()
    profile = _profile(args, settings, warmup=args.warmup_bars)
    out = args.out or Path("runs") / f"{profile.name}-features.parquet"
    _check_out(out, folder=False)
    if out.suffix.lower() not in (".parquet", ".pq"):
        # `--out features.csv` got Parquet bytes under a .csv name, read as garbage later
        raise UsageError(f"--out {out}: the feature matrix is written as Parquet; name the "
                         "file .parquet")
    data = (args.data if args.data is not None else Path(settings.data_dir)).resolve()
    if out.resolve() == data or data in out.resolve().parents:
        # `--out` = the universe file (or a store's 1h.parquet) replaced the candles it read
        raise UsageError(f"--out {out} is inside the candle data {data}; writing there could "
                         "replace a candle file: pick a path outside --data")
    source, _ = _source(args, settings, profile)
    w = load_window(profile, source, args.start, args.end, args.symbols)
    a = w.candles
    # Written under a temporary name, then renamed: a write that fails (disk full) or is
    # interrupted left the previous matrix truncated, or one still holding warm-up rows.
    # (a symlinked --out: its target is what gets replaced, as a direct write did)
    target = out.resolve() if out.is_symlink() else out
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        n = export_features(profile, tmp, a.ts, a.open, a.high, a.low, a.close, a.volume,
                            symbols=w.symbols)
        if w.k0 > 0:
            # The warm-up rows only seeded the indicators: keep the requested range.
            table = pq.read_table(tmp)
            table = table.filter(pc.greater_equal(table["ts"], w.start_ms))
            pq.write_table(table, tmp)
            n = table.num_rows
        os.replace(tmp, target)
    except OSError as exc:  # passed the checks, the write failed: one line, exit 1
        tmp.unlink(missing_ok=True)
        raise DataError(f"--out {out}: cannot write the feature matrix: "
                        f"{exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"features: {n} rows ({len(w.symbols)} assets, timeframes "
          f"{'/'.join(profile.timeframes)}, from {w.start_ms}) -> {out}")
    return EXIT_OK


def _subset_hint(args: argparse.Namespace, exc: Exception) -> str:
    """A hint when the data lacks some of the profile's assets and no --symbols was given.

    The shipped profiles trade 20 assets; a CSV folder such as ../shared/data holds four,
    so a first run there fails on a missing symbol until the user learns about --symbols.
    """
    from tandem.core.store import SymbolNotFoundError

    if isinstance(exc.__cause__, SymbolNotFoundError) and getattr(args, "symbols", 1) is None:
        return "; to run only some of the profile's assets, pass --symbols A/B,C/D"
    return ""


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "download": cmd_download,
    "lookahead": cmd_lookahead,
    "features": cmd_features,
    "sweep": lambda args: __import__("tandem.backtest.sweep.cli", fromlist=["cmd_sweep"]).cmd_sweep(
        args, _settings, _profile_only, _source),
    "reconcile": lambda args: args.func(args),  # backtest.reconcile.cli.cmd_reconcile
    "fingerprints": lambda args: args.func(args),  # backtest.reconcile.cli.cmd_fingerprints
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tandem-backtest``; returns the exit code."""
    from tandem.core.stdout import tolerate_closed_stdout

    with tolerate_closed_stdout():  # `... | head`: the rest of the output is dropped
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tandem.backtest.logs import configure_logging
    from tandem.backtest.runner import ConfigError, DataError

    configure_logging(args.log_level, args.log_json)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataError as exc:
        print(f"error: {exc}{_subset_hint(args, exc)}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # A write that fails after the output checks passed (disk full, an I/O error):
        # `run` ended in a traceback after the whole backtest. One line, exit 1 (runtime).
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_DATA



def entry_point() -> None:
    """The ``tandem-backtest`` console script: :func:`main`, then exit."""
    exit_fast(main())


if __name__ == "__main__":
    entry_point()

"""Command-line faces, registered into ``tandem-backtest`` by ``backtest/cli.py``:

* ``tandem-backtest reconcile --paper <fills|daemon db> --backtest <fills> [--candles <db>]``
  (:func:`register_reconcile`): prints the terminal summary, optionally writes the
  Markdown/HTML/CSV reports, exits 0 within tolerance, 1 otherwise, 2 on bad input;
* ``tandem-backtest run --candles-from <daemon db>`` (:func:`add_candles_from` adds the
  option, :func:`candles_from_source` builds the candle source the run reads instead of
  its ``--data``): backtest exactly the candles the daemon consumed.

* ``tandem-backtest fingerprints <journal>...`` (:func:`register_fingerprints`): the run
  fingerprint line and one fingerprint per trade, ready to ``diff`` between two runs.

Kept in this package so the backtest CLI's owner only adds the registration calls.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# The reconcile machinery (pandas, the core's kernels) is imported by the commands that
# run it: registering the options must not slow down every tandem-backtest command.
if TYPE_CHECKING:
    from tandem.backtest.reconcile.sources import DaemonCandleSource


def register_reconcile(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``reconcile`` sub-command; its handler is stored as ``func``."""
    p = subparsers.add_parser(
        "reconcile",
        help="compare paper fills (or a daemon db) with backtest fills and explain differences",
        description=(
            "Match fills by (profile, symbol, ts, side, reason); report matched, mismatched "
            "and missing fills, equity/PnL drift, and classify every difference as data, "
            "intrabar, rounding, config or logic. Exit 0 within tolerance, 1 otherwise."
        ),
    )
    p.add_argument("--paper", action="append", required=True, metavar="PATH",
                   help="paper fills CSV/Parquet or daemon SQLite db (repeatable)")
    p.add_argument("--backtest", action="append", required=True, metavar="PATH",
                   help="backtest fills CSV/Parquet or run folder (repeatable)")
    p.add_argument("--candles", action="append", metavar="DB",
                   help="daemon db(s) whose journaled candles explain data differences "
                        "(default: the --paper inputs that are dbs)")
    p.add_argument("--history", metavar="PATH",
                   help="stored candles the backtest read (store folder, CSV folder or "
                        "universe parquet), compared bar by bar with the daemon's candles "
                        "(default: the data named in the backtest's stats.json)")
    p.add_argument("--manifest", metavar="PATH",
                   help="manifest the backtest ran with (for the config check)")
    p.add_argument("--tolerance", type=float, default=0.0, metavar="REL",
                   help="relative tolerance on price/qty/fee/position/cash (default 0: exact)")
    p.add_argument("--abs-tolerance", type=float, default=0.0, metavar="ABS",
                   help="absolute tolerance added to the relative one (default 0)")
    p.add_argument("--equity-tolerance", type=float, default=None, metavar="QUOTE",
                   help="also fail when |equity drift| exceeds this (quote currency)")
    p.add_argument("--out", metavar="DIR", help="write reconcile.md, reconcile.html, reconcile_differences.csv here")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report to FILE")
    p.add_argument("--html", metavar="FILE", help="write the HTML report to FILE")
    p.set_defaults(func=cmd_reconcile)
    return p


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Run reconcile from parsed arguments; returns the process exit code."""
    from tandem.backtest.reconcile.api import reconcile
    from tandem.backtest.reconcile.match import Tolerance
    from tandem.backtest.reconcile.sources import ReconcileInputError
    from tandem.core.outpaths import OutPathError, check_out_dir, check_out_file
    from tandem.core.store import CandleStoreError

    try:  # output paths first: a bad one must not cost the whole comparison
        if args.out:
            check_out_dir(args.out, "--out")
        for option, path in (("--markdown", args.markdown), ("--html", args.html)):
            if path:
                check_out_file(path, option)
        _check_not_an_input(args)
    except OutPathError as exc:
        print(f"reconcile: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = reconcile(
            args.paper,
            args.backtest,
            candles=args.candles,
            tolerance=Tolerance(rel=args.tolerance, abs=args.abs_tolerance, equity=args.equity_tolerance),
            history=args.history,
            backtest_manifest=args.manifest,
        )
    except (ReconcileInputError, ValueError, OSError, sqlite3.Error, CandleStoreError) as exc:
        # CandleStoreError: a --history that is not there or not candles (was a traceback)
        print(f"reconcile: error: {exc}", file=sys.stderr)
        return 2
    _say(report.to_terminal())
    if args.out:
        for path in report.write(args.out):
            _say(f"wrote {path}")
    for path, text in ((args.markdown, report.to_markdown), (args.html, report.to_html)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(), encoding="utf-8")
            _say(f"wrote {path}")
    return report.exit_code


def _say(text: str) -> None:
    """A result line on stdout. ``tandem-backtest``'s main drops what a reader that left
    (``reconcile ... | head``) cannot take: the files are still written and the exit code
    is the verdict's."""
    print(text, flush=True)


def _check_not_an_input(args: argparse.Namespace) -> None:
    """An output that is one of the inputs (``--markdown runs/x/fills.csv``) was overwritten
    with the report after the comparison: refused, before any work."""
    from tandem.core.outpaths import OutPathError

    inputs = set()
    for raw in [*args.paper, *args.backtest, *(args.candles or []), args.manifest, args.history]:
        if raw is not None:
            p = Path(raw)  # a run folder is read through its fills files
            inputs.update([p / "fills.parquet", p / "fills.csv"] if p.is_dir() else [p])
    inputs = {p.resolve() for p in inputs if p.is_file()}
    names = ("reconcile.md", "reconcile.html", "reconcile_differences.csv")
    outputs = [("--out", Path(args.out) / n) for n in names] if args.out else []
    outputs += [(o, Path(v)) for o, v in (("--markdown", args.markdown), ("--html", args.html)) if v]
    for option, path in outputs:
        if path.resolve() in inputs:
            raise OutPathError(f"{option} would overwrite {path}, an input of this comparison; "
                               "pick another path")


def register_fingerprints(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``fingerprints`` sub-command; its handler is stored as ``func``."""
    p = subparsers.add_parser(
        "fingerprints",
        help="print a journal's run fingerprint and one fingerprint per trade",
        description=(
            "Print the fingerprint line both drivers print, then one line per trade: "
            "fingerprint, trade id (profile:symbol:entry_ts), fill count and whether it is "
            "still open. Equal lines = equal fills (source and run_id aside); diff the "
            "output of two runs to find the first trade that differs."
        ),
    )
    p.add_argument("journal", nargs="+", help="fills CSV/Parquet, run folder or daemon SQLite db")
    p.set_defaults(func=cmd_fingerprints)
    return p


def cmd_fingerprints(args: argparse.Namespace) -> int:
    """Print the fingerprints of the given journals (concatenated); exit 2 on bad input."""
    import pandas as pd
    from tandem.backtest.reconcile.sources import ReconcileInputError, read_fills
    from tandem.core.fingerprint import fingerprint_line, trade_fingerprints

    try:
        fills = pd.concat([read_fills(p) for p in args.journal], ignore_index=True)
    except (ReconcileInputError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"fingerprints: error: {exc}", file=sys.stderr)
        return 2
    lines = [fingerprint_line(fills)]
    for t in trade_fingerprints(fills).itertuples(index=False):
        state = "" if t.closed else " open"
        lines.append(f"{t.fingerprint[:16]}  {t.trade_id}  fills={t.n_fills}{state}")
    print("\n".join(lines), flush=True)  # `... | head`: see tandem-backtest's main
    return 0


def add_candles_from(run_parser: argparse.ArgumentParser) -> None:
    """Add ``--candles-from <daemon db>`` to ``tandem-backtest run``."""
    run_parser.add_argument(
        "--candles-from", action="append", metavar="DB", default=None,
        help="backtest exactly the candles a daemon consumed (its SQLite db; repeatable) "
             "instead of --data, so data and logic differences separate cleanly",
    )


def candles_from_source(args: argparse.Namespace, timeframe: str | None = None) -> DaemonCandleSource | None:
    """The candle source for ``run --candles-from``, or None when the option is absent."""
    dbs = getattr(args, "candles_from", None)
    if not dbs:
        return None
    from tandem.backtest.reconcile.sources import DaemonCandleSource, ReconcileInputError
    from tandem.backtest.runner import DataError

    missing = [p for p in dbs if not Path(p).is_file()]
    if missing:  # the data is not there: exit 1, like a --data path that does not exist
        raise DataError(f"--candles-from {missing[0]}: "
                        + ("is a folder, not a daemon database" if Path(missing[0]).is_dir()
                           else "no such file"))
    try:
        return DaemonCandleSource(dbs, timeframe=timeframe)
    except (ReconcileInputError, sqlite3.Error) as exc:  # not a daemon db, or a corrupt one
        raise DataError(f"--candles-from: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m tandem.backtest.reconcile.cli reconcile ...``)."""
    from tandem.core.cliparser import OneLineParser

    parser = OneLineParser(prog="tandem-reconcile")
    sub = parser.add_subparsers(dest="command", required=True)
    register_reconcile(sub)
    register_fingerprints(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

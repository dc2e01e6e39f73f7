"""Reconcile a paper-trading journal with a backtest: match, classify, explain, report.

Public API::

    from backtest.reconcile import reconcile, Tolerance
    report = reconcile("paper.db", "runs/x/fills.parquet", history="../shared/data")
    print(report.to_terminal()); report.write("out/"); raise SystemExit(report.exit_code)

See :func:`reconcile` for the inputs, :mod:`backtest.reconcile.classify` for the causes
(data, intrabar, rounding, config, logic) and :mod:`backtest.reconcile.cli` for
``tandem-backtest reconcile`` and ``tandem-backtest run --candles-from``.
"""

from backtest.reconcile.api import reconcile
from backtest.reconcile.match import Tolerance
from backtest.reconcile.report import ProfileSummary, ReconcileReport
from backtest.reconcile.sources import DaemonCandleSource, ProfileInfo

__all__ = [
    "DaemonCandleSource",
    "ProfileInfo",
    "ProfileSummary",
    "ReconcileReport",
    "Tolerance",
    "reconcile",
]

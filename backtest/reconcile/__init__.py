"""Reconcile a paper-trading journal with a backtest: match, classify, explain, report.

Public API::

    from tandem.backtest.reconcile import reconcile, Tolerance
    report = reconcile("paper.db", "runs/x/fills.parquet", history="../shared/data")
    print(report.to_terminal()); report.write("out/"); raise SystemExit(report.exit_code)

See :func:`reconcile` for the inputs, :mod:`tandem.backtest.reconcile.classify` for the causes
(data, intrabar, rounding, config, logic) and :mod:`tandem.backtest.reconcile.cli` for
``tandem-backtest reconcile`` and ``tandem-backtest run --candles-from``.
"""

from importlib import import_module
from typing import Any

# Where each public name lives. They load on first use (PEP 562), so that registering the
# reconcile commands in ``tandem-backtest`` does not import pandas and the core for every
# command (``--help`` included).
_PUBLIC = {
    "DaemonCandleSource": "tandem.backtest.reconcile.sources",
    "ProfileInfo": "tandem.backtest.reconcile.sources",
    "ProfileSummary": "tandem.backtest.reconcile.report",
    "ReconcileReport": "tandem.backtest.reconcile.report",
    "Tolerance": "tandem.backtest.reconcile.match",
    "reconcile": "tandem.backtest.reconcile.api",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)

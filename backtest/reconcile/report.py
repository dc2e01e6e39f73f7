"""The reconcile result: what matched, what differed and why, and how far equity drifted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tandem.backtest.reconcile.classify import CATEGORIES
from tandem.backtest.reconcile.evidence import ConfigDiff
from tandem.backtest.reconcile.match import MISMATCHED, MISSING_BACKTEST, MISSING_PAPER, Tolerance
from tandem.backtest.reconcile.render import html, markdown, terminal


@dataclass
class ProfileSummary:
    """Counts, fingerprints and drift of one profile."""

    profile: str
    paper_fills: int
    backtest_fills: int
    identical: int
    within_tolerance: int
    mismatched: int
    missing_in_paper: int
    missing_in_backtest: int
    categories: dict[str, int]
    paper_fingerprint: str
    backtest_fingerprint: str
    paper_trades: int
    backtest_trades: int
    trades_differing: int
    config: ConfigDiff
    data_events: int
    max_abs_equity_drift: float
    final_equity_drift: float
    final_pnl_drift: float
    #: ids of trades whose fingerprints differ or that exist on one side only (sorted)
    differing_trades: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        """Differences beyond tolerance (mismatched or missing on a side)."""
        return self.mismatched + self.missing_in_paper + self.missing_in_backtest

    @property
    def identical_pct(self) -> float:
        """Identical pairs as a share of the larger side's fills (100 when both empty)."""
        n = max(self.paper_fills, self.backtest_fills)
        return 100.0 if n == 0 else 100.0 * self.identical / n


@dataclass
class ReconcileReport:
    """Everything :func:`tandem.backtest.reconcile.reconcile` found.

    ``matches``: every pair/unmatched fill (:func:`~tandem.backtest.reconcile.match.match_fills`);
    ``differences``: the non-identical ones with ``category``/``evidence``/``caused_by``;
    ``drift``: per profile and time, equities and realized PnL of both sides;
    ``events``: data events (candles) with a ``profile`` column.
    """

    matches: pd.DataFrame
    differences: pd.DataFrame
    drift: pd.DataFrame
    events: pd.DataFrame
    profiles: list[ProfileSummary]
    tolerance: Tolerance
    inputs: dict[str, list[str]] = field(default_factory=dict)
    #: what limits the evidence (e.g. a candle db whose warm-up journal is incomplete):
    #: shown on every output, the verdict itself unchanged
    caveats: list[str] = field(default_factory=list)

    # ---- verdict -----------------------------------------------------------------------
    @property
    def beyond_tolerance(self) -> pd.DataFrame:
        """Differences that break the tolerance (mismatched or missing)."""
        d = self.differences
        return d[d["status"].isin((MISMATCHED, MISSING_PAPER, MISSING_BACKTEST))] if len(d) else d

    @property
    def max_abs_equity_drift(self) -> float:
        return max((p.max_abs_equity_drift for p in self.profiles), default=0.0)

    @property
    def ok(self) -> bool:
        """True when every fill agrees within tolerance (and equity drift within bound)."""
        if len(self.beyond_tolerance):
            return False
        if self.tolerance.equity is not None and self.max_abs_equity_drift > self.tolerance.equity:
            return False
        return True

    @property
    def exit_code(self) -> int:
        """0 within tolerance, 1 otherwise (the CLI's exit status)."""
        return 0 if self.ok else 1

    def category_totals(self) -> dict[str, int]:
        return {c: sum(p.categories.get(c, 0) for p in self.profiles) for c in CATEGORIES}

    # ---- output ------------------------------------------------------------------------
    def to_terminal(self) -> str:
        return terminal(self)

    def to_markdown(self) -> str:
        return markdown(self)

    def to_html(self) -> str:
        return html(self)

    def write(self, out_dir: str | Path, stem: str = "reconcile") -> list[Path]:
        """Write ``<stem>.md``, ``<stem>.html`` and ``<stem>_differences.csv`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.md", out / f"{stem}.html", out / f"{stem}_differences.csv"]
        paths[0].write_text(self.to_markdown(), encoding="utf-8")
        paths[1].write_text(self.to_html(), encoding="utf-8")
        self.differences.to_csv(paths[2], index=False)
        return paths

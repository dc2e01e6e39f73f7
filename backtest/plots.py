"""PNG plots of a run (equity + drawdown) with matplotlib, for places HTML cannot go.

matplotlib is imported lazily, and only its object API (a ``Figure`` saved through the Agg
canvas): a headless server (or CI) never needs a display, importing :mod:`backtest` stays
fast, and a run does not pay for importing ``pyplot`` (~0.3 s) to draw one figure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tandem.backtest.stats import drawdown_series


def write_equity_png(
    path: str | Path, equity: pd.Series, initial_cash: float | None = None, title: str = ""
) -> Path:
    """Equity (top) and drawdown (bottom) against UTC time, as one PNG."""
    from matplotlib.figure import Figure

    path = Path(path)
    # matplotlib's date numbers (days since its 1970-01-01 epoch, UTC) computed here in one
    # vectorized step: handing it datetimes made it convert them on every draw (~1 s).
    when = pd.Index(equity.index).astype("int64").to_numpy() / 86_400_000.0
    dd = drawdown_series(equity, initial_cash)
    fig = Figure(figsize=(10, 5.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax1.plot(when, equity.to_numpy(), color="#1f6feb", lw=1.2)
    ax1.set_ylabel("equity")
    ax1.set_title(title or "Equity")
    ax1.grid(alpha=0.3)
    ax2.fill_between(when, dd.to_numpy() * 100, 0, color="#d1242f", alpha=0.3, lw=0)
    ax2.plot(when, dd.to_numpy() * 100, color="#d1242f", lw=0.8)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    ax2.xaxis_date("UTC")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path

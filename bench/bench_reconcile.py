"""Benchmark: reconcile and fingerprint speed on a synthetic journal (prints figures).

    .venv/bin/python bench/bench_reconcile.py [n_fills] [n_symbols]

Builds a plausible journal (round trips per symbol, through ``tandem.core.journal.fills_frame``),
plants 1 % edits and 0.5 % drops on the "paper" copy, and times each stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# bench/backtest.py would shadow the backtest package: put the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tandem.backtest.reconcile import reconcile  # noqa: E402
from tandem.backtest.reconcile.match import match_fills  # noqa: E402
from tandem.core.fingerprint import run_fingerprint, trade_fingerprints  # noqa: E402
from tandem.core.journal import fills_frame  # noqa: E402


def synthetic(n_fills: int, n_symbols: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:03d}/USDT" for i in range(n_symbols)]
    rows = []
    cash = 1e6
    ts = 3_600_000
    pos = np.zeros(n_symbols)
    while len(rows) < n_fills:
        ts += 3_600_000
        for a in rng.choice(n_symbols, size=min(n_symbols, 8), replace=False):
            price = float(rng.uniform(1, 100))
            if pos[a] == 0:
                qty = float(rng.uniform(0.1, 10))
                fee = qty * price * 1e-3
                cash -= qty * price + fee
                pos[a] = qty
                rows.append((ts, a, 1, qty, price, fee, 0, 0, qty, cash))
            else:
                qty = pos[a]
                fee = qty * price * 1e-3
                cash += qty * price - fee
                pos[a] = 0.0
                rows.append((ts, a, -1, qty, price, fee, int(rng.integers(1, 5)), 0, 0.0, cash))
    raw = np.array(rows[:n_fills], dtype=np.float64)
    return fills_frame(raw, symbols, "bench", "run", "backtest")


def timed(label: str, fn):  # noqa: ANN001, ANN201
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<28} {time.perf_counter() - t0:8.3f} s")
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    bt = timed(f"build journal ({n} fills)", lambda: synthetic(n, k))
    rng = np.random.default_rng(2)
    paper = bt.copy()
    edit = rng.choice(len(bt), size=max(1, n // 100), replace=False)
    paper.loc[edit, "price"] *= 1.001
    paper = paper.drop(index=rng.choice(len(bt), size=max(1, n // 200), replace=False))
    timed("run_fingerprint", lambda: run_fingerprint(bt))
    trades = timed("trade_fingerprints", lambda: trade_fingerprints(bt))
    timed("match_fills", lambda: match_fills(paper, bt))
    report = timed("reconcile (all stages)", lambda: reconcile(paper, bt))
    p = report.profiles[0]
    print(f"trades {len(trades)}, differences {len(report.differences)}, mismatched {p.mismatched}, "
          f"missing in paper {p.missing_in_paper}")
    timed("render html", report.to_html)


if __name__ == "__main__":
    main()

"""tandem.core.trials: many trials per kernel call give, per trial, the run's fills and statistics.

The truth is an ordinary ``run_backtest`` of the same profile (its fills and
``tandem.backtest.stats.compute_stats(trades_table(fills))``), for discrete and portfolio modes,
with SL/TP/trailing, long/short and the vote combiner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tandem.backtest.demo_data import generate_candles, write_csv_folder
from tandem.backtest.runner import run_backtest, with_overrides
from tandem.backtest.sweep.data import load_sweep_data
from tandem.backtest.sweep.evaluate import profile_rows
from tandem.backtest.sweep.space import trial_profile
from tandem.core.trials import STAT_NAMES, run_trials

SYMS = ["BTC/USDT", "ETH/USDT", "DOGE/USDT"]
WARM = 24 * 20

CASES = [
    {"exit_rules.stop_loss_pct": 0.02, "exit_rules.take_profit_pct": 0.03,
     "exit_rules.trailing_stop_pct": None},
    {"exit_rules.stop_loss_pct": 0.03, "exit_rules.take_profit_pct": None,
     "exit_rules.trailing_stop_pct": 0.02, "exit_rules.intrabar": "ohlc",
     "execution.long_short": True, "entry_threshold": 0.05, "exit_threshold": -0.05},
    {"execution.mode": "portfolio", "portfolio.max_weight": 0.5,
     "portfolio.rebalance_every": "4h", "exit_rules.stop_loss_pct": 0.02},
    {"mtf.mode": "vote", "mtf.min_agree": 2.0, "execution.sizing": "risk",
     "exit_rules.stop_loss_pct": 0.02, "strategy": "rating_ma"},
    {"execution.mode": "portfolio", "strategy": "rating_osc", "initial_cash": 5000.0},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    folder = tmp_path_factory.mktemp("c")
    write_csv_folder(generate_candles(SYMS, start="2024-01-01", n_bars=24 * 50, seed=11), folder)
    man = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json")
    prof = with_overrides(man.profile("crypto_rating_all"), warmup_bars=WARM)
    src = CsvFolderSource(folder, timeframe="1h")
    data = load_sweep_data(prof, src, symbols=SYMS,
                           strategies=["rating_all", "rating_ma", "rating_osc"])
    return prof, src, data


def _single(data, prof):
    batch = profile_rows([prof], data)
    lo, hi, ppy, smp = data.seg_arrays()
    return run_trials(data.ratings, data.ts_close, data.open, data.high, data.low, data.close,
                      data.mtf_mask, batch, lo, hi, ppy, smp, data.sample_idx, keep_fills=64)


def test_trials_equal_run_backtest_fills_and_stats(setup):
    from tandem.core.journal import fills_frame

    base, src, data = setup
    profiles = []
    for params in CASES:
        prof, err = trial_profile(base, params)
        assert prof is not None, err
        profiles.append(prof)
    # All trials in one kernel call (both modes) ...
    lo, hi, ppy, smp = data.seg_arrays()
    stats, _, _, _ = run_trials(data.ratings, data.ts_close, data.open, data.high, data.low,
                                data.close, data.mtf_mask, profile_rows(profiles, data),
                                lo, hi, ppy, smp, data.sample_idx)
    for k, prof in enumerate(profiles):
        ref = run_backtest(prof, src, symbols=SYMS, report=False)
        assert ref.stats["n_trades"] > 3, CASES[k]
        # ... equal the run's statistics (float sums in another order: rounding only),
        for j, name in enumerate(STAT_NAMES):
            np.testing.assert_allclose(stats[k, 0, j], float(ref.stats[name]), rtol=1e-9,
                                       atol=1e-12, err_msg=f"{name} of case {k}")
        # and the single-trial path reproduces the run's fills and equity bit for bit.
        st1, _, eq, raw = _single(data, prof)
        np.testing.assert_array_equal(st1[0], stats[k])
        np.testing.assert_array_equal(eq[lo[0]:hi[0]], ref.equity.to_numpy())
        fills = fills_frame(raw, data.symbols, prof.name, ref.run_id, "backtest")
        assert fills.equals(ref.fills), CASES[k]

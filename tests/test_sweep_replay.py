"""The profile a sweep writes, replayed by the daemon (``tandem-daemon replay``: the live
path against the exchange emulator), gives the sweep's fills for that trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tandem.backtest.cli import main

from tests.sweep_fixtures import REPO, make_inputs, portfolio_inputs, sweep_args

pytestmark = pytest.mark.slow

START = "2024-01-25"
END = "2024-01-29"


#: A portfolio-mode profile whose weighting settings are swept: the daemon steps the same
#: core.weighting kernel one slice at a time.
WEIGHTING_SPACE = ("portfolio.weighting: [equal, hrp]\nportfolio.lookback: [24, 36]\n"
                   "portfolio.turnover_cap: [null, 0.5]\n")


@pytest.mark.parametrize("weighting", [False, True], ids=["discrete", "weighting"])
def test_written_profile_replayed_by_the_daemon_gives_the_sweeps_fills(tmp_path, weighting):
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.driver import single_trial
    from tandem.core.fingerprint import fingerprint_line
    from tandem.core.journal import fills_frame
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    if weighting:
        inp = portfolio_inputs(tmp_path, {"max_weight": 0.5, "rebalance_every": "4h"}, days=60)
        inp["space"].write_text(WEIGHTING_SPACE)
    else:
        inp = make_inputs(tmp_path)
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", "--from", START, "--to", END,
                           "--write-profile", "t_rp")) == 0
    best = json.loads((out / "best.json").read_text())
    base = load_manifest(inp["manifest"]).profile("t")
    data = load_sweep_data(base, CsvFolderSource(inp["data"], timeframe="1h"), START, END)
    _, raw, _ = single_trial(data, base, best["params"], 0, keep_fills=256)
    fills = fills_frame(raw, data.symbols, "t_rp", "x", "backtest")
    assert len(fills) > 0
    if weighting:  # the written profile carries the chosen weighting values
        prof = load_manifest(out / "manifest.json").profile("t_rp")
        assert {f"portfolio.{k}": getattr(prof.portfolio, k)
                for k in ("weighting", "lookback", "turnover_cap")} == best["params"]
        assert (fills["reason"] == "rebalance").any()
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.daemon.cli", "replay", "--manifest", str(out / "manifest.json"),
         "--profile", "t_rp", "--data", str(inp["data"]), "--from", START, "--to", END,
         "--db", str(tmp_path / "replay.sqlite"), "--fresh", "--log-level", "ERROR",
         "--grace", "120"], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("fingerprint")]
    assert printed == [fingerprint_line(fills)], proc.stdout[-2000:]

"""End to end on the real Binance universe (``../shared/data``; skipped where absent).

All three default profiles, in both execution modes, through the ``tandem-backtest run``
command: the journal matches its schema, a rerun gives byte-identical fills, the equity the
run reports equals the equity rebuilt from its own journal, and the CSV folder and the
universe Parquet (same candles, two formats) give the same fills.

Kept to a subset (6 assets, two months after a 45-day warm-up) so it runs in about a minute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.cli import main

pytestmark = pytest.mark.data

PROFILES = ["crypto_rating_all", "crypto_rating_ma", "crypto_rating_osc"]
MODES = ["discrete", "portfolio"]
SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT"]
FROM, TO = "2021-03-01", "2021-05-01"
WARMUP = 24 * 45
HOUR = 3_600_000
UNIVERSE = "binance_USDT_1h_universe.parquet"


def _args(data: Path, out: Path, profile: str, mode: str, symbols=SYMS, report=False):  # noqa: ANN001
    argv = ["run", "--profile", profile, "--mode", mode, "--data", str(data),
            "--symbols", ",".join(symbols), "--from", FROM, "--to", TO,
            "--warmup-bars", str(WARMUP), "--out", str(out)]
    return argv + ([] if report else ["--no-report"])


@pytest.fixture(scope="module")
def universe(shared_data: Path) -> Path:
    path = shared_data / UNIVERSE
    if not path.exists():
        pytest.skip(f"{UNIVERSE} not found in {shared_data}")
    return path


@pytest.fixture(scope="module")
def runs(universe: Path, tmp_path_factory) -> dict[tuple[str, str], Path]:
    out = {}
    for profile in PROFILES:
        for mode in MODES:
            d = tmp_path_factory.mktemp(f"{profile}-{mode}")
            report = profile == PROFILES[0] and mode == MODES[0]
            assert main(_args(universe, d, profile, mode, report=report)) == 0, (profile, mode)
            out[(profile, mode)] = d
    return out


def test_journal_schema_for_every_profile_and_mode(runs):
    from tandem.core.journal import (
        FILL_COLUMNS,
        FILLS_SCHEMA,
        fills_to_models,
        read_csv,
        read_parquet,
    )

    start = pd.Timestamp(FROM, tz="UTC").value // 10**6
    end = pd.Timestamp(TO, tz="UTC").value // 10**6
    for (profile, mode), d in runs.items():
        fills = read_parquet(d / "fills.parquet")  # reading enforces the Arrow schema
        assert list(fills.columns) == FILL_COLUMNS == FILLS_SCHEMA.names
        assert len(fills) > 0, (profile, mode)
        pd.testing.assert_frame_equal(fills, read_csv(d / "fills.csv"))
        fills_to_models(fills)
        assert fills["fill_id"].is_unique
        for f in fills.itertuples():
            assert re.fullmatch(rf"{profile}:{re.escape(f.symbol)}:{f.ts}:{f.reason}:\d+",
                                f.fill_id)
        assert set(fills["symbol"]) <= set(SYMS)
        assert ((fills["ts"] > start) & (fills["ts"] <= end) & (fills["ts"] % HOUR == 0)).all()
        assert (fills["qty"] > 0).all() and (fills["fee"] >= 0).all()
        assert (fills["position_after"] >= 0).all()  # long-only profiles
        reasons = set(fills["reason"])
        if mode == "portfolio":
            assert "rebalance" in reasons and not reasons & {"entry", "exit"}
        else:
            assert "entry" in reasons and "rebalance" not in reasons
        stats = json.loads((d / "stats.json").read_text())
        assert stats["profile"] == profile and stats["mode"] == mode
        assert stats["n_fills"] == len(fills)
        assert stats["warmup_bars_available"] == WARMUP


def test_equity_equals_the_journal_rebuild(runs, universe):
    """equity.csv (the engine's) equals equity rebuilt from fills.csv + closes alone."""
    from tandem.core.journal import equity_series, read_csv
    from tandem.core.store import open_candles

    src = open_candles(universe)
    a = src.load_aligned(SYMS, "1h", FROM, TO)
    for (profile, mode), d in runs.items():
        eq = pd.read_csv(d / "equity.csv")
        np.testing.assert_array_equal(eq["ts"].to_numpy(), a.ts + HOUR)
        rebuilt = equity_series(read_csv(d / "fills.csv"), a.ts + HOUR, a.close, SYMS,
                                json.loads((d / "stats.json").read_text())["initial_equity"])
        np.testing.assert_allclose(eq["equity"].to_numpy(), rebuilt.to_numpy(), rtol=1e-9,
                                   err_msg=f"{profile} {mode}")


def test_rerun_gives_byte_identical_fills(runs, universe, tmp_path):
    for (profile, mode), d in runs.items():
        again = tmp_path / f"{profile}-{mode}"
        assert main(_args(universe, again, profile, mode)) == 0
        for name in ("fills.csv", "fills.parquet"):
            assert (again / name).read_bytes() == (d / name).read_bytes(), (profile, mode, name)


def test_csv_folder_and_universe_parquet_agree(runs, shared_data, tmp_path):
    """The four 1h CSV files hold the same candles as the universe: same fills."""
    core = SYMS[:4]
    if not all((shared_data / f"binance_{s.replace('/', '-')}_1h.csv").exists() for s in core):
        pytest.skip("binance 1h CSV files not found")
    from tandem.core.journal import read_parquet

    a, b = tmp_path / "csv", tmp_path / "uni"
    assert main(_args(shared_data, a, "crypto_rating_all", "discrete", symbols=core)) == 0
    assert main(_args(shared_data / UNIVERSE, b, "crypto_rating_all", "discrete",
                      symbols=core)) == 0
    fa, fb = read_parquet(a / "fills.parquet"), read_parquet(b / "fills.parquet")
    assert len(fa) > 0
    pd.testing.assert_frame_equal(fa, fb)


def test_report_of_a_real_run(runs):
    html = (runs[(PROFILES[0], MODES[0])] / "report.html").read_text()
    assert "crypto_rating_all" in html and html.count('class="marker ') > 10
    assert "2021-03-01" in html  # the data range it came from


def test_fills_equal_the_core_batch_driver(runs, universe):
    """No logic in the CLI, in both modes: the core's batch path (signals_from_candles over
    warm-up + range, then run_batch over the range) gives the very same journal."""
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.journal import read_parquet
    from tandem.core.manifest import load_manifest, parse_manifest
    from tandem.core.signals import signals_from_candles
    from tandem.core.store import open_candles

    man = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json")
    src = open_candles(universe)
    start = pd.Timestamp(FROM, tz="UTC").value // 10**6
    for (name, mode), d in runs.items():
        data = man.profile(name).model_dump(mode="json")
        data["execution"]["mode"] = mode
        data["warmup_bars"] = WARMUP
        prof = parse_manifest({"profiles": {name: data}}).profile(name)
        syms = [s for s in prof.assets if s in SYMS]
        a = src.load_aligned(syms, "1h", start - WARMUP * HOUR, TO)
        _, sig, _ = signals_from_candles(prof, a.ts, a.open, a.high, a.low, a.close, a.volume,
                                         syms)
        k0 = int(np.searchsorted(a.ts, start))
        signal = sig.target if mode == "portfolio" else sig.signal
        run_id = json.loads((d / "stats.json").read_text())["run_id"]
        res = run_batch(EngineConfig(**prof.engine_params()), a.ts[k0:] + HOUR, a.open[k0:],
                        a.high[k0:], a.low[k0:], a.close[k0:], signal[k0:], symbols=syms,
                        profile=name, run_id=run_id)
        pd.testing.assert_frame_equal(read_parquet(d / "fills.parquet"), res.fills,
                                      obj=f"{name} {mode}")

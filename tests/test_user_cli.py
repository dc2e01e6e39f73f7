"""Regressions found by trying Tandem as a first-time user (fresh clone, README commands).

Each test pins one problem a user hit: slow ``--help``, a report header whose dates disagreed
with the CLI summary and the report's own Run table, a trade count that disagreed with the
trades table, and a bare "path does not exist" when no ``--data`` was given.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.cli import main
from tandem.backtest.demo_data import generate_candles
from tandem.backtest.report import ReportInput, render_report

REPO = Path(__file__).resolve().parents[1]
SYMS = ["BTC/USDT", "ETH/USDT"]
HOUR = 3_600_000


def test_help_does_not_import_ccxt():
    """Building the parser (what every ``--help`` does) must not pay ccxt's ~1.5 s import."""
    code = ("import sys; from tandem.backtest.cli import build_parser; build_parser(); "
            "print('ccxt' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.fixture(scope="module")
def report_input() -> tuple[ReportInput, np.ndarray]:
    """A real engine run with positions still open at the end, as the runner would pass it."""
    from tandem.backtest.stats import compute_stats
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.journal import trades_table

    candles = generate_candles(SYMS, n_bars=300, seed=3)
    opens_ms = candles[SYMS[0]]["ts"].to_numpy()
    mat = {k: np.column_stack([candles[s][k].to_numpy() for s in SYMS])
           for k in ("open", "high", "low", "close")}
    ts_close = opens_ms + HOUR
    sig = np.zeros_like(mat["close"])
    sig[10::40] = 1.0
    sig[30::40] = -1.0
    sig[-5:] = 0.0
    sig[-20] = 1.0  # an entry near the end that is never closed: an open trade
    cfg = EngineConfig(stop_loss_pct=0.0, take_profit_pct=0.0, size_pct=0.3)
    res = run_batch(cfg, ts_close, mat["open"], mat["high"], mat["low"], mat["close"], sig,
                    symbols=SYMS, profile="user", run_id="t")
    trades = trades_table(res.fills)
    stats = compute_stats(res.equity, trades, res.fills, initial_cash=cfg.initial_cash,
                          symbols=SYMS)
    closes = pd.DataFrame(mat["close"], index=ts_close, columns=SYMS)
    iso = [pd.Timestamp(int(t), unit="ms", tz="UTC").isoformat() for t in (opens_ms[0],
                                                                          opens_ms[-1])]
    data = ReportInput("user", res.equity, stats, res.fills, trades, closes,
                       meta={"first_tradable_bar": iso[0], "last_bar": iso[1]},
                       initial_cash=cfg.initial_cash)
    return data, opens_ms


def test_report_header_uses_bar_open_times_like_the_cli(report_input):
    data, opens_ms = report_input
    page = render_report(data)
    header = re.search(r"id='data-range'>([^<]*)<", page).group(1)
    # Independent of our formatting code: the first and last bar *open* times of the candles.
    first = pd.to_datetime(opens_ms[0], unit="ms", utc=True).strftime("%Y-%m-%d %H:%M UTC")
    last = pd.to_datetime(opens_ms[-1], unit="ms", utc=True).strftime("%Y-%m-%d %H:%M UTC")
    assert header.startswith(f"Bars {first} → {last} (open times)"), header


def test_trade_kpi_counts_open_trades_like_the_table(report_input):
    data, _ = report_input
    fills = data.fills
    # Independently of trades_table: an asset whose position is non-zero after its last fill
    # holds one open trade.
    last_pos = fills.groupby("symbol")["position_after"].last()
    n_open = int((last_pos.abs() > 0).sum())
    assert n_open >= 1
    closed = int((fills["side"] == "sell").sum())
    page = render_report(data)
    kpi = re.search(r"Trades<b>([^<]*)</b>", page).group(1)
    assert kpi == f"{closed} (+{n_open} open)"
    assert f"of {closed + n_open})" in page  # the trades table's heading counts both


def test_run_without_data_says_where_candles_come_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TANDEM_DATA_DIR", raising=False)
    code = main(["run", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "--data" in err and "tandem-backtest demo" in err
    assert not (tmp_path / "out").exists()


def _small_manifest(tmp_path: Path) -> Path:
    """The shipped manifest with the default profile cut to two assets and a short warm-up."""
    import json

    m = json.loads((REPO / "manifest.json").read_text())
    prof = m["profiles"][m["default_profile"]]
    prof["core_assets"] = prof["universe"] = SYMS
    prof["warmup_bars"] = 200
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    return path


def test_demo_rerun_into_the_same_out_uses_the_new_seed(tmp_path, capsys):
    """A rerun with another seed must not backtest the first run's candles (first write wins)."""
    manifest = _small_manifest(tmp_path)
    common = ["demo", "--manifest", str(manifest), "--days", "3"]
    assert main([*common, "--seed", "1", "--out", str(tmp_path / "same")]) == 0
    assert main([*common, "--seed", "2", "--out", str(tmp_path / "same")]) == 0
    assert main([*common, "--seed", "2", "--out", str(tmp_path / "fresh")]) == 0
    assert "first run compiles the numba core" in capsys.readouterr().out  # no silent minutes
    rerun = pd.read_csv(tmp_path / "same" / "fills.csv")
    fresh = pd.read_csv(tmp_path / "fresh" / "fills.csv")
    pd.testing.assert_frame_equal(rerun, fresh)
    # and the stored candles are seed 2's, bar for bar
    for sym in SYMS:
        a = pd.read_parquet(tmp_path / "same" / "candles" / "binance" /
                            sym.replace("/", "-") / "1h.parquet")
        b = pd.read_parquet(tmp_path / "fresh" / "candles" / "binance" /
                            sym.replace("/", "-") / "1h.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_demo_never_deletes_a_candle_folder_it_did_not_write(tmp_path, capsys):
    manifest = _small_manifest(tmp_path)
    real = tmp_path / "out" / "candles" / "binance" / "BTC-USDT"
    real.mkdir(parents=True)
    (real / "1h.parquet").write_bytes(b"precious")
    code = main(["demo", "--manifest", str(manifest), "--days", "1", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "was not written by" in err
    assert (real / "1h.parquet").read_bytes() == b"precious"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["candles"]


def test_cli_logging_survives_a_closed_stderr(monkeypatch):
    """After the CLI configured logging under a stderr that is later closed (pytest's capture),
    later log lines go to the current stderr instead of raising in unrelated code."""
    import io

    import structlog
    from tandem.backtest.logs import configure_logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info")
    first.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    try:
        structlog.get_logger("user").warning("still_logging", n=1)
    finally:
        structlog.reset_defaults()
    assert "still_logging" in now.getvalue() and "n=1" in now.getvalue()


def test_missing_asset_suggests_symbols(tmp_path, capsys):
    """The shipped profile trades 20 assets; a CSV folder with two must point at --symbols."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for sym, frame in generate_candles(SYMS, n_bars=400, seed=5).items():
        # the ../shared/data CSV format, written here independently of core.store
        frame.rename(columns={"ts": "timestamp"}).to_csv(
            folder / f"binance_{sym.replace('/', '-')}_1h.csv", index=False)
    base = ["run", "--data", str(folder), "--warmup-bars", "100", "--no-report"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--symbols" in err and "available: BTC/USDT, ETH/USDT" in err
    assert not (tmp_path / "a").exists()
    assert main([*base, "--symbols", ",".join(SYMS), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "fills.csv").exists()

"""``tandem-backtest`` as a new user drives it from the README and ``.env.example``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
from tandem.backtest.cli import main
code = main(sys.argv[1:])
from numba.core import config
print(code, config.CACHE_DIR)
"""


def test_numba_cache_setting_is_applied(tmp_path: Path) -> None:
    """.env.example: TANDEM_NUMBA_CACHE_DIR is "exported as NUMBA_CACHE_DIR". Only the daemon
    did: ``tandem-backtest`` compiled its kernels into the default folder whatever the
    setting said. The command here stops at a missing --data folder, after the settings are
    read and before anything compiles."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(tmp_path / "elsewhere"),
               TANDEM_NUMBA_CACHE_DIR=str(tmp_path / "nc"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, "run", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    code, cache_dir = proc.stdout.split()
    assert code == "1", proc.stderr  # the missing data folder
    assert Path(cache_dir).parent == tmp_path / "nc", proc.stdout


def test_run_finishes_when_its_log_reader_goes_away(tmp_path: Path) -> None:
    """``tandem-backtest --log-level info run ... 2>&1 | head -1``: the second log line hit
    the closed pipe, and the run exited 1 with no summary and nothing written. Log lines past
    a closed stderr are dropped; the run completes (demo candles: no data needed)."""
    from tandem.backtest.demo_data import generate_candles, write_csv_folder

    symbols = ["BTC/USDT", "ETH/USDT"]
    write_csv_folder(generate_candles(symbols, n_bars=24 * 40, seed=3), tmp_path / "csv",
                     exchange="binance", timeframe="1h")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.backtest.cli", "--log-level", "info", "run",
         "--data", str(tmp_path / "csv"), "--symbols", ",".join(symbols), "--warmup-bars", "100",
         "--out", str(tmp_path / "out"), "--no-report"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stderr.readline()  # one line, then the reader is gone (like head -1)
    proc.stderr.close()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "fingerprint run=" in out and (tmp_path / "out" / "stats.json").is_file()


def test_bad_option_is_one_error_line(tmp_path: Path) -> None:
    """A bad option printed argparse's usage block and then the error (4-13 lines, the error
    last); every other error of the command is one ``error:`` line, as in tandem-daemon."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args, needle in ((["run", "--bogus"], "--bogus"),
                         (["run", "--from", "1622505600"], "epoch in s"),
                         (["sweep", "--profile", "x"], "--space, --out")):
        proc = subprocess.run([sys.executable, "-m", "tandem.backtest.cli", *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: tandem-backtest"), proc.stderr
        assert needle in lines[0] and "--help" in lines[0], proc.stderr


def test_features_out_must_be_a_parquet_name(tmp_path: Path) -> None:
    """``features --out runs/features.csv`` wrote Parquet bytes under a .csv name (exit 0);
    now exit 2, one line, before any candle is read and nothing written."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tandem.backtest.cli", "features", "--data",
                           str(tmp_path / "none"), "--out", str(tmp_path / "f.csv")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Parquet" in lines[0], proc.stderr
    assert not (tmp_path / "f.csv").exists()


def test_chart_without_a_report_is_refused(tmp_path: Path) -> None:
    """``run --chart ETH/USDT --no-report`` was accepted and the chart silently not drawn
    (it lives in report.html): exit 2, one line, before any candle is read."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tandem.backtest.cli", "run", "--data",
                           str(tmp_path / "none"), "--chart", "ETH/USDT", "--no-report",
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--no-report" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
